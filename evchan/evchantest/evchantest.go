// Package evchantest has test helpers for code that posts to or consumes
// from evchan channels: a channel bound to a test's lifetime, bounded waits
// for events that fail the test instead of hanging it, and the two waits
// every layer's tests share, a context bound to the test (Context) and a
// polling wait for a condition with no event behind it (Eventually, Poll).
//
// It owns nothing but these helpers; it is imported only by tests.
package evchantest

import (
	"context"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan"
)

// Timeout bounds every wait of this package but Context. A wait that
// times out fails the test; it never decides a result, so the bound is
// generous: CI machines are loaded, and -race slows everything.
var Timeout = 30 * time.Second

// New returns a channel of the given capacity that is closed when the
// test ends. If events carrying a Buffer are still queued then, the test
// fails: a buffer handed over and never taken is a leak.
func New(tb testing.TB, capacity int) *evchan.Channel {
	tb.Helper()
	c, err := evchan.New(evchan.Config{Capacity: capacity})
	if err != nil {
		tb.Fatalf("evchan.New: %v", err)
	}
	tb.Cleanup(func() {
		var leaked []evchan.Event
		c.CloseFunc(func(ev evchan.Event) {
			if ev.Buffer != nil {
				leaked = append(leaked, ev)
			}
		})
		for _, ev := range leaked {
			tb.Errorf("event with a buffer never taken: %v", ev)
		}
	})
	return c
}

// Next takes one event, failing the test if none arrives within Timeout
// or the channel closes.
func Next(tb testing.TB, c *evchan.Channel) evchan.Event {
	tb.Helper()
	return Collect(tb, c, 1)[0]
}

// Collect takes exactly n events, in order, failing the test if they do
// not all arrive within Timeout.
func Collect(tb testing.TB, c *evchan.Channel, n int) []evchan.Event {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	out := make([]evchan.Event, n)
	for got := 0; got < n; {
		k, err := c.Next(ctx, out[got:])
		if err != nil {
			tb.Fatalf("evchantest: %d of %d events, then %v (got %v)", got, n, err, out[:got])
		}
		got += k
	}
	return out
}

// Empty fails the test if an event is pending (and takes it, to show it).
func Empty(tb testing.TB, c *evchan.Channel) {
	tb.Helper()
	var dst [1]evchan.Event
	if c.TryNext(dst[:]) != 0 {
		tb.Fatalf("evchantest: unexpected event %v", dst[0])
	}
}
