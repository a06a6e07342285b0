package xdp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// tcpFrame4 builds an Ethernet/IPv4/TCP frame with payload; partial leaves
// the TCP checksum as a sender with checksum offload does.
func tcpFrame4(payload []byte, partial bool) []byte {
	n := header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize + len(payload)
	b := make([]byte, n)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	src, dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(n - header.EthernetMinimumSize), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, SeqNum: 7, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 100})
	copy(tcp[header.TCPMinimumSize:], payload)
	pseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))
	if partial {
		tcp.SetChecksum(pseudo)
	} else {
		tcp.SetChecksum(^checksum.Checksum(tcp, pseudo))
	}
	return b
}

func tcpValid(b []byte) bool {
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	tcp := ip.Payload()
	pseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
	return checksum.Checksum(tcp, pseudo) == 0xffff
}

func TestCompletePartial(t *testing.T) {
	p := []byte("hello, partial world")
	partial := tcpFrame4(p, true)
	if tcpValid(partial) {
		t.Fatal("a partial checksum verifies: the test frame is wrong")
	}
	if !completePartial(partial) || !tcpValid(partial) {
		t.Fatal("partial checksum not completed")
	}
	full := tcpFrame4(p, false)
	if completePartial(full) || !tcpValid(full) {
		t.Fatal("a right checksum was touched")
	}
	bad := tcpFrame4(p, false)
	bad[len(bad)-1] ^= 0x40 // corrupt the payload
	if completePartial(bad) || tcpValid(bad) {
		t.Fatal("a corrupt frame was completed")
	}
	// UDP over IPv6, partial.
	u := udpFrame6Partial([]byte("datagram"))
	if !completePartial(u) {
		t.Fatal("partial UDP/IPv6 not completed")
	}
	ip := header.IPv6(u[header.EthernetMinimumSize:])
	pseudo := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), ip.PayloadLength())
	if checksum.Checksum(ip.Payload(), pseudo) != 0xffff {
		t.Fatal("completed UDP checksum wrong")
	}
	// Malformed input is left alone.
	for _, f := range [][]byte{nil, partial[:20], partial[:40], append(append([]byte{}, partial[:14]...), 0x45)} {
		if completePartial(f) {
			t.Fatalf("completed a malformed frame of %d bytes", len(f))
		}
	}
}

func udpFrame6Partial(payload []byte) []byte {
	n := header.EthernetMinimumSize + header.IPv6MinimumSize + header.UDPMinimumSize + len(payload)
	b := make([]byte, n)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
	src := tcpip.AddrFrom16(netip.MustParseAddr("2001:db8::1").As16())
	dst := tcpip.AddrFrom16(netip.MustParseAddr("2001:db8::2").As16())
	l4len := uint16(header.UDPMinimumSize + len(payload))
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{PayloadLength: l4len, TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	u := header.UDP(b[header.EthernetMinimumSize+header.IPv6MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 1, DstPort: 2, Length: l4len})
	copy(u[header.UDPMinimumSize:], payload)
	binary.BigEndian.PutUint16(u[6:], header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, l4len))
	return b
}

// FuzzCompletePartial: any input is safe, and a frame it completes
// verifies afterwards.
func FuzzCompletePartial(f *testing.F) {
	f.Add(tcpFrame4([]byte("x"), true))
	f.Add(udpFrame6Partial([]byte("y")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if completePartial(b) && header.Ethernet(b).Type() == header.IPv4ProtocolNumber {
			ip := header.IPv4(b[header.EthernetMinimumSize:])
			if ip.TransportProtocol() == header.TCPProtocolNumber && !tcpValid(b[:header.EthernetMinimumSize+int(ip.TotalLength())]) {
				t.Fatal("completed checksum does not verify")
			}
		}
	})
}
