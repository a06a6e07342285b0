package tap

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/zcnet/zcnet/stack/link/frame"
)

// Fragment checker.
//
// A link that advertises CapabilityRXChecksumOffload makes gVisor skip the
// TCP and UDP checksums of the datagrams it reassembles from IP fragments,
// and a single fragment cannot be verified: the checksum covers the whole
// datagram. So the link holds the fragments of each such datagram until it
// has all of them, sums them, and then either delivers every fragment, in
// offset order, for gVisor to reassemble as usual, or drops them all,
// counted.
//
// Why hold rather than reassemble here: gVisor keeps its own reassembly
// rules (RFC 791, RFC 8200 §4.5, RFC 5722), IPv6 extension headers after
// the fragment header, raw-socket delivery and statistics; the link only
// decides whether the stack may see a datagram at all, and needs none of
// the bookkeeping to build one. Why not per packet: gVisor's NIC overwrites
// pkt.RXChecksumValidated from the link's capabilities (nic.go), so the
// link cannot ask the stack to verify just these packets.
//
// Checksums compose without copying: every fragment but the last carries a
// multiple of 8 bytes at an offset that is a multiple of 8, so each
// fragment's ones'-complement sum is taken once, on arrival, and the sums
// add up in offset order (RFC 1071 §2(B)); the first fragment's sum starts
// at the transport header.
//
// The rules follow gVisor's (and Linux's): an exact duplicate of a held
// fragment is dropped and the first copy kept; any other overlap, a second
// last fragment that ends elsewhere, or data past the last fragment's end
// abandons the datagram (RFC 5722, RFC 8200 §4.5). Fragments that gVisor
// drops frame by frame never get here (fragInfo.classify). A datagram is
// dropped when it is not complete within gVisor's reassembly timeout for its
// IP version, and the oldest datagrams are dropped to stay within
// fragMaxDatagrams and fragMaxBytes; a datagram may hold at most
// fragMaxPerDatagram fragments.
//
// Each queue has a checker of its own: the kernel steers the fragments of a
// datagram to one queue (its flow hash of a fragment covers the addresses
// only). Fragments of one datagram that arrive on two queues are never
// complete in either and expire: dropped, counted, never delivered
// unchecked. Held frames are released on every drop, on expiry (a timer
// fires at the oldest deadline) and when the queue's reader stops.
//
// What the link's holding changes for the stack: it sees no fragment of an
// incomplete datagram, so it sends no ICMP Time Exceeded for one (RFC 792,
// RFC 8200 §4.5 say "should"), and datagrams the link dropped for a bad
// checksum are counted by the link rather than by the stack's transport.

// Limits of one queue's fragment checker.
const (
	// fragMaxDatagrams bounds the datagrams held at once.
	fragMaxDatagrams = 256
	// fragMaxBytes bounds the receive views held, by capacity: gVisor's
	// and Linux's default high threshold (4 MiB). With the default head
	// view of 2 KiB at MTU 1500 that is 2048 fragments; at MTU 65520, whose
	// head views are 64 KiB, 64.
	fragMaxBytes = 4 << 20
	// fragMaxPerDatagram bounds one datagram's fragments: a 64 KiB
	// datagram cut for IPv6's minimum MTU (1280) has 54; so each fragment
	// is compared with at most this many others.
	fragMaxPerDatagram = 128
)

// How long a datagram's fragments are held: gVisor's reassembly timeouts
// (RFC 8200 §4.5 for IPv6's 60 s), so that the link never gives up on a
// datagram the stack would still wait for.
const (
	fragTimeout4 = ipv4.ReassembleTimeout
	fragTimeout6 = ipv6.ReassembleTimeout
)

// heldFrag is a fragment the checker holds, and the unit it hands back for
// delivery.
type heldFrag struct {
	// head and tail are the frame's receive views, capped to the frame;
	// tail is nil for a frame that fit in head. Owned by the checker
	// while held, by the caller once handed back.
	head, tail *buffer.View
	// data is where the fragment's data starts in the frame; [off, end)
	// is the part of the datagram it carries.
	data, off, end int
	more           bool
	// sum is the ones'-complement sum of the bytes it contributes to the
	// transport checksum: all of its data, or for the first fragment the
	// data from the transport header on.
	sum uint16
	// mem is the capacity of its views (what fragMaxBytes bounds).
	mem int
}

// release returns the frame's views.
func (h *heldFrag) release() {
	h.head.Release()
	if h.tail != nil {
		h.tail.Release()
	}
	*h = heldFrag{}
}

// byteAt returns the byte at offset i of the frame.
func (h *heldFrag) byteAt(i int) byte {
	if n := h.head.Size(); i >= n {
		return h.tail.AsSlice()[i-n]
	}
	return h.head.AsSlice()[i]
}

// sumRange returns the ones'-complement sum of the frame's bytes
// [from, to), which may span both views.
func (h *heldFrag) sumRange(from, to int) uint16 {
	var c checksum.Checksumer
	head := h.head.AsSlice()
	if from < len(head) {
		c.Add(head[from:min(to, len(head))])
	}
	if to > len(head) {
		c.Add(h.tail.AsSlice()[max(from, len(head))-len(head) : to-len(head)])
	}
	return c.Checksum()
}

// fragDatagram is the state of one datagram whose fragments are held.
type fragDatagram struct {
	key      fragKey
	created  time.Time
	deadline time.Time
	frags    []heldFrag
	// final is the length of the datagram's fragmentable part once its
	// last fragment (More Fragments clear) is held, -1 before.
	final int
	// covered is the number of bytes the held fragments carry; they never
	// overlap, so covered == final means no holes.
	covered int
	mem     int
	// From the first fragment (offset 0), once held:
	//
	// verify: the transport is TCP or UDP, whose checksum gVisor skips.
	verify bool
	proto  uint8
	// l4off is where the transport header starts in the fragmentable
	// part: 0 for IPv4, after any extension headers for IPv6.
	l4off int
}

// fragChecker holds the fragments of one queue's datagrams until each
// datagram is complete and its checksum checked. The queue's reader calls
// add; the expiry timer and the reader's release run concurrently with it,
// hence the lock. The fast path (frames that are not fragments) never
// comes here.
type fragChecker struct {
	// Set by init, before the first add; immutable after.
	c      *counters
	now    func() time.Time
	timers bool // expire on a timer, not only when fragments arrive
	lim    fragLimits

	mu sync.Mutex
	// +checklocks:mu
	dgrams map[fragKey]*fragDatagram
	// mem is the sum of the held datagrams' mem.
	// +checklocks:mu
	mem int
	// +checklocks:mu
	timer *time.Timer
}

// fragLimits are a checker's bounds (the constants above; tests shrink
// them).
type fragLimits struct {
	datagrams, bytes, perDatagram int
	timeout4, timeout6            time.Duration
}

var defaultFragLimits = fragLimits{
	datagrams: fragMaxDatagrams, bytes: fragMaxBytes, perDatagram: fragMaxPerDatagram,
	timeout4: fragTimeout4, timeout6: fragTimeout6,
}

// init readies fc with the default limits, counting into c, on the wall
// clock.
func (fc *fragChecker) init(c *counters) { fc.initWith(c, defaultFragLimits, time.Now, true) }

// initWith readies fc with the given limits and clock; without timers,
// datagrams expire only when a later fragment arrives (for tests that move
// the clock).
func (fc *fragChecker) initWith(c *counters, lim fragLimits, now func() time.Time, timers bool) {
	fc.c, fc.lim, fc.now, fc.timers = c, lim, now, timers
	fc.dgrams = make(map[fragKey]*fragDatagram)
}

// ready reports whether init has run.
func (fc *fragChecker) ready() bool { return fc.c != nil }

// add takes ownership of a fragment's frame (head and tail, capped to the
// frame; tail may be nil), described by fi, and appends to out the frames
// to deliver now, in offset order: none while the datagram is incomplete,
// all of its fragments once it is complete and its checksum right. The
// caller owns the frames appended. Frames dropped here are released and
// counted.
func (fc *fragChecker) add(head, tail *buffer.View, fi *fragInfo, out []heldFrag) []heldFrag {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	now := fc.now()
	fc.expireLocked(now)
	defer fc.armLocked(now)

	h := heldFrag{head: head, tail: tail, data: fi.data, off: fi.off, end: fi.off + fi.size, more: fi.more,
		mem: head.Capacity() + tail.Capacity()}
	d := fc.dgrams[fi.key]
	if d == nil {
		for len(fc.dgrams) >= fc.lim.datagrams && fc.evictOldestLocked(nil) {
		}
		timeout := fc.lim.timeout4
		if fi.key.v6 {
			timeout = fc.lim.timeout6
		}
		d = &fragDatagram{key: fi.key, created: now, deadline: now.Add(timeout), final: -1}
		fc.dgrams[fi.key] = d
	}

	// Duplicates, overlaps and conflicting ends.
	for i := range d.frags {
		o := &d.frags[i]
		if h.off >= o.end || o.off >= h.end {
			continue
		}
		if h.off == o.off && h.end == o.end && h.more == o.more {
			fc.c.dropFragDup.Add(1)
			h.release()
			return out
		}
		fc.dropLocked(d, &h, &fc.c.dropFragInvalid)
		return out
	}
	if !h.more && (d.final >= 0 && d.final != h.end || d.lastEnd() > h.end) ||
		h.more && d.final >= 0 && h.end > d.final {
		fc.dropLocked(d, &h, &fc.c.dropFragInvalid)
		return out
	}
	if len(d.frags) >= fc.lim.perDatagram {
		fc.dropLocked(d, &h, &fc.c.dropFragLimit)
		return out
	}

	// The sum of what it contributes to the transport checksum.
	from := h.data
	if h.off == 0 {
		if !d.parseFirst(&h, fi) {
			fc.dropLocked(d, &h, &fc.c.dropFragInvalid)
			return out
		}
		from += d.l4off
	}
	h.sum = h.sumRange(from, h.data+h.end-h.off)

	// Room for it.
	for fc.mem+h.mem > fc.lim.bytes && fc.evictOldestLocked(d) {
	}
	if fc.mem+h.mem > fc.lim.bytes {
		fc.dropLocked(d, &h, &fc.c.dropFragLimit)
		return out
	}
	d.frags = append(d.frags, h)
	d.covered += h.end - h.off
	d.mem += h.mem
	fc.mem += h.mem
	if !h.more {
		d.final = h.end
	}
	if d.final < 0 || d.covered != d.final {
		return out
	}

	// Complete: the held fragments tile [0, final).
	delete(fc.dgrams, d.key)
	fc.mem -= d.mem
	slices.SortFunc(d.frags, func(a, b heldFrag) int { return a.off - b.off })
	if d.verify && !d.checksumOK() {
		fc.c.dropFragCsum.Add(uint64(len(d.frags)))
		for i := range d.frags {
			d.frags[i].release()
		}
		return out
	}
	fc.c.fragDatagrams.Add(1)
	return append(out, d.frags...)
}

// lastEnd returns where the held fragment that reaches furthest ends.
func (d *fragDatagram) lastEnd() int {
	end := 0
	for i := range d.frags {
		end = max(end, d.frags[i].end)
	}
	return end
}

// parseFirst learns from the first fragment h (offset 0) which transport
// the datagram carries and where its header starts; false means the
// datagram must be dropped. For IPv6 the fragmentable part may begin with
// extension headers, which gVisor walks after reassembly; they must lie in
// the first fragment (RFC 8200 §4.5, and gVisor drops a first fragment
// whose headers do not parse), and another fragment header among them
// would have gVisor reassemble twice, which the link does not follow.
func (d *fragDatagram) parseFirst(h *heldFrag, fi *fragInfo) bool {
	d.proto = fi.next
	if fi.key.v6 {
		head := h.head.AsSlice()
		b := head[min(h.data, len(head)):min(h.data+fi.size, len(head))]
		w, err := frame.WalkIPv6Ext(b, fi.next, 0, fi.size)
		switch {
		case err != nil, w.Stop == frame.ExtFragment:
			return false
		case w.Stop == frame.ExtRouted:
			// gVisor discards the reassembled datagram unread (see
			// verifyChecksums).
			d.verify = false
			return true
		}
		d.proto, d.l4off = w.Proto, w.Off
	}
	d.verify = d.proto == uint8(header.TCPProtocolNumber) || d.proto == uint8(header.UDPProtocolNumber)
	return true
}

// checksumOK verifies the transport checksum of the complete datagram,
// whose fragments are sorted by offset.
func (d *fragDatagram) checksumOK() bool {
	l4len := d.final - d.l4off
	if l4len > 0xffff {
		// Longer than any transport length field (an IPv4 datagram
		// whose last fragment ends at 65536): cannot be right.
		return false
	}
	if d.proto == uint8(header.UDPProtocolNumber) && !d.key.v6 && l4len >= header.UDPMinimumSize &&
		d.byteAt(d.l4off+udpCsumOffset) == 0 && d.byteAt(d.l4off+udpCsumOffset+1) == 0 {
		// RFC 768: a zero UDP checksum over IPv4 means "none computed".
		return true
	}
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(d.proto), d.key.src, d.key.dst, uint16(l4len))
	// Every sum but the last covers an even number of bytes, as Combine's
	// first argument must.
	for i := range d.frags {
		xsum = checksum.Combine(xsum, d.frags[i].sum)
	}
	return xsum == 0xffff
}

// byteAt returns the byte at offset i of the datagram's fragmentable part.
func (d *fragDatagram) byteAt(i int) byte {
	for j := range d.frags {
		if h := &d.frags[j]; i >= h.off && i < h.end {
			return h.byteAt(h.data + i - h.off)
		}
	}
	return 0
}

// dropLocked drops datagram d with every fragment it holds, and extra
// (the fragment being added, or nil), counting them under cause.
//
// +checklocks:fc.mu
func (fc *fragChecker) dropLocked(d *fragDatagram, extra *heldFrag, cause *atomic.Uint64) {
	n := len(d.frags)
	for i := range d.frags {
		d.frags[i].release()
	}
	if extra != nil {
		extra.release()
		n++
	}
	if fc.dgrams[d.key] == d {
		delete(fc.dgrams, d.key)
		fc.mem -= d.mem
	}
	d.frags, d.mem = nil, 0
	if n > 0 {
		cause.Add(uint64(n))
	}
}

// evictOldestLocked drops the oldest held datagram other than keep, counted
// as a limit drop; false when there is none.
//
// +checklocks:fc.mu
func (fc *fragChecker) evictOldestLocked(keep *fragDatagram) bool {
	var oldest *fragDatagram
	for _, d := range fc.dgrams {
		if d != keep && (oldest == nil || d.created.Before(oldest.created)) {
			oldest = d
		}
	}
	if oldest == nil {
		return false
	}
	fc.dropLocked(oldest, nil, &fc.c.dropFragLimit)
	return true
}

// expireLocked drops the datagrams whose deadline has passed.
//
// +checklocks:fc.mu
func (fc *fragChecker) expireLocked(now time.Time) {
	for _, d := range fc.dgrams {
		if !now.Before(d.deadline) {
			fc.dropLocked(d, nil, &fc.c.dropFragExpired)
		}
	}
}

// armLocked sets the expiry timer for the earliest deadline, or stops it
// when nothing is held.
//
// +checklocks:fc.mu
func (fc *fragChecker) armLocked(now time.Time) {
	if !fc.timers {
		return
	}
	var next time.Time
	for _, d := range fc.dgrams {
		if next.IsZero() || d.deadline.Before(next) {
			next = d.deadline
		}
	}
	switch {
	case next.IsZero():
		if fc.timer != nil {
			fc.timer.Stop()
		}
	case fc.timer == nil:
		fc.timer = time.AfterFunc(next.Sub(now), fc.onTimer)
	default:
		fc.timer.Reset(next.Sub(now))
	}
}

// onTimer runs on the timer's goroutine: it drops what has expired and sets
// the timer for what is left.
func (fc *fragChecker) onTimer() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	now := fc.now()
	fc.expireLocked(now)
	fc.armLocked(now)
}

// release drops everything held, counted as expired (the queue's reader
// is stopping: nothing held can complete), and stops the timer. The
// checker can be used again afterwards.
func (fc *fragChecker) release() {
	if !fc.ready() {
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, d := range fc.dgrams {
		fc.dropLocked(d, nil, &fc.c.dropFragExpired)
	}
	if fc.timer != nil {
		fc.timer.Stop()
	}
}

// held returns the numbers of datagrams, fragments and bytes held, for
// tests.
func (fc *fragChecker) held() (dgrams, frags, mem int) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, d := range fc.dgrams {
		frags += len(d.frags)
	}
	return len(fc.dgrams), frags, fc.mem
}
