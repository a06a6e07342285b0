package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/pair"
)

// tcpFrame builds an Ethernet frame holding a TCP header from src:sport to
// dst:dport (no payload, checksums left zero: the lookup reads addresses
// and ports only).
func tcpFrame(src, dst netip.Addr, sport, dport uint16) []byte {
	var b []byte
	if src.Is4() {
		b = make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.TCPMinimumSize)
		header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
		header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
			TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: tcpip.AddrFromSlice(src.AsSlice()), DstAddr: tcpip.AddrFromSlice(dst.AsSlice())})
	} else {
		b = make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+header.TCPMinimumSize)
		header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			PayloadLength: header.TCPMinimumSize, TransportProtocol: header.TCPProtocolNumber, HopLimit: 64,
			SrcAddr: tcpip.AddrFromSlice(src.AsSlice()), DstAddr: tcpip.AddrFromSlice(dst.AsSlice())})
	}
	l4 := b[len(b)-header.TCPMinimumSize:]
	header.TCP(l4).Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn})
	return b
}

// TestConnLookup checks the lookup the stack gives its links: a listening
// socket's port is a listener for any peer, a connected socket's 4-tuple
// is established, anything else (and frames that do not parse) is none.
func TestConnLookup(t *testing.T) {
	st, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, b, err := pair.New(pair.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	nic, err := st.AddNIC(a, NICConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")}})
	if err != nil {
		t.Fatal(err)
	}
	ln4, err := gonet.ListenTCP(st.s, tcpip.FullAddress{NIC: nic, Addr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	ln6, err := gonet.ListenTCP(st.s, tcpip.FullAddress{NIC: nic, Port: 9}, ipv6.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln6.Close()
	lookup := st.connLookup(nic)
	p4, s4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	p6, s6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	for _, c := range []struct {
		name  string
		frame []byte
		want  link.ConnKind
	}{
		{"v4 listener", tcpFrame(p4, s4, 40000, 7), link.ConnListener},
		{"v4 closed port", tcpFrame(p4, s4, 40000, 8), link.ConnNone},
		{"v6 listener", tcpFrame(p6, s6, 40000, 9), link.ConnListener},
		{"v4 to a dual-stack listener", tcpFrame(p4, s4, 40000, 9), link.ConnListener},
		{"v6 closed port", tcpFrame(p6, s6, 40000, 7), link.ConnNone},
		{"truncated", tcpFrame(p4, s4, 40000, 7)[:30], link.ConnNone},
		{"not IP", make([]byte, 60), link.ConnNone},
	} {
		if got := lookup(c.frame); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestListenerFlowKeepsNoStrayPayload checks that a listener's zero-copy
// flow does not shadow payload for a 4-tuple with no connection (the stack
// drops it), and counts it as not kept.
func TestListenerFlowKeepsNoStrayPayload(t *testing.T) {
	st, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, err := st.RegisterFlow(header.TCPProtocolNumber, netip.AddrPortFrom(netip.Addr{}, 7), netip.AddrPort{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := tcpFrame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 40000, 7)
	v := buffer.NewViewWithData(make([]byte, 1000))
	defer v.Release()
	st.zc.hook(hdr, v, 0)
	zs := st.ZeroCopyStats()
	if zs.NotKept != 1 || zs.Shadowed != 0 {
		t.Fatalf("stray payload at a listener: not kept %d, shadowed %d; want 1 and 0", zs.NotKept, zs.Shadowed)
	}
	f.mu.Lock()
	n := len(f.shadows)
	f.mu.Unlock()
	if n != 0 {
		t.Fatalf("listener flow holds %d shadows", n)
	}
}

// TestFlowEvictsAndUnmatched checks the other two zero-copy counters: a
// flow over its bound releases its oldest shadows (Evicted), and a frame
// to a port some flow uses but from an address none matches is counted as
// unmatched.
func TestFlowEvictsAndUnmatched(t *testing.T) {
	st, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	peer, local := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("192.0.2.2:7")
	f, err := st.RegisterFlow(header.UDPProtocolNumber, local, peer, 2500)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := udpHdr(peer, local)
	for range 4 {
		v := buffer.NewViewWithData(make([]byte, 1000))
		st.zc.hook(hdr, v, 0)
		v.Release()
	}
	if zs := st.ZeroCopyStats(); zs.Shadowed != 4 || zs.Evicted != 2 {
		t.Fatalf("4 payloads of 1000 bytes into a flow bounded at 2500: shadowed %d, evicted %d; want 4 and 2", zs.Shadowed, zs.Evicted)
	}
	v := buffer.NewViewWithData(make([]byte, 10))
	defer v.Release()
	st.zc.hook(udpHdr(netip.MustParseAddrPort("192.0.2.9:40000"), local), v, 0)
	if zs := st.ZeroCopyStats(); zs.UnmatchedFrames != 1 || zs.Shadowed != 4 {
		t.Fatalf("a frame from another peer: unmatched %d, shadowed %d; want 1 and 4", zs.UnmatchedFrames, zs.Shadowed)
	}
}

// udpHdr builds the Ethernet, IPv4 and UDP headers of a datagram.
func udpHdr(src, dst netip.AddrPort) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize)
	header.Ethernet(b).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	header.IPv4(b[header.EthernetMinimumSize:]).Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + header.UDPMinimumSize, TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFromSlice(src.Addr().AsSlice()), DstAddr: tcpip.AddrFromSlice(dst.Addr().AsSlice())})
	header.UDP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: header.UDPMinimumSize})
	return b
}
