package iperf3

import (
	"testing"
	"time"
)

// TestPacer drives the pacer with a simulated clock: a sender that keeps
// up sends at the rate; one that stalls catches up by at most
// maxPacingBurst's worth at once, then is back on pace.
func TestPacer(t *testing.T) {
	const block = 1250 // bytes: 10 µs at 1 Gbit/s
	start := time.Unix(1000, 0)
	p := newPacer(1e9, start)
	now, sent := start, uint64(0)
	send := func() {
		if d := p.delay(now, sent); d > 0 {
			now = now.Add(d)
		}
		sent += block
	}
	for i := 0; i < 100000; i++ { // one second
		send()
	}
	if rate := float64(sent) * 8 / now.Sub(start).Seconds(); !within(rate, 1e9, 0.001) {
		t.Fatalf("kept pace at %.0f bit/s, want 1e9", rate)
	}
	// Stall for 100 ms: the sender may then send 10 ms worth at once, and
	// not the 100 ms it missed.
	now = now.Add(100 * time.Millisecond)
	burst := 0
	for p.delay(now, sent) <= 0 {
		sent += block
		burst++
	}
	if want := int(maxPacingBurst / (10 * time.Microsecond)); burst < want-1 || burst > want+1 {
		t.Fatalf("after a stall, %d blocks at once; want %d (maxPacingBurst)", burst, want)
	}
	// Then it is paced again: the next block waits, at most one block's
	// time.
	if d := p.delay(now, sent); d <= 0 || d > 10*time.Microsecond {
		t.Fatalf("after the burst, the next block waits %v, want up to 10µs", d)
	}
}
