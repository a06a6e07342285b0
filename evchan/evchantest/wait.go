package evchantest

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// Context returns a context for the blocking calls of a test. It is
// cancelled when the test ends, and its deadline is the test's own
// (testing.T.Deadline, set by go test -timeout) less a margin, so that a
// call that hangs returns its error and the test fails saying where,
// instead of the test binary panicking at its timeout. A benchmark, or a
// test run with -timeout 0, gets no deadline, as it asked.
func Context(tb testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if t, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := t.Deadline(); ok {
			// The margin leaves the failing test time to report and to
			// run its cleanups.
			margin := min(time.Until(d)/10, 30*time.Second)
			cancel()
			ctx, cancel = context.WithDeadline(context.Background(), d.Add(-margin))
		}
	}
	tb.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it holds, failing the test with what it
// waited for if it does not within Timeout. It is for state another
// goroutine changes with no event to wait on (a counter, a parked
// waiter); it returns as soon as cond holds, so it orders nothing and is
// not a sleep.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	if !Poll(Timeout, cond) {
		tb.Fatalf("evchantest: timed out after %v waiting for %s", Timeout, what)
	}
}

// Poll polls cond until it holds or d has passed, and reports whether it
// held: Eventually for callers that build their own failure message (with
// the counters they watched), or that check that something does not
// happen within d.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	// Yield first, for a goroutine that is about to get there; then back
	// off to sleeps, so that a long wait does not spin a core that the
	// awaited goroutine may need.
	pause := time.Duration(0)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		if pause == 0 {
			runtime.Gosched()
			pause = time.Microsecond
			continue
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Millisecond)
	}
	return true
}
