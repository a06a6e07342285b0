// Package stacktest builds zcnet stacks for tests and benchmarks: two stacks
// joined by an in-process link, addressed and ready to talk. It owns nothing
// a program needs at run time: a program that wants the in-process pair
// uses zcnet.NewPair (package github.com/zcnet/zcnet/api/zcnet), which also builds
// the pools and socket APIs and closes them in order.
package stacktest

import (
	"net/netip"
	"testing"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
)

// Addresses of the two sides of a Pair (RFC 5737 and RFC 3849 documentation
// ranges, which never leave the process).
var (
	AddrA  = netip.MustParseAddr("192.0.2.1")
	AddrB  = netip.MustParseAddr("192.0.2.2")
	Addr6A = netip.MustParseAddr("2001:db8::1")
	Addr6B = netip.MustParseAddr("2001:db8::2")
)

// Pair is two stacks joined by a pair.New link.
type Pair struct {
	A, B         *stack.Stack
	LinkA, LinkB *pair.Endpoint
}

// Config tunes NewPair; the zero value is the defaults.
type Config struct {
	Link  pair.Config
	Stack stack.Options
	// WrapA and WrapB, if set, put a link of the test's (a gate, an
	// impairment, a recorder) between a side's end of the pair and its
	// stack: the stack gets the link they return. Pair.LinkA and LinkB
	// stay the pair's own ends.
	WrapA, WrapB func(*pair.Endpoint) gstack.LinkEndpoint
}

// NewPair builds two stacks, A (192.0.2.1/24, 2001:db8::1/64) and B
// (192.0.2.2/24, 2001:db8::2/64), on an in-process link, and closes both with
// tb.Cleanup.
func NewPair(tb testing.TB, cfg Config) *Pair {
	tb.Helper()
	la, lb, err := pair.New(cfg.Link)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Pair{LinkA: la, LinkB: lb}
	p.A = build(tb, cfg.Stack, la, cfg.WrapA, AddrA, Addr6A)
	p.B = build(tb, cfg.Stack, lb, cfg.WrapB, AddrB, Addr6B)
	return p
}

func build(tb testing.TB, opts stack.Options, end *pair.Endpoint, wrap func(*pair.Endpoint) gstack.LinkEndpoint, a4, a6 netip.Addr) *stack.Stack {
	tb.Helper()
	var link gstack.LinkEndpoint = end
	if wrap != nil {
		link = wrap(end)
	}
	st, err := stack.New(opts)
	if err != nil {
		link.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if _, err := st.AddNIC(link, stack.NICConfig{Addrs: []netip.Prefix{netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64)}}); err != nil {
		tb.Fatal(err)
	}
	return st
}
