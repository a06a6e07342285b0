// Package linktest holds test helpers for the link layer: frames built with
// gVisor's header encoders for the tests of stack/link and of the links
// below it. It imports no link, so the link packages' own tests can use it.
package linktest

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Frame builds an Ethernet frame carrying an IPv4 (or, with v6, IPv6)
// packet from 192.0.2.1 to 192.0.2.2 (2001:db8::1 to 2001:db8::2) with a
// TCP or UDP header, tcpOpts bytes of TCP options and payload bytes
// counting up from 0.
func Frame(v6 bool, proto tcpip.TransportProtocolNumber, tcpOpts, payload int) []byte {
	l4 := header.UDPMinimumSize
	if proto == header.TCPProtocolNumber {
		l4 = header.TCPMinimumSize + tcpOpts
	}
	l3 := header.IPv4MinimumSize
	if v6 {
		l3 = header.IPv6MinimumSize
	}
	b := make([]byte, header.EthernetMinimumSize+l3+l4+payload)
	eth := header.Ethernet(b)
	src, dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	if v6 {
		src, dst = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}), tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
		eth.Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		header.IPv6(b[14:]).Encode(&header.IPv6Fields{PayloadLength: uint16(l4 + payload), TransportProtocol: proto, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		eth.Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
		header.IPv4(b[14:]).Encode(&header.IPv4Fields{TotalLength: uint16(l3 + l4 + payload), Protocol: uint8(proto), TTL: 64, SrcAddr: src, DstAddr: dst})
	}
	t4 := b[14+l3:]
	if proto == header.TCPProtocolNumber {
		header.TCP(t4).Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, DataOffset: uint8(l4), Flags: header.TCPFlagAck, WindowSize: 100})
	} else {
		header.UDP(t4).Encode(&header.UDPFields{SrcPort: 1, DstPort: 2, Length: uint16(l4 + payload)})
	}
	for i := range payload {
		b[len(b)-payload+i] = byte(i)
	}
	return b
}
