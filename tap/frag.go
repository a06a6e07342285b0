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

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/frame"
)

// Fragment checker.
//
// A link that advertises CapabilityRXChecksumOffload makes gVisor skip the
// TCP and UDP checksums of the datagrams it reassembles from IP fragments,
// and a single fragment cannot be verified: the checksum covers the whole
// datagram. So the link holds the fragments of each such datagram until it
// has all of them, sums them, and then either delivers the datagram whole
// or drops every fragment, counted.
//
// Why the link reassembles rather than hand gVisor the fragments: gVisor's
// IPv4 reassembly was seen to hand on a packet whose header memory had
// been reused (the race detector caught a reassembled header read from a
// chunk a TCP send was writing, and a fragment flood crashed the stack, ours
// and stock gVisor's alike); and the checker already holds and orders
// every fragment, so the datagram is all there. build makes it one
// unfragmented packet: a new view with the first fragment's headers,
// rewritten, and the transport header, then the fragments' data as views
// of their receive memory, in offset order: the payload of a fragment of at
// least fragCopyBreak bytes is not copied, and the payload hook sees those
// views as it sees an unfragmented frame's, so a UDP datagram larger than
// the MTU still reaches a zero-copy socket without a copy; smaller
// fragments are copied (counted), so that they pin no receive view. gVisor's reassembly rules (RFC 791, RFC 8200 §4.5, RFC
// 5722) are the checker's: duplicates, overlaps, ends, timeouts and limits
// below. Why not per packet: gVisor's NIC overwrites pkt.RXChecksumValidated
// from the link's capabilities (nic.go), so the link cannot ask the stack
// to verify just these packets.
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
// What the link's reassembly changes for the stack: it sees no fragment of
// an incomplete datagram, so it sends no ICMP Time Exceeded for one (RFC
// 792, RFC 8200 §4.5 say "should"); datagrams the link dropped for a bad
// checksum are counted by the link rather than by the stack's transport;
// and the stack's fragment statistics stay at zero (the link's counters,
// RxFragReassembled and the RxDropFrag* drops, say what happened).

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

// take hands the frame's bytes [from, to) to emit as views of the
// frame's memory (one per receive view they lie in, emit taking ownership),
// releases what is left, and empties h.
func (h *heldFrag) take(from, to int, emit func(*buffer.View)) {
	hs := h.head.Size()
	if from < hs && from < to {
		h.head.TrimFront(from)
		h.head.CapLength(min(to, hs) - from)
		emit(h.head)
	} else {
		h.head.Release()
	}
	if h.tail != nil {
		if to > hs && max(from, hs) < to {
			f := max(from-hs, 0)
			h.tail.TrimFront(f)
			h.tail.CapLength(to - hs - f)
			emit(h.tail)
		} else {
			h.tail.Release()
		}
	}
	*h = heldFrag{}
}

// appendRange appends the frame's bytes [from, to) to dst.
func (h *heldFrag) appendRange(dst []byte, from, to int) []byte {
	head := h.head.AsSlice()
	if from < len(head) {
		dst = append(dst, head[from:min(to, len(head))]...)
	}
	if to > len(head) {
		dst = append(dst, h.tail.AsSlice()[max(from, len(head))-len(head):to-len(head)]...)
	}
	return dst
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
	// ipEnd is where the first fragment's IP headers end in its frame:
	// its data for IPv4, its fragment header for IPv6; nhPos is where the
	// next header field naming that fragment header lies, and next is
	// the fragment header's own next header (IPv6 only).
	ipEnd, nhPos int
	next         uint8
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
// frame; tail may be nil), described by fi. It returns nil while the
// datagram is incomplete, and the datagram once it is complete, its checksum
// right and its length one an IP header can state: removed from the
// checker, its fragments sorted by offset and owned by the caller, who
// builds the packet from them (build). Frames dropped here are released
// and counted.
func (fc *fragChecker) add(head, tail *buffer.View, fi *fragInfo) *fragDatagram {
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
			return nil
		}
		fc.dropLocked(d, &h, &fc.c.dropFragInvalid)
		return nil
	}
	if !h.more && (d.final >= 0 && d.final != h.end || d.lastEnd() > h.end) ||
		h.more && d.final >= 0 && h.end > d.final {
		fc.dropLocked(d, &h, &fc.c.dropFragInvalid)
		return nil
	}
	if len(d.frags) >= fc.lim.perDatagram {
		fc.dropLocked(d, &h, &fc.c.dropFragLimit)
		return nil
	}

	// The sum of what it contributes to the transport checksum.
	from := h.data
	if h.off == 0 {
		if !d.parseFirst(&h, fi) {
			fc.dropLocked(d, &h, &fc.c.dropFragInvalid)
			return nil
		}
		from += d.l4off
	}
	h.sum = h.sumRange(from, h.data+h.end-h.off)

	// Room for it.
	for fc.mem+h.mem > fc.lim.bytes && fc.evictOldestLocked(d) {
	}
	if fc.mem+h.mem > fc.lim.bytes {
		fc.dropLocked(d, &h, &fc.c.dropFragLimit)
		return nil
	}
	d.frags = append(d.frags, h)
	d.covered += h.end - h.off
	d.mem += h.mem
	fc.mem += h.mem
	if !h.more {
		d.final = h.end
	}
	if d.final < 0 || d.covered != d.final {
		return nil
	}

	// Complete: the held fragments tile [0, final).
	delete(fc.dgrams, d.key)
	fc.mem -= d.mem
	slices.SortFunc(d.frags, func(a, b heldFrag) int { return a.off - b.off })
	if d.ipLen() > 0xffff {
		// Longer than the IP header's length field can say (IPv4's
		// total length, IPv6's payload length: a jumbogram needs a
		// hop-by-hop option the link does not write).
		fc.dropLocked(d, nil, &fc.c.dropFragInvalid)
		return nil
	}
	if d.verify && !d.checksumOK() {
		fc.dropLocked(d, nil, &fc.c.dropFragCsum)
		return nil
	}
	if d.verify {
		fc.c.fragDatagrams.Add(1)
	}
	return d
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
// the datagram carries, where its header starts, and what build needs to
// rewrite the IP header; false means the datagram must be dropped. For IPv6
// the fragmentable part may begin with extension headers, which gVisor
// walks after reassembly; they must lie in the first fragment (RFC 8200
// §4.5, and gVisor drops a first fragment whose headers do not parse), and
// another fragment header among them would have gVisor reassemble twice,
// which the link does not follow.
func (d *fragDatagram) parseFirst(h *heldFrag, fi *fragInfo) bool {
	d.proto, d.next, d.ipEnd = fi.next, fi.next, fi.data
	if fi.key.v6 {
		head := h.head.AsSlice()
		d.ipEnd = fi.data - frame.IPv6FragLen
		nh, ok := ipv6FragNextHeader(head, d.ipEnd)
		if !ok {
			return false
		}
		d.nhPos = nh
		b := head[min(h.data, len(head)):min(h.data+fi.size, len(head))]
		w, err := frame.WalkIPv6Ext(b, fi.next, 0, fi.size)
		switch {
		case err != nil, w.Stop == frame.ExtFragment:
			return false
		case w.Stop == frame.ExtRouted:
			// gVisor discards the reassembled datagram unread (see
			// verifyChecksums) once it has read the routing header,
			// which build therefore puts with the IP headers.
			d.verify = false
			d.proto = 0
			d.l4off = min(w.Off+(int(b[w.Off+1])+1)*8, fi.size)
			return true
		}
		d.proto, d.l4off = w.Proto, w.Off
	}
	d.verify = d.proto == uint8(header.TCPProtocolNumber) || d.proto == uint8(header.UDPProtocolNumber)
	return true
}

// ipv6FragNextHeader returns where, in the frame b, the next header field
// naming the IPv6 fragment header at offset frag lies: the fixed header's,
// or that of the last extension header before it. The headers before frag
// were walked (frame.WalkIPv6Ext) when the frame was parsed, so this walk,
// with the same lengths, ends at frag; false if it does not.
func ipv6FragNextHeader(b []byte, frag int) (int, bool) {
	pos := header.EthernetMinimumSize + 6
	off := header.EthernetMinimumSize + header.IPv6MinimumSize
	for off < frag && off+8 <= len(b) {
		n := (int(b[off+1]) + 1) * 8
		switch b[pos] {
		case uint8(header.IPv6FragmentExtHdrIdentifier), ipv6Experiment1, ipv6Experiment2:
			n = 8
		}
		pos, off = off, off+n
	}
	return pos, off == frag && frag+frame.IPv6FragLen <= len(b)
}

// The experiment header numbers (RFC 3692), which gVisor, and so
// frame.WalkIPv6Ext, reads as 8 bytes.
const (
	ipv6Experiment1 = 253
	ipv6Experiment2 = 254
)

// ipLen returns the length field of the reassembled datagram's IP header:
// IPv4's total length, or IPv6's payload length (the headers before the
// fragment header, which goes, and the fragmentable part). Valid once the
// datagram is complete.
func (d *fragDatagram) ipLen() int {
	n := d.ipEnd - header.EthernetMinimumSize + d.final
	if d.key.v6 {
		n -= header.IPv6MinimumSize
	}
	return n
}

// l4Split returns how many bytes of the fragmentable part build copies
// after the IP headers: the IPv6 extension headers in it and the transport
// header, everything gVisor reads with PullUp, so that it never merges (and
// copies) payload views. Valid once the datagram is complete.
func (d *fragDatagram) l4Split() int {
	n := d.l4off
	switch d.proto {
	case uint8(header.UDPProtocolNumber), uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		n += header.UDPMinimumSize // all three are 8 bytes
	case uint8(header.TCPProtocolNumber):
		doff := header.TCPMinimumSize
		if d.l4off+header.TCPDataOffset < d.final {
			doff = max(doff, int(d.byteAt(d.l4off+header.TCPDataOffset)>>4)*4)
		}
		n += doff
	}
	return min(n, d.final)
}

// build makes the complete datagram d (whose fragments add handed back) into
// one unfragmented packet, taking ownership of every fragment's views: the
// header view (header) followed by the rest of each fragment's data in
// offset order (payload). It returns the packet and the number of bytes
// copied.
func (d *fragDatagram) build(hook link.PayloadHook) (buffer.Buffer, int) {
	hv := d.header()
	n := hv.Size()
	buf, copied := d.payload(hv, hook)
	return buf, n + copied
}

// header returns a new view with the Ethernet and IP headers of the first
// fragment, rewritten for the whole datagram (IPv4: More Fragments and the
// offset cleared, total length and header checksum set; IPv6: the fragment
// header removed, the next header field that named it and the payload
// length set), followed by a copy of the first l4Split bytes of the
// fragmentable part (the transport header). The fragments stay d's.
func (d *fragDatagram) header() *buffer.View {
	unfrag := d.ipEnd
	hv := buffer.NewViewSize(unfrag + d.l4Split())
	hb := hv.AsSlice()
	copy(hb, d.frags[0].head.AsSlice()[:unfrag])
	d.copyOut(hb[unfrag:], len(hb)-unfrag)
	if d.key.v6 {
		hb[d.nhPos] = d.next
		header.IPv6(hb[header.EthernetMinimumSize:]).SetPayloadLength(uint16(d.ipLen()))
	} else {
		ip := header.IPv4(hb[header.EthernetMinimumSize:])
		ip.SetTotalLength(uint16(d.ipLen()))
		ip.SetFlagsFragmentOffset(ip.Flags()&^header.IPv4FlagMoreFragments, 0)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	return hv
}

// frameLen returns the length of the frame build makes.
func (d *fragDatagram) frameLen() int {
	n := header.EthernetMinimumSize + d.ipLen()
	if d.key.v6 {
		n += header.IPv6MinimumSize
	}
	return n
}

// fragCopyBreak is the smallest fragment data payload hands on as a view
// of the fragment's receive memory; less is copied (and counted). A fragment
// of a few bytes (hping3 -f cuts datagrams into 16-byte pieces) would
// otherwise pin a whole receive view, sized for the MTU, for as long as its
// datagram is queued: a hundredfold more memory than the data, which no
// receive-buffer accounting sees. The copy-break of unfragmented frames is
// the same bound.
const fragCopyBreak = copyBreak

// payload returns the packet: hv (from header, taken over) followed by the
// fragments' data past what hv holds, in offset order: the data of a
// fragment of at least fragCopyBreak bytes as views of its frame's memory,
// runs of smaller ones copied into views of their own. It takes ownership
// of every fragment's views, leaves d without fragments, and returns the
// number of bytes copied. hook, if not nil and the datagram is TCP or UDP,
// is called with each view of received memory (not the copies), as for an
// unfragmented frame.
func (d *fragDatagram) payload(hv *buffer.View, hook link.PayloadHook) (buffer.Buffer, int) {
	hb := hv.AsSlice()
	split := len(hb) - d.ipEnd
	if d.proto != uint8(header.TCPProtocolNumber) && d.proto != uint8(header.UDPProtocolNumber) {
		hook = nil
	}
	buf := buffer.MakeWithView(hv)
	off, copied := 0, 0
	var small []byte
	flush := func() {
		if len(small) > 0 {
			mergeView(&buf, buffer.NewViewWithData(small))
			off += len(small)
			copied += len(small)
			small = small[:0]
		}
	}
	for i := range d.frags {
		h := &d.frags[i]
		from, to := h.data+max(h.off, split)-h.off, h.data+h.end-h.off
		if to-from < fragCopyBreak {
			small = h.appendRange(small, from, to)
			h.release()
			continue
		}
		flush()
		h.take(from, to, func(v *buffer.View) {
			if hook != nil {
				hook(hb, v, off)
			}
			off += v.Size()
			mergeView(&buf, v)
		})
	}
	flush()
	d.frags = nil
	return buf, copied
}

// release drops the fragments of a datagram add handed back that will not
// be built.
func (d *fragDatagram) release() {
	for i := range d.frags {
		d.frags[i].release()
	}
	d.frags = nil
}

// copyOut copies the first n bytes of the datagram's fragmentable part into
// dst.
func (d *fragDatagram) copyOut(dst []byte, n int) {
	for i := range d.frags {
		h := &d.frags[i]
		if h.off >= n {
			return
		}
		for j := h.off; j < min(h.end, n); j++ {
			dst[j] = h.byteAt(h.data + j - h.off)
		}
	}
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
