package xdp

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/stack/link/frame"
)

// Partial checksums from a peer on the same host (Config.PartialChecksums).
//
// A kernel socket sending through a veth with transmit checksum offload on
// (the default) leaves its TCP and UDP checksums partial: the checksum
// field holds only the folded pseudo-header sum (CHECKSUM_PARTIAL, to be
// finished by a device that never runs on a veth). Frames carry no flag
// that says so, and the stack, which verifies every checksum, drops them.
// completePartial recognises such a frame — its checksum is wrong, and its
// checksum field equals the pseudo-header sum — and finishes the checksum
// in place. A frame corrupted on a wire passes this only if its field
// happens to equal that sum, one chance in 65 536, the same as that of a
// corrupt frame whose checksum happens to come out right: the option
// doubles the (tiny) rate of undetected corruption, which is why it is
// off by default and meant for veth peers.

// completePartial finishes the TCP or UDP checksum of b (a whole Ethernet
// frame the caller owns) when it was left partial, and reports whether it
// did. Frames that are not unfragmented TCP or UDP over IPv4 or IPv6
// (extension headers walked by frame.Repr), whose checksum is already
// right, or that are malformed are left alone; any input is safe.
func completePartial(b []byte) bool {
	var r frame.Repr
	if r.Parse(b) != nil || r.Depth < frame.DepthTransport {
		return false
	}
	var at int
	proto := tcpip.TransportProtocolNumber(r.Proto)
	switch proto {
	case header.TCPProtocolNumber:
		at = 16
	case header.UDPProtocolNumber:
		at = 6
	default:
		return false
	}
	l4 := b[r.L4Off:r.IPEnd]
	if len(l4) < at+2 || len(l4) > 0xffff {
		return false
	}
	var src, dst tcpip.Address
	if r.IPVersion == 4 {
		src, dst = tcpip.AddrFrom4([4]byte(r.Src[:4])), tcpip.AddrFrom4([4]byte(r.Dst[:4]))
	} else {
		src, dst = tcpip.AddrFrom16(r.Src), tcpip.AddrFrom16(r.Dst)
	}
	field := binary.BigEndian.Uint16(l4[at:])
	if proto == header.UDPProtocolNumber && field == 0 {
		return false // no checksum (IPv4), or invalid (IPv6): the stack decides
	}
	pseudo := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
	if checksum.Checksum(l4, pseudo) == 0xffff || field != pseudo {
		return false // right already, or wrong and not partial
	}
	binary.BigEndian.PutUint16(l4[at:], 0)
	sum := ^checksum.Checksum(l4, pseudo)
	if sum == 0 && proto == header.UDPProtocolNumber {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(l4[at:], sum)
	return true
}
