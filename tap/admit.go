package tap

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/frame"
)

// Admission of TCP segments at listeners is link.Admission, shared with
// the other links (its doc has the rules). The TAP link's part, besides
// asking it about every unfragmented frame and every reassembled TCP
// segment (rx.go, frag.go) and telling it about every packet sent (tx.go):
// every payload-less TCP frame is small enough for the copy-break (rx.go),
// so it is copied into views of its own size (a few dozen bytes, counted
// in RxCopiedBytes and RxCopyBreakFrames) and the receive view stays with
// the reader for the next read; a queued SYN holds a small chunk, not a
// receive view sized for the MTU.

// admitLimit, admitLeakPerSec and admitCalm are link.Admission's, for the
// tests.
const (
	admitLimit      = link.AdmitLimit
	admitLeakPerSec = link.AdmitLeakPerSec
	admitCalm       = link.AdmitCalm
)

// admission is the link's link.Admission, shared by its queues.
type admission struct {
	link.Admission
}

// noteTx tells the admission about a packet the stack transmits.
func (a *admission) noteTx(pkt *stack.PacketBuffer) { a.NoteTx(pkt) }

// SetSYNPressure implements link.Admitter (see link.Admission).
func (l *Link) SetSYNPressure(fn link.SYNPressure) { l.adm.SetSYNPressure(fn) }

// SetConnLookup implements link.Admitter (see link.Admission).
func (l *Link) SetConnLookup(fn link.ConnLookup) { l.adm.SetConnLookup(fn) }

// tcpSegment reports whether frame (n bytes, of which head holds the first
// part) is an unfragmented TCP segment over IPv4 or IPv6, whether it
// carries payload, and its flags.
func tcpSegment(head []byte, n int) (flags header.TCPFlags, payload bool, l4off int, ok bool) {
	var r frame.Repr
	err := r.ParseHead(head, n)
	return tcpSegmentParsed(&r, err)
}

// tcpSegmentParsed is tcpSegment of a frame already parsed (r and err from
// frame.Repr.ParseHead): its headers, up to the TCP header's end, lie in
// the bytes at hand and agree with each other.
func tcpSegmentParsed(r *frame.Repr, err error) (flags header.TCPFlags, payload bool, l4off int, ok bool) {
	if err != nil || r.Depth < frame.DepthTransport || r.Proto != uint8(header.TCPProtocolNumber) {
		return 0, false, 0, false
	}
	return header.TCPFlags(r.TCPFlags), r.PayloadLen > 0, r.L4Off, true
}

// admitControl asks the link's admission about a checked, unfragmented
// frame of n bytes (parsed into fr, ferr). It
// reports whether it dropped the frame; if not, the caller delivers it as
// usual, and a segment without payload, being far smaller than copyBreak,
// is copied out of the receive view (deliverCopied).
func (q *queue) admitControl(head []byte, n int, fr *frame.Repr, ferr error) bool {
	return q.link.adm.Check(head, n, fr, ferr) != link.Admit // the admission counts a refusal
}
