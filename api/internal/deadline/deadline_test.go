package deadline

import (
	"testing"
	"time"
)

// TestDeadlineStopThenSet races a firing timer against stop and a new
// Deadline in the past, the sequence a Close followed by SetDeadline
// makes: the firing timer and set must never both close one channel (a
// panic), and the new deadline must read as expired.
func TestDeadlineStopThenSet(t *testing.T) {
	for i := 0; i < 2000; i++ {
		d := New()
		d.Set(time.Now().Add(time.Duration(i%50) * time.Microsecond))
		d.Stop()
		d.Set(time.Now().Add(-time.Second))
		if !d.Expired() {
			t.Fatalf("round %d: a deadline in the past has not expired", i)
		}
		d.Set(time.Time{})
		if d.Expired() {
			t.Fatalf("round %d: no deadline, yet expired", i)
		}
		d.Stop()
	}
}

// TestDeadlineStaleFiring: the timer is reused, so a firing from an earlier
// arming can run after set has moved the deadline later; it must not close
// the channel of the later deadline. Moving the deadline earlier on the same
// timer must still fire, on the channel a waiter took before the move.
func TestDeadlineStaleFiring(t *testing.T) {
	for i := 0; i < 2000; i++ {
		d := New()
		d.Set(time.Now().Add(time.Duration(i%20) * time.Microsecond))
		d.Set(time.Now().Add(time.Hour))
		d.fire() // a firing of the first arming, late
		if d.Expired() {
			t.Fatalf("round %d: a stale firing expired a deadline an hour ahead", i)
		}
		d.Stop()
	}
	d := New()
	defer d.Stop()
	d.Set(time.Now().Add(time.Hour))
	ch := d.Done()
	d.Set(time.Now().Add(time.Millisecond))
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("a deadline moved earlier did not close the channel a waiter held")
	}
	if !d.Expired() {
		t.Fatal("closed channel, yet not expired")
	}
	d.Set(time.Time{})
	if d.Expired() || d.Done() == ch {
		t.Fatal("clearing an expired deadline must give a fresh open channel")
	}
}

// TestDeadlineLaterLeavesTimer: moving the deadline later, or clearing it,
// leaves the timer armed for the earlier time instead of moving it; that
// firing (called here by hand, as the timer would) then arms the timer for
// the deadline in force, or for nothing when none is, and closes nothing
// early. A deadline moved earlier moves the timer.
func TestDeadlineLaterLeavesTimer(t *testing.T) {
	d := New()
	defer d.Stop()
	now := time.Now()
	first, later := now.Add(time.Hour), now.Add(2*time.Hour)
	d.Set(first)
	d.Set(later)
	d.mu.Lock()
	armed := d.armed
	d.mu.Unlock()
	if !armed.Equal(first) {
		t.Fatalf("timer armed for %v after moving the deadline later; want it left at %v", armed, first)
	}
	d.fire() // the firing at first, the deadline still ahead
	d.mu.Lock()
	armed = d.armed
	d.mu.Unlock()
	if !armed.Equal(later) || d.Expired() {
		t.Fatalf("after the early firing: armed %v, expired %v; want armed for %v, not expired", armed, d.Expired(), later)
	}
	d.Set(time.Time{})
	d.fire() // the firing at later, no deadline in force
	d.mu.Lock()
	armed = d.armed
	d.mu.Unlock()
	if !armed.IsZero() || d.Expired() {
		t.Fatalf("after a firing with no deadline: armed %v, expired %v; want neither", armed, d.Expired())
	}
	sooner := now.Add(time.Minute)
	d.Set(later)
	d.Set(sooner)
	d.mu.Lock()
	armed = d.armed
	d.mu.Unlock()
	if !armed.Equal(sooner) {
		t.Fatalf("deadline moved earlier to %v, timer armed for %v", sooner, armed)
	}
}
