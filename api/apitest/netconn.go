package apitest

import (
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
)

// Net returns package api's net adapters over st for a test that has only
// a stack: it builds an api.Stack with a pool of its own (64 MiB, not
// pinned; the adapters' sockets are associated with api.DefaultAssoc of
// it), and at tb's cleanup closes both and reports a pool that is not
// empty, which would mean a leaked buffer. Register it after the stack, so
// that it is cleaned up before the stack closes.
func Net(tb testing.TB, st *stack.Stack) *api.Net {
	tb.Helper()
	pool, err := dmapool.New(dmapool.Config{Size: 64 << 20, Pin: dmapool.PinOff})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := api.New(st, api.Options{Pool: pool})
	if err != nil {
		pool.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		if err := pool.Close(); err != nil {
			tb.Errorf("apitest.Net: pool not empty at the end: %v", err)
		}
	})
	return s.Net()
}
