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
