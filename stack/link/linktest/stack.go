package linktest

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// NewStack builds a bare gVisor stack (IPv4, IPv6, ARP, TCP, UDP, ICMP)
// with link as NIC nic, the given addresses (prefix form, e.g.
// "192.0.2.2/24") and an on-link route for each. Cleanup closes the link
// first (which removes the NIC), then the stack, and waits for it.
func NewStack(tb testing.TB, nic tcpip.NICID, link stack.LinkEndpoint, addrs ...string) *stack.Stack {
	tb.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	tb.Cleanup(func() {
		link.Close()
		s.Close()
		s.Wait()
	})
	if err := s.CreateNIC(nic, link); err != nil {
		tb.Fatalf("CreateNIC: %v", err)
	}
	for _, a := range addrs {
		p := netip.MustParsePrefix(a)
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}}
		if err := s.AddProtocolAddress(nic, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("AddProtocolAddress %s: %v", a, err)
		}
		s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nic})
	}
	return s
}
