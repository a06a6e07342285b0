//go:build linux

package xdp

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

const xdpRedirect = 4

// TestProgramVerdicts runs the loaded program (BPF_PROG_TEST_RUN) on
// crafted frames: the stack's frames are redirected, everything else
// passed.
func TestProgramVerdicts(t *testing.T) {
	e := newVeth(t)
	e.open(t, Config{Attach: AttachGeneric})
	prog := e.link.prog.coll.Programs[progName]
	mac := e.link.LinkAddress()
	s4, h4 := netip.MustParseAddr(stackAddr4), netip.MustParseAddr(hostAddr4)
	s6, h6 := netip.MustParseAddr(stackAddr6), netip.MustParseAddr("2001:db8::9")
	cases := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"IPv4 to the stack", udpFrame(mac, s4, 20), xdpRedirect},
		{"IPv4 to the host", udpFrame(mac, h4, 20), xdpPass},
		{"IPv4 cut short", udpFrame(mac, s4, 20)[:30], xdpPass},
		{"ARP for the stack", arpFrame(s4), xdpRedirect},
		{"ARP for the host", arpFrame(h4), xdpPass},
		{"IPv6 to the stack", ipv6Frame(mac, s6, s6, 0), xdpRedirect},
		{"IPv6 to the host", ipv6Frame(mac, h6, h6, 0), xdpPass},
		{"NS for the stack", ipv6Frame(mac, solicited(s6), s6, 135), xdpRedirect},
		{"NS for the host", ipv6Frame(mac, solicited(h6), h6, 135), xdpPass},
		{"NA to all nodes", ipv6Frame(mac, netip.MustParseAddr("ff02::1"), s6, 136), xdpPass},
		{"LLDP", append(make([]byte, 12), 0x88, 0xcc, 0, 0), xdpPass},
		{"Ethernet header only", append(make([]byte, 12), 0x08, 0x00), xdpPass},
	}
	for _, c := range cases {
		data := c.frame
		if len(data) < 64 && c.name != "IPv4 cut short" && c.name != "Ethernet header only" {
			data = append(data, make([]byte, 64-len(data))...)
		}
		got, err := prog.Run(&ebpf.RunOptions{Data: data})
		if err != nil {
			t.Fatalf("%s: test run: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
	// An address added later is redirected from then on.
	extra := netip.MustParseAddr("192.0.2.3")
	data := append(udpFrame(mac, extra, 20), make([]byte, 16)...)
	if got, err := prog.Run(&ebpf.RunOptions{Data: data}); err != nil || got != xdpPass {
		t.Fatalf("before AllowAddress: verdict %d, %v", got, err)
	}
	if err := e.link.AllowAddress(extra); err != nil {
		t.Fatal(err)
	}
	if got, err := prog.Run(&ebpf.RunOptions{Data: data}); err != nil || got != xdpRedirect {
		t.Fatalf("after AllowAddress: verdict %d, %v", got, err)
	}
	// A second link on the same queue fails, and not as "unsupported"
	// (which tests would skip); the first goes on working.
	err := e.zns.Do(func() error {
		l2, err := Open(Config{Interface: e.zdev, Frames: 64})
		if err == nil {
			l2.Close()
			l2.Wait()
		}
		return err
	})
	if err == nil || errors.Is(err, ErrUnsupported) {
		t.Fatalf("second link on the same queue: %v", err)
	}
	t.Logf("second link: %v", err)
	e.ping(t, stackAddr4)
}

func arpFrame(target netip.Addr) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), peerMAC)
	copy(a.ProtocolAddressSender(), []byte{192, 0, 2, 1})
	t4 := target.As4()
	copy(a.ProtocolAddressTarget(), t4[:])
	return b
}

// ipv6Frame is an IPv6 packet to dst; with icmpType non-zero an ICMPv6
// message of that type about target (a neighbour solicitation's layout).
func ipv6Frame(mac tcpip.LinkAddress, dst, target netip.Addr, icmpType uint8) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+24)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: mac, Type: header.IPv6ProtocolNumber})
	next := header.UDPProtocolNumber
	if icmpType != 0 {
		next = header.ICMPv6ProtocolNumber
	}
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{PayloadLength: 24, TransportProtocol: next, HopLimit: 255,
		SrcAddr: tcpip.AddrFrom16(netip.MustParseAddr("2001:db8::1").As16()), DstAddr: tcpip.AddrFrom16(dst.As16())})
	if icmpType != 0 {
		icmp := b[header.EthernetMinimumSize+header.IPv6MinimumSize:]
		icmp[0] = icmpType
		t16 := target.As16()
		copy(icmp[8:], t16[:])
	}
	return b
}

// solicited is a's solicited-node multicast address (RFC 4291 §2.7.1).
func solicited(a netip.Addr) netip.Addr {
	s := netip.MustParseAddr("ff02::1:ff00:0").As16()
	b := a.As16()
	copy(s[13:], b[13:])
	return netip.AddrFrom16(s)
}
