package tap

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/frame"
)

// Receive path, one reader goroutine per queue. In the order a frame meets
// it:
//
//  1. run: wait in the runtime poller until the queue is readable
//     (RawConn.Read), so an idle queue costs a parked goroutine only.
//  2. readBatch: read frames until the queue is empty (EAGAIN), each with
//     one readv into [virtio-net header][head view][tail view]: views the
//     link allocates from gVisor's pools, so the kernel's copy is the only
//     one. Small frames fill only the head view (sized for the MTU); GSO
//     super-frames continue into a 64 KiB tail view. Views a frame did not
//     reach are kept for the next read. With Config.IOURing, readRing
//     (rx_uring_linux.go) does the same in batches of reads per
//     io_uring_enter.
//  3. handleFrame: decode and validate the virtio-net header, drop frames
//     that are short or addressed to another MAC, and verify in software
//     the checksums the stack will skip (verifyChecksums): the IPv4 header
//     checksum of every frame, the TCP and UDP checksums of frames whose
//     header vouches for nothing. IP fragments go to the fragment checker
//     (holdFragment, frag.go), which holds a datagram's fragments until
//     all are there and its checksum is right, then delivers the datagram
//     whole.
//  4. splitHeaders: copy the Ethernet, IP and TCP/UDP headers into a small
//     view of their own and leave the payload in the receive views (the
//     software header split, see split.go); call the payload hook.
//     UDP GSO super-frames are cut into datagrams here (deliverUSO). A
//     frame of at most copyBreak bytes is instead copied out, split the
//     same way, and the head view kept for the next read (deliverCopied).
//  5. deliver: build the PacketBuffer, consume the Ethernet header, and
//     hand it to the stack (DeliverNetworkPacket); the stack now holds the
//     views, the link drops its reference. A reader that keeps finding
//     frames hands this step to a deliverer goroutine (rx_handoff.go).

// rxState is a reader's buffers. Used only by the queue's reader goroutine.
type rxState struct {
	vnet [VnetHdrLen]byte
	hdr  vnetHdr
	// head and tail are the next read's views, nil once handed to the
	// stack; their whole capacity is readable (Size == Capacity).
	head, tail *buffer.View
	iov        [3]unix.Iovec
	niov       int
	// views and segs are scratch for USO segmentation.
	views [2]*buffer.View
	segs  []*buffer.View
	// frag describes the frame being handled when it is a fragment.
	frag fragInfo
	// frags holds fragments until their datagram is complete and
	// checked; initialised at the first fragment. Its own lock guards it
	// (its expiry timer runs on another goroutine).
	frags fragChecker
}

// run is a queue's reader goroutine: step 1.
func (q *queue) run() {
	l := q.link
	defer l.wg.Done()
	defer q.rx.release()
	defer q.rxr.releaseSlots()
	defer q.stopHandoff()
	for !l.stopping.Load() {
		err := q.rc.Read(q.readFn)
		if q.readErr != nil {
			// A failed read(2) ends the reader; it was counted.
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			// The file was closed under us (Close sets stopping
			// first, so this is not expected).
			q.fail(fmt.Errorf("tap: %s queue %d: %w", l.name, q.idx, err))
			return
		}
	}
}

// readBatch is the RawConn.Read callback: step 2. It returns false to park
// until the queue is readable again, true to return to run.
func (q *queue) readBatch(fd uintptr) bool {
	l := q.link
	got := false
	for !l.stopping.Load() {
		q.rx.refill(l)
		n, errno := readv(int(fd), q.rx.iov[:q.rx.niov])
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if got {
				q.c.rxWakeups.Add(1)
			}
			q.flushHandoff()
			q.ho.run = 0
			return false
		default:
			q.c.rxErrors.Add(1)
			q.fail(fmt.Errorf("tap: %s queue %d: read: %w", l.name, q.idx, errno))
			return true
		}
		if n == 0 {
			// End of file: the far end of a socket is gone (a TAP
			// never yields an empty read).
			q.fail(fmt.Errorf("tap: %s queue %d: %w", l.name, q.idx, io.EOF))
			return true
		}
		got = true
		q.ho.run++
		q.handleFrame(n)
	}
	if got {
		q.c.rxWakeups.Add(1)
	}
	return true
}

// refill makes sure the head view (and, when the link uses one, the tail
// view) exist and points the iovecs at them.
func (rx *rxState) refill(l *Link) {
	i := 0
	if l.vnet {
		setIovec(&rx.iov[0], rx.vnet[:])
		i++
	}
	if rx.head == nil {
		rx.head = buffer.NewViewSize(l.headView)
	}
	setIovec(&rx.iov[i], rx.head.AsSlice())
	i++
	if l.tailView {
		if rx.tail == nil {
			rx.tail = buffer.NewViewSize(buffer.MaxChunkSize)
		}
		setIovec(&rx.iov[i], rx.tail.AsSlice())
		i++
	}
	rx.niov = i
}

// release returns the spare views and drops the held fragments when the
// reader stops.
func (rx *rxState) release() {
	rx.frags.release()
	if rx.head != nil {
		rx.head.Release()
		rx.head = nil
	}
	if rx.tail != nil {
		rx.tail.Release()
		rx.tail = nil
	}
}

// handleFrame processes one read of n bytes: steps 3 to 5.
func (q *queue) handleFrame(n int) {
	l := q.link
	rx := &q.rx
	var hdr *vnetHdr
	if l.vnet {
		if n < VnetHdrLen {
			q.c.rxFrames.Add(1)
			q.c.dropShort.Add(1)
			return
		}
		n -= VnetHdrLen
		rx.hdr.decode(rx.vnet[:])
		hdr = &rx.hdr
	}
	q.c.rxFrames.Add(1)
	q.c.rxBytes.Add(uint64(n))
	if n < header.EthernetMinimumSize {
		q.c.dropShort.Add(1)
		return
	}
	if hdr != nil && hdr.validateRx(n) != nil {
		q.c.dropVnet.Add(1)
		return
	}
	headLen := min(n, rx.head.Size())
	head := rx.head.AsSlice()[:headLen]
	var tail []byte
	if n > headLen {
		tail = rx.tail.AsSlice()[:n-headLen]
	}

	// Unicast frames for another MAC address are not ours; group
	// (multicast, broadcast) frames are (RFC 9542 §2.1).
	if head[0]&0x01 == 0 && string(head[:header.EthernetAddressSize]) != string(*l.mac.Load()) {
		q.c.dropNotForUs.Add(1)
		return
	}
	box := l.dispatch.Load()
	if box == nil {
		q.c.dropDetached.Add(1)
		return
	}
	// The one parse of the frame's headers, which every step below
	// reads.
	var fr frame.Repr
	ferr := fr.ParseHead(head, n)
	isFrag := false
	if hdr != nil {
		// With offloads the link advertises receive checksum
		// offload, and the stack checks nothing the link does not.
		switch checkParsed(&fr, ferr, head, tail, hdr.flags&(vnetFNeedsCsum|vnetFDataValid) != 0, &rx.frag) {
		case csumGood:
			q.c.rxVerified.Add(1)
		case csumBad:
			q.c.dropCsum.Add(1)
			return
		case csumUncheckable:
			q.c.dropUncheckable.Add(1)
			return
		case csumFragment:
			isFrag = true
		}
	} else if fr.Fragment && checkParsed(&fr, ferr, head, tail, false, &rx.frag) == csumFragment {
		// Without offloads the stack checks every checksum itself,
		// but fragments still go to the checker: the link reassembles
		// every datagram, so gVisor's reassembly never runs (frag.go).
		isFrag = true
	}
	if !isFrag && (hdr == nil || hdr.gso() == vnetGSONone) && q.admitControl(head, n, &fr, ferr) {
		// A TCP segment for a listener over its class's budget (admit.go).
		return
	}

	if !isFrag && tail == nil && n <= l.copyBreak && (hdr == nil || hdr.gso() == vnetGSONone) {
		q.deliverCopied(box.d, hdr, head, &fr, ferr)
		return
	}

	// The frame is accepted: take its views out of the reader's state.
	headV := rx.head
	rx.head = nil
	headV.CapLength(headLen)
	var tailV *buffer.View
	if tail != nil {
		tailV = rx.tail
		rx.tail = nil
		tailV.CapLength(len(tail))
	}

	if isFrag {
		q.holdFragment(box.d, headV, tailV)
		return
	}
	if hdr != nil {
		switch hdr.gso() {
		case vnetGSOTCPv4, vnetGSOTCPv6:
			q.c.rxGSO.Add(1)
		case vnetGSOUDPL4:
			q.deliverUSO(box.d, hdr, headV, tailV)
			return
		}
	}
	split := rxSplitParsed(hdr, head, &fr, ferr)
	tcp := carriesTCP(&fr)
	buf := q.splitHeaders(headV, tailV, split)
	q.deliver(box.d, buf, !tcp)
}

// copyBreak is the largest frame the reader copies out of its receive view
// instead of handing the view to the stack (as NIC drivers' rx_copybreak
// does). A small frame (a TCP ACK, a short request, a small datagram) would
// otherwise take a whole head view (sized for the MTU, and cleared by
// gVisor's chunk pool before every read) to hold a few dozen bytes; copying
// those bytes into views of their size costs less, and the head view stays
// with the reader for the next read. The bound equals the header split's,
// so a frame's copied bytes never exceed MaxSplitHeader either way.
const copyBreak = link.MaxSplitHeader

// deliverCopied delivers a frame of at most copyBreak bytes, read into the
// head view, by copying it: the headers into one small view and the payload
// into another (the same header split as splitHeaders, so the stack's
// copy-on-write of the headers never reaches the payload, and the payload
// hook sees the view the stack will read from), leaving the head view to
// the reader. Every byte is counted as copied (RxCopiedBytes) and the frame
// in RxCopyBreakFrames.
func (q *queue) deliverCopied(d stack.NetworkDispatcher, hdr *vnetHdr, frame []byte, fr *frame.Repr, ferr error) {
	q.c.rxCopied.Add(uint64(len(frame)))
	q.c.rxCopyBreak.Add(1)
	split := rxSplitParsed(hdr, frame, fr, ferr)
	var buf buffer.Buffer
	if split <= 0 || split >= len(frame) {
		buf = buffer.MakeWithView(buffer.NewViewWithData(frame))
	} else {
		buf = buffer.MakeWithView(buffer.NewViewWithData(frame[:split]))
		pv := buffer.NewViewWithData(frame[split:])
		if hook := q.link.hook.Load(); hook != nil {
			(*hook)(frame[:split], pv, 0)
		}
		mergeView(&buf, pv)
	}
	q.deliver(d, buf, !carriesTCP(fr))
}

// carriesTCP reports whether a parsed frame holds TCP over IPv4 or IPv6.
func carriesTCP(r *frame.Repr) bool {
	return r.Depth >= frame.DepthNetwork && r.Proto == uint8(header.TCPProtocolNumber)
}

// holdFragment hands an IP fragment to the queue's fragment checker
// (frag.go), taking ownership of headV and tailV, and delivers the datagram
// once it is complete and its checksum right: whole, as one unfragmented
// packet the link builds from the fragments' views (fragDatagram.build),
// so that gVisor's own reassembly never runs on this link. Inline, on the
// reader, like TCP.
func (q *queue) holdFragment(d stack.NetworkDispatcher, headV, tailV *buffer.View) {
	rx := &q.rx
	if !rx.frags.ready() {
		rx.frags.init(&q.c)
	}
	q.c.rxUnverifiable.Add(1)
	dg := rx.frags.add(headV, tailV, &rx.frag)
	if dg == nil {
		return
	}
	q.c.fragReassembled.Add(1)
	q.c.fragReassembledFrames.Add(uint64(len(dg.frags)))
	hv := dg.header()
	q.c.rxCopied.Add(uint64(hv.Size()))
	if dg.proto == uint8(header.TCPProtocolNumber) {
		// A TCP segment, whole now: admitted like an unfragmented
		// one (admit.go), before the payload hook sees it.
		var fr frame.Repr
		err := fr.ParseHead(hv.AsSlice(), dg.frameLen())
		if q.admitControl(hv.AsSlice(), hv.Size(), &fr, err) {
			hv.Release()
			dg.release()
			return
		}
	}
	var hook link.PayloadHook
	if h := q.link.hook.Load(); h != nil {
		hook = *h
	}
	buf, copied := dg.payload(hv, hook)
	q.c.rxCopied.Add(uint64(copied))
	q.deliver(d, buf, false)
}

// splitHeaders builds the packet's payload from the frame in headV (and
// tailV, which continues it, or nil), taking ownership of both: step 4.
// SplitPayload copies the first split bytes into a view of their own and
// trims headV to the payload; the tail view is linked after it with
// Buffer.Merge, because Buffer.Append would copy the start of the tail into
// the spare capacity of the (unshared, not full) head view.
func (q *queue) splitHeaders(headV, tailV *buffer.View, split int) buffer.Buffer {
	didSplit := split > 0 && split < headV.Size()
	// The headers stay where they were read (SplitPayload copies them and
	// trims headV without touching its memory), so the hook can read them.
	var hdr []byte
	if didSplit {
		hdr = headV.AsSlice()[:split]
	}
	buf := link.SplitPayload(headV, split)
	if didSplit {
		q.c.rxCopied.Add(uint64(split))
		if hook := q.link.hook.Load(); hook != nil {
			// headV is now the payload's first view; buf owns it and
			// the link still owns buf.
			(*hook)(hdr, headV, 0)
			if tailV != nil {
				(*hook)(hdr, tailV, headV.Size())
			}
		}
	}
	if tailV != nil {
		mergeView(&buf, tailV)
	}
	return buf
}

// mergeView appends v to buf as a view of its own (never copied into the
// spare room of buf's last view), taking ownership of v.
func mergeView(buf *buffer.Buffer, v *buffer.View) {
	b := buffer.MakeWithView(v)
	buf.Merge(&b)
}

// deliver hands a frame to the stack: step 5. It takes ownership of buf.
//
// handOK says the frame may go to the queue's deliverer when the reader is
// busy (rx_handoff.go); TCP frames are always delivered inline.
func (q *queue) deliver(d stack.NetworkDispatcher, buf buffer.Buffer, handOK bool) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buf})
	if !q.link.ParseHeader(pkt) {
		pkt.DecRef()
		return
	}
	if !handOK {
		d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		pkt.DecRef()
		return
	}
	q.deliverOrHand(d, pkt)
}

// deliverUSO cuts a UDP GSO super-frame into its datagrams and delivers
// each: one header copy per datagram (usoHeader) and the payload shared,
// as clones of the receive views. It takes ownership of headV and tailV.
func (q *queue) deliverUSO(d stack.NetworkDispatcher, hdr *vnetHdr, headV, tailV *buffer.View) {
	rx := &q.rx
	l4 := int(hdr.csumStart)
	hlen := l4 + header.UDPMinimumSize
	frameLen := headV.Size()
	if tailV != nil {
		frameLen += tailV.Size()
	}
	gsoSize := int(hdr.gsoSize)
	if hlen >= headV.Size() || hlen > link.MaxSplitHeader || header.UDP(headV.AsSlice()[l4:]).Length() < header.UDPMinimumSize {
		q.c.dropVnet.Add(1)
		headV.Release()
		if tailV != nil {
			tailV.Release()
		}
		return
	}
	hdrBytes := headV.AsSlice()[:hlen]
	payloadLen := frameLen - hlen
	headV.TrimFront(hlen)
	rx.views[0], rx.views[1] = headV, tailV
	src := rx.views[:1]
	if tailV != nil {
		src = rx.views[:2]
	}
	hook := q.link.hook.Load()
	nseg := usoSegments(payloadLen, gsoSize)
	for i := 0; i < nseg; i++ {
		off := i * gsoSize
		size := min(gsoSize, payloadLen-off)
		hv := buffer.NewViewWithData(hdrBytes)
		if !usoHeader(hv.AsSlice(), l4, i, size) {
			// The headers are the same for every datagram: this
			// is the first, and nothing was delivered.
			hv.Release()
			q.c.dropVnet.Add(1)
			break
		}
		if i == 0 {
			q.c.rxUSO.Add(1)
		}
		q.c.rxCopied.Add(uint64(hlen))
		rx.segs = sliceViews(rx.segs[:0], src, off, size)
		buf := buffer.MakeWithView(hv)
		segOff := 0
		for j, v := range rx.segs {
			if hook != nil {
				(*hook)(hv.AsSlice(), v, segOff)
			}
			segOff += v.Size()
			mergeView(&buf, v)
			rx.segs[j] = nil
		}
		q.c.rxUSODatagrams.Add(1)
		q.deliver(d, buf, true)
	}
	headV.Release()
	if tailV != nil {
		tailV.Release()
	}
	rx.views[0], rx.views[1] = nil, nil
}
