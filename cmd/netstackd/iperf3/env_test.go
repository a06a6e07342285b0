package iperf3

import (
	"math"
	"net/netip"
	"testing"

	"github.com/zcnet/zcnet/api/zcnet"
	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// testEnv is two zcnet stacks joined by an in-process wire: the client's
// and the server's sockets.
type testEnv struct {
	client, server transport.Transport
	serverAddr     netip.Addr
}

// inprocEnv builds a testEnv and closes it with t.Cleanup.
func inprocEnv(t *testing.T) *testEnv {
	t.Helper()
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []*zcnet.Node{a, b} {
			if err := n.Close(); err != nil {
				t.Errorf("closing a stack: %v", err)
			}
		}
	})
	return &testEnv{client: transport.NewZC(a.API(), a.Stack()), server: transport.NewZC(b.API(), b.Stack()),
		serverAddr: zcnet.PairAddrsB[0].Addr()}
}

// within reports whether a and b differ by at most frac of the larger.
func within(a, b float64, frac float64) bool {
	return math.Abs(a-b) <= frac*math.Max(math.Abs(a), math.Abs(b))
}
