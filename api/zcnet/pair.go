package zcnet

import (
	"fmt"
	"net/netip"

	"github.com/zcnet/zcnet/stack/link/pair"
)

// Default addresses of a pair's two nodes (RFC 5737 and RFC 3849
// documentation ranges; the pair never leaves the process).
var (
	PairAddrsA = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")}
	PairAddrsB = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")}
)

// DefaultPairPoolSize is the pool each node of a pair makes when its
// PoolConfig.Size is 0: smaller than DefaultPoolSize, since a pair usually
// serves a test or a demo, often many in one process.
const DefaultPairPoolSize = 16 << 20

// PairConfig configures NewPair. The zero value is usable.
type PairConfig struct {
	// A and B configure the two nodes. Empty Addrs take PairAddrsA and
	// PairAddrsB.
	A, B Config
	// Link configures the in-process wire (MTU, queue length, MACs).
	Link pair.Config
}

// NewPair makes two nodes joined by an in-process wire (pair.New): A at
// 192.0.2.1/24 and 2001:db8::1/64, B at 192.0.2.2/24 and 2001:db8::2/64,
// unless cfg says otherwise. Nothing needs privileges. Close both; closing
// either cuts the wire.
func NewPair(cfg PairConfig) (a, b *Node, err error) {
	la, lb, err := pair.New(cfg.Link)
	if err != nil {
		return nil, nil, err
	}
	side := func(c Config, addrs []netip.Prefix, name string) Config {
		if len(c.Addrs) == 0 {
			c.Addrs = append([]netip.Prefix(nil), addrs...)
		}
		if c.NICName == "" {
			c.NICName = name
		}
		if c.Pool == nil && c.PoolConfig.Size == 0 {
			c.PoolConfig.Size = DefaultPairPoolSize
		}
		return c
	}
	if a, err = New(la, side(cfg.A, PairAddrsA, "pair-a")); err != nil {
		lb.Close() // New closed la, which closes the wire; lb's Close releases its side
		return nil, nil, fmt.Errorf("zcnet: pair node A: %w", err)
	}
	if b, err = New(lb, side(cfg.B, PairAddrsB, "pair-b")); err != nil {
		a.Close()
		return nil, nil, fmt.Errorf("zcnet: pair node B: %w", err)
	}
	return a, b, nil
}
