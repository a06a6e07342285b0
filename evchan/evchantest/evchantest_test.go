package evchantest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCollectAndEmpty(t *testing.T) {
	c := New(t, 8)
	for i := range 3 {
		if err := c.TryPost(evchan.Event{Source: evchan.SourceUser, Cookie: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := Next(t, c); ev.Cookie != 0 {
		t.Fatalf("Next = %v", ev)
	}
	evs := Collect(t, c, 2)
	if evs[0].Cookie != 1 || evs[1].Cookie != 2 {
		t.Fatalf("Collect = %v", evs)
	}
	Empty(t, c)
}

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	errors int
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Errorf(string, ...any) { f.errors++ }
func (f *fakeTB) Fatalf(string, ...any) { f.errors++ }

func TestNewReportsLeakedBuffers(t *testing.T) {
	f := &fakeTB{}
	// New's cleanup runs when the sub-test ends and reports to f.
	t.Run("leak", func(t *testing.T) {
		f.TB = t
		c := New(f, 4)
		c.TryPost(evchan.Event{Source: evchan.SourceNetOp, Buffer: new(int)})
		c.TryPost(evchan.Event{Source: evchan.SourceNetOp})
	})
	if f.errors != 1 {
		t.Fatalf("leaked buffers reported %d times, want 1", f.errors)
	}
}

func TestContextEndsWithTheTest(t *testing.T) {
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		ctx = Context(t)
		if d, ok := t.Deadline(); ok {
			cd, cok := ctx.Deadline()
			if !cok || !cd.Before(d) {
				t.Fatalf("context deadline %v, %v; want before the test's %v", cd, cok, d)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("context done while the test runs: %v", ctx.Err())
		}
	})
	if ctx.Err() != context.Canceled {
		t.Fatalf("after the test: %v, want context.Canceled", ctx.Err())
	}
}

func TestEventuallyAndPoll(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	Eventually(t, "three increments", func() bool { return n.Load() == 3 })
	if Poll(5*time.Millisecond, func() bool { return n.Load() == 4 }) {
		t.Fatal("Poll reported a condition that never held")
	}
	f := &fakeTB{}
	t.Run("timeout", func(t *testing.T) {
		f.TB = t
		saved := Timeout
		Timeout = time.Millisecond
		defer func() { Timeout = saved }()
		// fakeTB's Fatalf counts and returns, as a real one would not.
		Eventually(f, "nothing", func() bool { return false })
	})
	if f.errors != 1 {
		t.Fatalf("a timed-out Eventually failed the test %d times, want 1", f.errors)
	}
}
