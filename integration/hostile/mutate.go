package hostile

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Mutators break one field of a frame built by Net. Each returns a changed
// copy and leaves its argument alone; a frame too short for the field it
// changes comes back unchanged (a copy), never a panic.

// Offsets within a frame.
const (
	l3Off          = header.EthernetMinimumSize // start of the IP header
	ipv4TotLenOff  = l3Off + 2
	ipv4CsumOff    = l3Off + 10
	ipv6PayLenOff  = l3Off + 4
	ipv6TransStart = l3Off + header.IPv6MinimumSize
)

func clone(f []byte) []byte { return append([]byte(nil), f...) }

// isV4 reports whether f is an Ethernet frame carrying IPv4 with at least a
// minimal header.
func isV4(f []byte) bool {
	return len(f) >= l3Off+header.IPv4MinimumSize && header.Ethernet(f).Type() == header.IPv4ProtocolNumber
}

// isV6 reports whether f is an Ethernet frame carrying IPv6 with a whole
// fixed header.
func isV6(f []byte) bool {
	return len(f) >= ipv6TransStart && header.Ethernet(f).Type() == header.IPv6ProtocolNumber
}

// fixIPv4Checksum recomputes the header checksum of the IPv4 packet in f
// over the header length its IHL field states (at least 20 bytes, at most
// what f holds), so that a test breaks only the field it means to.
func fixIPv4Checksum(f []byte) {
	ip := header.IPv4(f[l3Off:])
	hl := int(ip.HeaderLength())
	hl = min(max(hl, header.IPv4MinimumSize), len(ip))
	ip.SetChecksum(0)
	var sum uint32
	for i := 0; i+1 < hl; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	ip.SetChecksum(^uint16(sum))
}

// BadIPv4Checksum returns f with its IPv4 header checksum wrong.
func BadIPv4Checksum(f []byte) []byte {
	f = clone(f)
	if isV4(f) {
		f[ipv4CsumOff] ^= 0x5a
	}
	return f
}

// transport returns the offset of f's transport header and its protocol
// number: after the IPv4 header its IHL states, or after IPv6's fixed
// header (extension headers are not walked). ok is false when f holds no
// such header.
func transport(f []byte) (off int, proto uint8, ok bool) {
	switch {
	case isV4(f):
		ip := header.IPv4(f[l3Off:])
		return l3Off + int(ip.HeaderLength()), ip.Protocol(), true
	case isV6(f):
		return ipv6TransStart, header.IPv6(f[l3Off:]).NextHeader(), true
	}
	return 0, 0, false
}

// BadL4Checksum returns f with its TCP, UDP or ICMP checksum wrong (and a
// non-zero UDP checksum, which IPv4 would take for "none").
func BadL4Checksum(f []byte) []byte {
	f = clone(f)
	off, proto, ok := transport(f)
	if !ok {
		return f
	}
	var at int
	switch proto {
	case uint8(header.TCPProtocolNumber):
		at = off + 16
	case uint8(header.UDPProtocolNumber):
		at = off + 6
	case uint8(header.ICMPv4ProtocolNumber), uint8(header.ICMPv6ProtocolNumber):
		at = off + 2
	default:
		return f
	}
	if at+2 > len(f) {
		return f
	}
	f[at] ^= 0x5a
	if f[at] == 0 && f[at+1] == 0 {
		f[at+1] = 1
	}
	return f
}

// SetIPv4TotalLength returns f with its IPv4 total length set to n and the
// header checksum fixed to match, so only the length is wrong.
func SetIPv4TotalLength(f []byte, n uint16) []byte {
	f = clone(f)
	if isV4(f) {
		binary.BigEndian.PutUint16(f[ipv4TotLenOff:], n)
		fixIPv4Checksum(f)
	}
	return f
}

// SetIPv4HeaderLength returns f with its IPv4 IHL field set to words
// 32-bit words (0 to 15) and the header checksum fixed to match.
func SetIPv4HeaderLength(f []byte, words uint8) []byte {
	f = clone(f)
	if isV4(f) {
		f[l3Off] = f[l3Off]&0xf0 | words&0x0f
		fixIPv4Checksum(f)
	}
	return f
}

// SetIPv6PayloadLength returns f with its IPv6 payload length set to n.
func SetIPv6PayloadLength(f []byte, n uint16) []byte {
	f = clone(f)
	if isV6(f) {
		binary.BigEndian.PutUint16(f[ipv6PayLenOff:], n)
	}
	return f
}

// Truncate returns the first n bytes of f (all of f if it is shorter).
func Truncate(f []byte, n int) []byte {
	return clone(f[:min(n, len(f))])
}

// l4Span returns where f's transport packet starts and ends, as its IP
// header says (cut at the end of f), with the addresses and protocol for
// the pseudo-header. ok is false for a frame without an IP header.
func l4Span(f []byte) (start, end int, src, dst netip.Addr, proto uint8, ok bool) {
	start, proto, ok = transport(f)
	if !ok {
		return 0, 0, netip.Addr{}, netip.Addr{}, 0, false
	}
	if isV4(f) {
		ip := header.IPv4(f[l3Off:])
		end = l3Off + int(ip.TotalLength())
		src, dst = netip.AddrFrom4(ip.SourceAddress().As4()), netip.AddrFrom4(ip.DestinationAddress().As4())
	} else {
		ip := header.IPv6(f[l3Off:])
		end = ipv6TransStart + int(ip.PayloadLength())
		src, dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
	}
	end = min(end, len(f))
	return start, end, src, dst, proto, start <= end
}

// FixL4Checksum returns f with its TCP, UDP or ICMP checksum recomputed
// over the transport bytes its IP header delimits, so that a mutation of a
// transport header field is not caught by the checksum first.
func FixL4Checksum(f []byte) []byte {
	f = clone(f)
	start, end, src, dst, proto, ok := l4Span(f)
	if !ok {
		return f
	}
	l4 := f[start:end]
	switch proto {
	case uint8(header.TCPProtocolNumber):
		if len(l4) >= header.TCPMinimumSize {
			header.TCP(l4).SetChecksum(0)
			header.TCP(l4).SetChecksum(l4Checksum(header.TCPProtocolNumber, src, dst, l4))
		}
	case uint8(header.UDPProtocolNumber):
		if len(l4) >= header.UDPMinimumSize {
			header.UDP(l4).SetChecksum(0)
			xsum := l4Checksum(header.UDPProtocolNumber, src, dst, l4)
			if xsum == 0 {
				xsum = 0xffff
			}
			header.UDP(l4).SetChecksum(xsum)
		}
	case uint8(header.ICMPv4ProtocolNumber):
		if len(l4) >= header.ICMPv4MinimumSize {
			header.ICMPv4(l4).SetChecksum(0)
			header.ICMPv4(l4).SetChecksum(^checksum.Checksum(l4, 0))
		}
	case uint8(header.ICMPv6ProtocolNumber):
		if len(l4) >= header.ICMPv6MinimumSize {
			header.ICMPv6(l4).SetChecksum(0)
			header.ICMPv6(l4).SetChecksum(l4Checksum(header.ICMPv6ProtocolNumber, src, dst, l4))
		}
	}
	return f
}

// SetUDPLength returns f with its UDP length field set to n and the UDP
// checksum fixed to match, so only the length is wrong.
func SetUDPLength(f []byte, n uint16) []byte {
	off, proto, ok := transport(f)
	if !ok || proto != uint8(header.UDPProtocolNumber) || off+header.UDPMinimumSize > len(f) {
		return clone(f)
	}
	f = clone(f)
	binary.BigEndian.PutUint16(f[off+4:], n)
	return FixL4Checksum(f)
}

// SetTCPDataOffset returns f with its TCP data offset set to words 32-bit
// words (0 to 15) and the TCP checksum fixed to match.
func SetTCPDataOffset(f []byte, words uint8) []byte {
	off, proto, ok := transport(f)
	if !ok || proto != uint8(header.TCPProtocolNumber) || off+header.TCPMinimumSize > len(f) {
		return clone(f)
	}
	f = clone(f)
	f[off+12] = f[off+12]&0x0f | words<<4
	return FixL4Checksum(f)
}
