package hostile

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Net names the two ends of the frames it builds: the sender, whose
// addresses the frames carry as their source (the kernel side of a TAP),
// and the target, whose addresses they carry as their destination (the
// stack).
type Net struct {
	SrcMAC, DstMAC tcpip.LinkAddress
	Src4, Dst4     netip.Addr
	Src6, Dst6     netip.Addr
}

// addr converts a netip address to gVisor's form (the zero Address for an
// invalid one).
func addr(a netip.Addr) tcpip.Address {
	if !a.IsValid() {
		return tcpip.Address{}
	}
	return tcpip.AddrFromSlice(a.Unmap().AsSlice())
}

// TCP is a TCP segment to build (RFC 9293 §3.1).
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            header.TCPFlags
	Window           uint16
	// Options are raw option bytes, padded with zeros (end of option list)
	// to a multiple of 4 and cut at 40, the most the data offset can
	// describe.
	Options []byte
	Payload []byte
}

// Marshal returns the segment, header and payload, with the checksum right
// for a packet from src to dst (both IPv4 or both IPv6).
func (s TCP) Marshal(src, dst netip.Addr) []byte {
	opts := pad4(s.Options, header.TCPHeaderMaximumSize-header.TCPMinimumSize)
	hl := header.TCPMinimumSize + len(opts)
	b := make([]byte, hl+len(s.Payload))
	t := header.TCP(b)
	t.Encode(&header.TCPFields{
		SrcPort: s.SrcPort, DstPort: s.DstPort,
		SeqNum: s.Seq, AckNum: s.Ack,
		DataOffset: uint8(hl), Flags: s.Flags, WindowSize: s.Window,
	})
	copy(b[header.TCPMinimumSize:], opts)
	copy(b[hl:], s.Payload)
	t.SetChecksum(l4Checksum(header.TCPProtocolNumber, src, dst, b))
	return b
}

// UDP is a UDP datagram to build (RFC 768).
type UDP struct {
	SrcPort, DstPort uint16
	Payload          []byte
}

// Marshal returns the datagram with its length and checksum right for a
// packet from src to dst.
func (u UDP) Marshal(src, dst netip.Addr) []byte {
	b := make([]byte, header.UDPMinimumSize+len(u.Payload))
	h := header.UDP(b)
	h.Encode(&header.UDPFields{SrcPort: u.SrcPort, DstPort: u.DstPort, Length: uint16(len(b))})
	copy(b[header.UDPMinimumSize:], u.Payload)
	xsum := l4Checksum(header.UDPProtocolNumber, src, dst, b)
	if xsum == 0 {
		xsum = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	h.SetChecksum(xsum)
	return b
}

// EchoV4 returns an ICMPv4 echo request (RFC 792) with its checksum.
func EchoV4(id, seq uint16, payload []byte) []byte {
	b := make([]byte, header.ICMPv4MinimumSize+len(payload))
	h := header.ICMPv4(b)
	h.SetType(header.ICMPv4Echo)
	h.SetIdent(id)
	h.SetSequence(seq)
	copy(b[header.ICMPv4MinimumSize:], payload)
	h.SetChecksum(^checksum.Checksum(b, 0))
	return b
}

// EchoV6 returns an ICMPv6 echo request (RFC 4443 §4.1) from src to dst
// with its checksum.
func EchoV6(src, dst netip.Addr, id, seq uint16, payload []byte) []byte {
	b := make([]byte, header.ICMPv6EchoMinimumSize+len(payload))
	h := header.ICMPv6(b)
	h.SetType(header.ICMPv6EchoRequest)
	h.SetIdent(id)
	h.SetSequence(seq)
	copy(b[header.ICMPv6EchoMinimumSize:], payload)
	h.SetChecksum(l4Checksum(header.ICMPv6ProtocolNumber, src, dst, b))
	return b
}

// l4Checksum returns the Internet checksum (RFC 1071) of a transport
// packet b, whose checksum field must be zero, with the pseudo-header of
// src, dst and proto.
func l4Checksum(proto tcpip.TransportProtocolNumber, src, dst netip.Addr, b []byte) uint16 {
	xsum := header.PseudoHeaderChecksum(proto, addr(src), addr(dst), uint16(len(b)))
	return ^checksum.Checksum(b, xsum)
}

// pad4 returns b padded with zeros to a multiple of 4 bytes, cut at max.
func pad4(b []byte, max int) []byte {
	if len(b) > max {
		b = b[:max]
	}
	out := make([]byte, (len(b)+3)&^3)
	copy(out, b)
	return out
}

// IPv4 are the IPv4 header fields a frame may set; the zero value is an
// unfragmented packet with TTL 64.
type IPv4 struct {
	ID      uint16
	Flags   uint8  // header.IPv4FlagMoreFragments, header.IPv4FlagDontFragment
	FragOff uint16 // in bytes; a multiple of 8
	TTL     uint8  // 0 means 64
	// Options are raw option bytes, padded to a multiple of 4 and cut at
	// 40 (RFC 791 §3.1).
	Options []byte
}

// ethernet returns a frame buffer of size bytes after the Ethernet header,
// with the header filled in.
func (n Net) ethernet(proto tcpip.NetworkProtocolNumber, size int) []byte {
	b := make([]byte, header.EthernetMinimumSize+size)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: n.SrcMAC, DstAddr: n.DstMAC, Type: proto})
	return b
}

// FrameV4 returns an Ethernet frame carrying an IPv4 packet from Src4 to
// Dst4 with protocol proto and payload l4, its total length and header
// checksum right.
func (n Net) FrameV4(proto tcpip.TransportProtocolNumber, l4 []byte, h IPv4) []byte {
	opts := pad4(h.Options, header.IPv4MaximumHeaderSize-header.IPv4MinimumSize)
	hl := header.IPv4MinimumSize + len(opts)
	b := n.ethernet(header.IPv4ProtocolNumber, hl+len(l4))
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ttl := h.TTL
	if ttl == 0 {
		ttl = 64
	}
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(hl + len(l4)), ID: h.ID,
		Flags: h.Flags, FragmentOffset: h.FragOff,
		TTL: ttl, Protocol: uint8(proto),
		SrcAddr: addr(n.Src4), DstAddr: addr(n.Dst4),
	})
	copy(ip[header.IPv4MinimumSize:], opts)
	ip.SetHeaderLength(uint8(hl))
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(ip[hl:], l4)
	return b
}

// FrameV6 returns an Ethernet frame carrying an IPv6 packet from Src6 to
// Dst6 whose payload is ext (extension headers, the first of which next
// names; may be empty) followed by l4.
func (n Net) FrameV6(next uint8, ext, l4 []byte) []byte {
	plen := len(ext) + len(l4)
	b := n.ethernet(header.IPv6ProtocolNumber, header.IPv6MinimumSize+plen)
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(plen),
		TransportProtocol: tcpip.TransportProtocolNumber(next),
		HopLimit:          64,
		SrcAddr:           addr(n.Src6), DstAddr: addr(n.Dst6),
	})
	copy(ip[header.IPv6MinimumSize:], ext)
	copy(ip[header.IPv6MinimumSize+len(ext):], l4)
	return b
}

// Piece is one fragment of a datagram: Data is carried at byte offset Off
// of the datagram's payload, and More says whether fragments follow
// (RFC 791 §3.2, RFC 8200 §4.5). Off should be a multiple of 8; it is
// written in units of 8 bytes, rounded down.
type Piece struct {
	Off  int
	Data []byte
	More bool
}

// Split cuts payload into fragments of size bytes (rounded down to a
// multiple of 8, at least 8), the usual way.
func Split(payload []byte, size int) []Piece {
	size = max(size&^7, 8)
	var out []Piece
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		out = append(out, Piece{Off: off, Data: payload[off:end], More: end < len(payload)})
	}
	return out
}

// FragmentsV4 returns one IPv4 frame per piece, all with identification id
// and protocol proto.
func (n Net) FragmentsV4(proto tcpip.TransportProtocolNumber, id uint16, pieces []Piece) [][]byte {
	out := make([][]byte, 0, len(pieces))
	for _, p := range pieces {
		h := IPv4{ID: id, FragOff: uint16(p.Off) &^ 7}
		if p.More {
			h.Flags = header.IPv4FlagMoreFragments
		}
		out = append(out, n.FrameV4(proto, p.Data, h))
	}
	return out
}

// FragmentsV6 returns one IPv6 frame per piece, each with a fragment
// header of identification id whose next header is next.
func (n Net) FragmentsV6(next uint8, id uint32, pieces []Piece) [][]byte {
	out := make([][]byte, 0, len(pieces))
	for _, p := range pieces {
		ext := make([]byte, header.IPv6FragmentHeaderSize)
		ext[0] = next
		off := uint16(p.Off/8) << 3 // offset in 8-byte units, in the top 13 bits
		if p.More {
			off |= 1
		}
		binary.BigEndian.PutUint16(ext[2:], off)
		binary.BigEndian.PutUint32(ext[4:], id)
		out = append(out, n.FrameV6(uint8(header.IPv6FragmentExtHdrIdentifier), ext, p.Data))
	}
	return out
}

// RoutingHeader returns an IPv6 routing header (RFC 8200 §4.4) of routing
// type typ whose next header is next, with segsLeft segments left and the
// given addresses as its type-specific data (after 4 reserved bytes, the
// layout of type 0 and of the experimental types 253 and 254, RFC 4727).
// Pass it as FrameV6's ext, with next 43.
func RoutingHeader(next, typ, segsLeft uint8, addrs ...netip.Addr) []byte {
	b := make([]byte, 8+16*len(addrs))
	b[0] = next
	b[1] = uint8(len(b)/8 - 1) // 8-byte units beyond the first 8
	b[2] = typ
	b[3] = segsLeft
	for i, a := range addrs {
		a16 := a.As16()
		copy(b[8+16*i:], a16[:])
	}
	return b
}
