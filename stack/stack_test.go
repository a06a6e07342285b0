package stack_test

import (
	"errors"
	"net/netip"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []stack.Options{
		{CongestionControl: "bbr"},
		{TCPSendBuffer: stack.BufferSizes{Min: 1}},
		{TCPReceiveBuffer: stack.BufferSizes{Min: 8 << 10, Default: 4 << 10}},
		{TCPReceiveBuffer: stack.BufferSizes{Default: 8 << 20, Max: 1 << 20}},
	} {
		if st, err := stack.New(o); !errors.Is(err, stack.ErrInvalidOptions) {
			if st != nil {
				st.Close()
			}
			t.Errorf("New(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
}

func TestNICAddressesRoutesAndClose(t *testing.T) {
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b, err := pair.New(pair.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id, err := st.AddNIC(a, stack.NICConfig{Name: "wire0", Addrs: []netip.Prefix{
		netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddRoute(stack.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), NIC: id}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddRoute(stack.Route{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("192.0.2.1"), NIC: id}); err != nil {
		t.Fatal(err)
	}
	// Routes come back longest prefix first, whatever order they went in.
	rs := st.Routes()
	if len(rs) != 4 {
		t.Fatalf("routes: %v", rs)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i-1].Dst.Bits() < rs[i].Dst.Bits() {
			t.Fatalf("routes out of order: %v", rs)
		}
	}
	if got := rs[len(rs)-1]; got.Dst.Bits() != 0 || got.Gateway != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("default route last, got %v", rs)
	}
	for _, bad := range []stack.Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), NIC: 99},
		{Dst: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("192.0.2.1"), NIC: id},
		{NIC: id},
	} {
		if err := st.AddRoute(bad); !errors.Is(err, stack.ErrInvalidOptions) {
			t.Errorf("AddRoute(%v) = %v, want ErrInvalidOptions", bad, err)
		}
	}
	if err := st.AddAddress(id, netip.MustParsePrefix("0.0.0.0/0")); !errors.Is(err, stack.ErrInvalidOptions) {
		t.Errorf("unspecified address accepted: %v", err)
	}
	ns := st.NICStats()
	if len(ns) != 1 || ns[0].Name != "wire0" || len(ns[0].Addrs) != 2 || ns[0].MTU != pair.DefaultMTU {
		t.Fatalf("NICStats = %+v", ns)
	}
	if c := st.Counters(); len(c) < 50 {
		t.Fatalf("only %d counters", len(c))
	} else if _, ok := c["TCP.Retransmits"]; !ok {
		t.Fatal("TCP.Retransmits missing from Counters")
	}
	if err := st.RemoveNIC(id); err != nil {
		t.Fatal(err)
	}
	if err := st.RemoveNIC(id); !errors.Is(err, stack.ErrNoNIC) {
		t.Fatalf("second RemoveNIC: %v", err)
	}
	if len(st.Routes()) != 0 {
		t.Fatalf("routes left after RemoveNIC: %v", st.Routes())
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddNIC(b, stack.NICConfig{}); !errors.Is(err, stack.ErrClosed) {
		t.Fatalf("AddNIC after Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestLossDetectionOption checks that Options.RACK reaches gVisor's TCP:
// off (the default) leaves only the duplicate-ACK threshold, on asks for
// RACK-TLP.
func TestLossDetectionOption(t *testing.T) {
	for _, tc := range []struct {
		rack bool
		want tcpip.TCPRecovery
	}{{false, 0}, {true, tcpip.TCPRACKLossDetection}} {
		st, err := stack.New(stack.Options{RACK: tc.rack})
		if err != nil {
			t.Fatal(err)
		}
		var got tcpip.TCPRecovery
		terr := st.Netstack().TransportProtocolOption(tcp.ProtocolNumber, &got)
		st.Close()
		if terr != nil {
			t.Fatal(terr)
		}
		if got != tc.want {
			t.Errorf("RACK %v: TCP recovery %#x, want %#x", tc.rack, got, tc.want)
		}
	}
}
