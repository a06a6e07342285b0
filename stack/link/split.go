package link

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/stack/link/frame"
)

// Software header split.
//
// gVisor's network layers take a clone of the network-header view while they
// work, and every later header access pulls the packet up; pulling up a chunk
// that is shared copies it whole (copy-on-write). If a frame's headers and its
// payload share one chunk, the stack therefore copies every received frame, and
// the payload the application reads lives in that copy rather than in the
// link's receive buffer. Splitting the frame the way a NIC with header-split
// does avoids this: the headers are copied into a small view of their own and
// the payload stays where the device wrote it. Copy-on-write then copies a few
// dozen bytes and the payload chunk is never pulled up, so the receive buffer
// can be handed to the application (see DESIGN.md, "Facts about gVisor").

// MaxSplitHeader bounds the headers we copy: Ethernet (14) + IPv6 with a few
// extension headers or IPv4 with options (60) + TCP with options (60).
const MaxSplitHeader = 256

// HeaderLen returns the number of bytes of Ethernet, IP and TCP or UDP headers
// at the front of frame: the point where a header split puts the payload. It
// returns 0 when the frame is not an unfragmented TCP or UDP packet over IPv4
// or IPv6 (extension headers walked) whose headers lie wholly inside frame,
// or when the headers are all the packet holds (nothing to split). It
// reads frame and never modifies it; any input, however malformed, is safe.
func HeaderLen(frame []byte) int { return headerLen(frame) }

func headerLen(b []byte) int {
	var r frame.Repr
	err := r.Parse(b)
	return SplitAt(&r, err, len(b))
}

// SplitAt is HeaderLen of a frame already parsed (r and err from
// frame.Repr's Parse or ParseHead), of which have bytes are at hand: after
// its TCP or UDP header, when the packet is not a fragment, the headers
// parsed without error, lie in the bytes at hand and within
// MaxSplitHeader, and payload follows them; else 0. IPv6 extension
// headers are walked as the receive checks walk them.
func SplitAt(r *frame.Repr, err error, have int) int {
	if err != nil || r.Depth < frame.DepthTransport ||
		r.Proto != uint8(header.TCPProtocolNumber) && r.Proto != uint8(header.UDPProtocolNumber) {
		return 0
	}
	n := r.PayloadOff
	if r.PayloadLen == 0 || n >= have || n > MaxSplitHeader {
		return 0
	}
	return n
}

// SplitPayload builds the payload of an inbound packet from a frame that was
// received into v (the readable part of v is the whole frame). When hdrLen is
// between 1 and v.Size()-1, the first hdrLen bytes are copied into a view of
// their own and v is trimmed to start at the payload, so the two never share a
// chunk; otherwise v is used whole. SplitPayload takes ownership of v: the
// returned Buffer holds it, and releasing the Buffer releases it.
func SplitPayload(v *buffer.View, hdrLen int) buffer.Buffer {
	if hdrLen <= 0 || hdrLen >= v.Size() {
		return buffer.MakeWithView(v)
	}
	hv := buffer.NewViewWithData(v.AsSlice()[:hdrLen])
	v.TrimFront(hdrLen)
	buf := buffer.MakeWithView(hv)
	// Buffer.Append copies the start of the appended view into the spare
	// capacity of the last view when that view's chunk is not shared. A
	// momentary clone marks the header chunk shared, so the payload is
	// linked, not copied, and stays where the device wrote it.
	guard := hv.Clone()
	buf.Append(v)
	guard.Release()
	return buf
}

// PayloadHook is called by a link's receive path for each view of a split
// frame's payload, before the packet is delivered to the stack, so that the
// zero-copy socket layer (package stack) can take a reference to the memory
// the stack will later read the payload from.
//
// hdr holds the frame's Ethernet, IP and TCP or UDP headers; it is valid only
// during the call. payload is one view of the transport payload; the hook
// must not keep it, but may Clone it (a clone shares the memory and keeps it
// alive and unchanged). off is the offset of payload's first byte within the
// transport payload (non-zero for the second view of a frame received into
// two). Hooks run on the link's receive goroutines, concurrently when the
// link has several queues.
type PayloadHook func(hdr []byte, payload *buffer.View, off int)
