package apitest

import (
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// Pair is two stacks joined by an in-process link (a stacktest.Pair), each
// with package api's socket layer over a pool of its own. A and B are the
// socket layers; the stacks are Pair.A and Pair.B.
type Pair struct {
	*stacktest.Pair
	A, B         *api.Stack
	PoolA, PoolB *dmapool.Pool
}

// PairConfig tunes NewPair; the zero value is the defaults.
type PairConfig struct {
	// Stacks builds the stacks and the link between them.
	Stacks stacktest.Config
	// PoolA and PoolB are the sizes of the sides' pools (not pinned); 0
	// is 64 MiB.
	PoolA, PoolB int
	// AssocA and AssocB are the sides' api.Options.DefaultAssoc; 0 is
	// api.DefaultAssoc.
	AssocA, AssocB int
}

// NewPair builds the two stacks (stacktest.NewPair), a pool and an
// api.Stack on each. At tb's cleanup it closes the api.Stacks, then
// closes the pools, reporting one that is not empty (a leaked buffer),
// then the stacks. Tests may close the api.Stacks earlier themselves.
func NewPair(tb testing.TB, cfg PairConfig) *Pair {
	tb.Helper()
	p := &Pair{Pair: stacktest.NewPair(tb, cfg.Stacks)}
	p.PoolA = newPool(tb, cfg.PoolA)
	p.PoolB = newPool(tb, cfg.PoolB)
	p.A = newAPI(tb, p.Pair.A, p.PoolA, cfg.AssocA)
	p.B = newAPI(tb, p.Pair.B, p.PoolB, cfg.AssocB)
	return p
}

func newPool(tb testing.TB, size int) *dmapool.Pool {
	tb.Helper()
	if size == 0 {
		size = 64 << 20
	}
	pool, err := dmapool.New(dmapool.Config{Size: size, Pin: dmapool.PinOff})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := pool.Close(); err != nil {
			tb.Errorf("apitest.NewPair: pool not empty at the end: %v", err)
		}
	})
	return pool
}

func newAPI(tb testing.TB, st *stack.Stack, pool *dmapool.Pool, assoc int) *api.Stack {
	tb.Helper()
	s, err := api.New(st, api.Options{Pool: pool, DefaultAssoc: assoc})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
