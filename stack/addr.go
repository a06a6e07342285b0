package stack

import (
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
)

// Address conversions between net/netip, which zcnet's API uses, and gVisor's
// tcpip types. An IPv4-mapped IPv6 address is unmapped, as the stack wants
// IPv4 traffic addressed with 4-byte addresses.

// TCPIPAddr converts a to gVisor's address type. The zero netip.Addr becomes
// the zero (unspecified) tcpip.Address.
func TCPIPAddr(a netip.Addr) tcpip.Address {
	if !a.IsValid() {
		return tcpip.Address{}
	}
	a = a.Unmap()
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// NetipAddr converts a gVisor address to netip. The zero tcpip.Address gives
// the zero netip.Addr.
func NetipAddr(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16())
	}
	return netip.Addr{}
}

// FullAddress converts an address and port to gVisor's endpoint address.
// The unspecified addresses (0.0.0.0, ::) become gVisor's zero address,
// which binds to every address, as they do in package net.
func FullAddress(ap netip.AddrPort, nic tcpip.NICID) tcpip.FullAddress {
	a := ap.Addr()
	if a.IsValid() && a.Unmap().IsUnspecified() {
		a = netip.Addr{}
	}
	return tcpip.FullAddress{NIC: nic, Addr: TCPIPAddr(a), Port: ap.Port()}
}

// AddrPort converts gVisor's endpoint address to netip.
func AddrPort(fa tcpip.FullAddress) netip.AddrPort {
	return netip.AddrPortFrom(NetipAddr(fa.Addr), fa.Port)
}

// NetworkProtocol returns the network protocol number of a: IPv4 for IPv4
// and IPv4-mapped addresses, IPv6 otherwise.
func NetworkProtocol(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Unmap().Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// subnet converts a prefix to a gVisor subnet, masking off host bits.
func subnet(p netip.Prefix) (tcpip.Subnet, error) {
	if !p.IsValid() {
		return tcpip.Subnet{}, fmt.Errorf("%w: invalid prefix %v", ErrInvalidOptions, p)
	}
	p = p.Masked()
	bits := p.Addr().BitLen()
	mask := make([]byte, bits/8)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	sn, err := tcpip.NewSubnet(TCPIPAddr(p.Addr()), tcpip.MaskFromBytes(mask))
	if err != nil {
		return tcpip.Subnet{}, fmt.Errorf("%w: prefix %v: %v", ErrInvalidOptions, p, err)
	}
	return sn, nil
}

// isV4 reports whether the prefix is an IPv4 one (mapped ones included).
func isV4(p netip.Prefix) bool { return p.Addr().Unmap().Is4() }
