package xdp

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
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

// completePartial finishes the TCP or UDP checksum of frame (a whole
// Ethernet frame the caller owns) when it was left partial, and reports
// whether it did. Frames that are not unfragmented TCP or UDP over IPv4 or
// IPv6 (without extension headers), whose checksum is already right, or
// that are malformed are left alone; any input is safe.
func completePartial(frame []byte) bool {
	if len(frame) < header.EthernetMinimumSize {
		return false
	}
	l3 := frame[header.EthernetMinimumSize:]
	var l4 []byte
	var proto tcpip.TransportProtocolNumber
	var src, dst tcpip.Address
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if !ip.IsValid(len(l3)) || ip.More() || ip.FragmentOffset() != 0 {
			return false
		}
		l4 = l3[ip.HeaderLength():ip.TotalLength()]
		proto, src, dst = ip.TransportProtocol(), ip.SourceAddress(), ip.DestinationAddress()
	case header.IPv6ProtocolNumber:
		if len(l3) < header.IPv6MinimumSize {
			return false
		}
		ip := header.IPv6(l3)
		end := header.IPv6MinimumSize + int(ip.PayloadLength())
		if end > len(l3) {
			return false
		}
		l4 = l3[header.IPv6MinimumSize:end]
		proto, src, dst = ip.TransportProtocol(), ip.SourceAddress(), ip.DestinationAddress()
	default:
		return false
	}
	var at int
	switch proto {
	case header.TCPProtocolNumber:
		at = 16
	case header.UDPProtocolNumber:
		at = 6
	default:
		return false
	}
	if len(l4) < at+2 || len(l4) > 0xffff {
		return false
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
