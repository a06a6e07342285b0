package link

import (
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
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
// or IPv6 whose headers lie wholly inside frame, or when the headers are all
// there is (nothing to split). It reads frame and never modifies it; any
// input, however malformed, is safe.
func HeaderLen(frame []byte) int {
	if len(frame) < header.EthernetMinimumSize {
		return 0
	}
	eth := header.Ethernet(frame)
	l3 := frame[header.EthernetMinimumSize:]
	var l4off int
	var proto uint8
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if !ip.IsValid(len(l3)) {
			return 0
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return 0
		}
		l4off = int(ip.HeaderLength())
		proto = ip.Protocol()
	case header.IPv6ProtocolNumber:
		// Extension headers are rare on the paths we care about; frames that
		// carry them are delivered whole (no split) rather than parsed here.
		if len(l3) < header.IPv6MinimumSize {
			return 0
		}
		ip := header.IPv6(l3)
		l4off = header.IPv6MinimumSize
		proto = ip.NextHeader()
	default:
		return 0
	}
	var l4len int
	switch proto {
	case uint8(header.TCPProtocolNumber):
		if len(l3) < l4off+header.TCPMinimumSize {
			return 0
		}
		l4len = int(header.TCP(l3[l4off:]).DataOffset())
		if l4len < header.TCPMinimumSize {
			return 0
		}
	case uint8(header.UDPProtocolNumber):
		l4len = header.UDPMinimumSize
	default:
		return 0
	}
	n := header.EthernetMinimumSize + l4off + l4len
	if n >= len(frame) || n > MaxSplitHeader {
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
