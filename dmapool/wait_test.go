package dmapool

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

// fillPool reserves every slot and returns the handles.
func fillPool(t *testing.T, p *Pool) []Buf {
	t.Helper()
	var held []Buf
	for {
		b, err := p.Reserve(1)
		if errors.Is(err, ErrExhausted) {
			return held
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
}

// waitForWaiters waits until n goroutines are parked in ReserveContext.
func waitForWaiters(t testing.TB, p *Pool, n int32) {
	t.Helper()
	evchantest.Eventually(t, fmt.Sprintf("%d parked ReserveContext", n), func() bool { return p.waiters.Load() >= n })
}

type result struct {
	b   Buf
	err error
}

func reserveAsync(ctx context.Context, p *Pool, n int) <-chan result {
	ch := make(chan result, 1)
	go func() {
		b, err := p.ReserveContext(ctx, n)
		ch <- result{b, err}
	}()
	return ch
}

func TestReserveContextCancelled(t *testing.T) {
	p := newPool(t, Config{Size: 32 << 10, HugePages: HugeOff})
	held := fillPool(t, p)
	failed := p.Stats().ReservesFailed

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.ReserveContext(ctx, 100)
	if !errors.Is(err, ErrExhausted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("ReserveContext with a cancelled context = %v", err)
	}

	// Cancelled while parked.
	ctx, cancel = context.WithCancel(context.Background())
	ch := reserveAsync(ctx, p, 100)
	waitForWaiters(t, p, 1)
	cancel()
	if r := <-ch; !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, ErrExhausted) {
		t.Fatalf("parked ReserveContext after cancel = %v", r.err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := p.ReserveContext(ctx, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReserveContext past its deadline = %v", err)
	}
	if got := p.Stats().ReservesFailed - failed; got != 3 {
		t.Errorf("ReservesFailed grew by %d, want 3", got)
	}
	if p.waiters.Load() != 0 {
		t.Errorf("%d waiters left behind", p.waiters.Load())
	}
	for _, b := range held {
		mustRelease(t, b)
	}
}

func TestReserveContextWokenByRelease(t *testing.T) {
	p := newPool(t, Config{Size: 32 << 10, HugePages: HugeOff})
	held := fillPool(t, p)
	ch := reserveAsync(context.Background(), p, 2048)
	waitForWaiters(t, p, 1)
	_, want, _ := p.Locate(held[3])
	mustRelease(t, held[3])
	r := <-ch
	if r.err != nil {
		t.Fatalf("woken ReserveContext = %v", r.err)
	}
	if _, off, _ := p.Locate(r.b); off != want {
		t.Errorf("got offset %d, the only free slot is at %d", off, want)
	}
	held[3] = r.b
	for _, b := range held {
		mustRelease(t, b)
	}
}

func TestReserveContextWokenByGrow(t *testing.T) {
	p := newPool(t, Config{Size: 32 << 10, HugePages: HugeOff})
	held := fillPool(t, p)
	ch := reserveAsync(context.Background(), p, 20000)
	waitForWaiters(t, p, 1)
	if err := p.Grow(64 << 10); err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("ReserveContext after Grow = %v", r.err)
	}
	if reg, _, _ := p.Locate(r.b); reg != 1 {
		t.Errorf("reservation in region %d, want the new region 1", reg)
	}
	mustRelease(t, r.b)
	for _, b := range held {
		mustRelease(t, b)
	}
}

func TestReserveContextWokenByClose(t *testing.T) {
	p, err := New(Config{Size: 32 << 10, HugePages: HugeOff})
	if err != nil {
		t.Fatal(err)
	}
	// Larger than the only region: waits for a Grow that never comes.
	ch := reserveAsync(context.Background(), p, 64<<10)
	waitForWaiters(t, p, 1)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("ReserveContext across Close = %v", r.err)
	}
}
