package api

import (
	"testing"
	"time"
)

// TestDeadlineStopThenSet races a firing timer against stop and a new
// deadline in the past, the sequence a Close followed by SetDeadline
// makes: the firing timer and set must never both close one channel (a
// panic), and the new deadline must read as expired.
func TestDeadlineStopThenSet(t *testing.T) {
	for i := 0; i < 2000; i++ {
		d := newDeadline()
		d.set(time.Now().Add(time.Duration(i%50) * time.Microsecond))
		d.stop()
		d.set(time.Now().Add(-time.Second))
		if !d.expired() {
			t.Fatalf("round %d: a deadline in the past has not expired", i)
		}
		d.set(time.Time{})
		if d.expired() {
			t.Fatalf("round %d: no deadline, yet expired", i)
		}
		d.stop()
	}
}
