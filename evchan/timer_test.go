package evchan

import (
	"context"
	"errors"
	"testing"
	"time"
)

// next takes exactly one event, failing the test on error or after a
// generous bound.
func next(t testing.TB, c *Channel) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var dst [1]Event
	if _, err := c.Next(ctx, dst[:]); err != nil {
		t.Fatalf("Next: %v", err)
	}
	return dst[0]
}

func sourceCount(c *Channel) int {
	c.srcMu.Lock()
	defer c.srcMu.Unlock()
	return len(c.sources)
}

func TestTimerOneShot(t *testing.T) {
	c := mustNew(t, 8)
	tm, err := NewTimer(c, time.Millisecond, 0, "once")
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, c)
	if ev.Source != SourceTimer || ev.Result != 1 || ev.Data != "once" {
		t.Fatalf("timer event %v", ev)
	}
	if tm.Stop() {
		t.Fatal("Stop of an expired one-shot timer reported it armed")
	}
	if sourceCount(c) != 0 {
		t.Fatal("expired timer still bound to the channel")
	}
	// Reset re-arms it.
	if err := tm.Reset(0, 0); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, c); ev.Source != SourceTimer || ev.Result != 1 {
		t.Fatalf("after Reset: %v", ev)
	}
	if tm.Expiries() != 2 {
		t.Fatalf("expiries %d", tm.Expiries())
	}
}

// TestTimerPeriodicCoalesces: a periodic timer whose events are not taken
// keeps one event queued whose Result counts every expiry.
func TestTimerPeriodicCoalesces(t *testing.T) {
	c := mustNew(t, 8)
	tm, err := NewTimer(c, 0, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "five expiries", func() bool { return tm.Expiries() >= 5 })
	if !tm.Stop() {
		t.Fatal("Stop of a periodic timer reported it unarmed")
	}
	total := int64(tm.Expiries())
	if c.Len() != 1 {
		t.Fatalf("%d events queued for one timer", c.Len())
	}
	dst := make([]Event, 8)
	if n := c.TryNext(dst); n != 1 || dst[0].Result != total {
		t.Fatalf("got %v, want one event counting %d expiries", dst[:n], total)
	}
	if st := c.Stats(); st.Coalesced != uint64(total-1) {
		t.Fatalf("coalesced %d, want %d", st.Coalesced, total-1)
	}
}

// TestTimerStopMeansNoMoreEvents uses a second timer as the clock: by the
// time it expires, a stopped fast periodic timer would have fired many
// times.
func TestTimerStopMeansNoMoreEvents(t *testing.T) {
	c := mustNew(t, 8)
	fast, _ := NewTimer(c, 0, 100*time.Microsecond, "fast")
	waitFor(t, "fast timer running", func() bool { return fast.Expiries() > 0 })
	fast.Stop()
	c.TryNext(make([]Event, 8)) // drop what it posted before Stop
	before := fast.Expiries()
	if _, err := NewTimer(c, 20*time.Millisecond, 0, "clock"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, c); ev.Data != "clock" {
		t.Fatalf("stopped timer posted %v", ev)
	}
	if fast.Expiries() != before {
		t.Fatal("stopped timer kept expiring")
	}
}

func TestTimerCountsLateExpiries(t *testing.T) {
	c := mustNew(t, 8)
	tm, _ := NewTimer(c, time.Hour, time.Second, nil)
	defer tm.Stop()
	// Pretend the runtime ran the callback 10.5 periods late.
	tm.mu.Lock()
	gen := tm.gen
	tm.due = time.Now().Add(-10*time.Second - 500*time.Millisecond)
	tm.mu.Unlock()
	tm.fire(gen)
	tm.Stop()
	var dst [1]Event
	if c.TryNext(dst[:]) != 1 || dst[0].Result != 11 {
		t.Fatalf("late callback: %v, want Result 11 (the due expiry and 10 missed)", dst[0])
	}
}

func TestTimerArgsAndClose(t *testing.T) {
	c := mustNew(t, 8)
	if _, err := NewTimer(c, -1, 0, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative delay: %v", err)
	}
	if _, err := NewTimer(c, 0, -1, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative period: %v", err)
	}
	tm, _ := NewTimer(c, time.Hour, time.Hour, nil)
	if err := tm.Reset(-1, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Reset(-1): %v", err)
	}
	c.Close()
	if tm.Stop() {
		t.Fatal("Close did not stop the timer")
	}
	if err := tm.Reset(time.Millisecond, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reset after Close: %v", err)
	}
	if _, err := NewTimer(c, 0, 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewTimer on a closed channel: %v", err)
	}
}
