package evchan

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Timer is a one-shot or periodic timer whose expiries arrive on a channel
// as SourceTimer events (§7: timers in the one inner loop). It runs on the
// Go runtime's timers (time.AfterFunc): no goroutine of its own while it
// waits. Expiries are unsolicited events: while one is queued, further
// expiries merge into it and its Result counts them (timerfd's expiration
// count); expiries that find the channel full are reported by an Overflow
// event.
//
// A periodic timer keeps to its schedule: the n-th expiry is due at
// start + d + (n-1)·period, and expiries that the runtime could not deliver
// on time (a stalled process) are counted, not dropped.
//
// Methods are safe for concurrent use. After Stop returns (or the channel
// closes) the timer posts nothing more; an event it posted before stays
// queued.
type Timer struct {
	ch *Channel
	n  *Notifier

	mu sync.Mutex
	// t is the runtime timer of the current arming; nil when stopped.
	// +checklocks:mu
	t *time.Timer
	// gen numbers armings; a callback of an older arming does nothing.
	// +checklocks:mu
	gen uint64
	// period is 0 for a one-shot timer. +checklocks:mu
	period time.Duration
	// due is when the next expiry is due. +checklocks:mu
	due time.Time

	// expiries counts expiries recorded since NewTimer, delivered or not.
	expiries atomic.Uint64
}

var _ stopper = (*Timer)(nil)

// NewTimer starts a timer on ec that expires after d and then, if period
// is positive, every period; period 0 makes a one-shot timer. Each event
// carries data in Event.Data. It returns ErrInvalid for a negative d or
// period and ErrClosed if ec is closed.
func NewTimer(ec *Channel, d, period time.Duration, data any) (*Timer, error) {
	if d < 0 || period < 0 {
		return nil, fmt.Errorf("evchan: timer delay %v, period %v: %w", d, period, ErrInvalid)
	}
	n, err := ec.NewNotifier(Event{Source: SourceTimer, Data: data})
	if err != nil {
		return nil, err
	}
	t := &Timer{ch: ec, n: n}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.armLocked(d, period); err != nil {
		return nil, err
	}
	return t, nil
}

// armLocked starts a new arming: the next expiry after d, then every
// period. An armed timer is bound to its channel (Close stops it); a
// stopped or expired one is not, so that dropped timers are not kept.
func (t *Timer) armLocked(d, period time.Duration) error {
	if err := t.ch.addSource(t); err != nil {
		return err
	}
	if t.t != nil {
		t.t.Stop()
	}
	t.gen++
	gen := t.gen
	t.period = period
	t.due = time.Now().Add(d)
	t.t = time.AfterFunc(d, func() { t.fire(gen) })
	return nil
}

// fire runs on the runtime's timer goroutine at (or after) t.due.
func (t *Timer) fire(gen uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil || gen != t.gen {
		return // stopped or re-armed since this callback was scheduled
	}
	count := uint64(1)
	if t.period > 0 {
		now := time.Now()
		next := t.due.Add(t.period)
		if !now.Before(next) {
			// Late: the expiries due meanwhile count too.
			missed := uint64(now.Sub(next)/t.period) + 1
			count += missed
			next = next.Add(time.Duration(missed) * t.period)
		}
		t.due = next
		t.t.Reset(next.Sub(now))
	} else {
		t.t = nil
		t.ch.removeSource(t)
	}
	t.expiries.Add(count)
	// Under mu, so that Stop returning means no further event.
	for count > 0 {
		k := uint32(min(count, notifierCountMask))
		t.n.NotifyN(k, 0)
		count -= uint64(k)
	}
}

// Reset re-arms the timer: next expiry after d, then every period (0:
// one-shot). An expiry already queued stays queued. It returns ErrInvalid
// for negative durations and ErrClosed if the channel is closed.
func (t *Timer) Reset(d, period time.Duration) error {
	if d < 0 || period < 0 {
		return fmt.Errorf("evchan: timer delay %v, period %v: %w", d, period, ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.armLocked(d, period)
}

// Stop stops the timer and reports whether it was armed. After Stop
// returns the timer posts no more events; Reset arms it again.
func (t *Timer) Stop() bool {
	t.mu.Lock()
	armed := t.t != nil
	if armed {
		t.t.Stop()
		t.t = nil
		t.gen++
		t.ch.removeSource(t)
	}
	t.mu.Unlock()
	return armed
}

// Expiries returns the number of expiries since NewTimer, delivered,
// merged, or lost.
func (t *Timer) Expiries() uint64 { return t.expiries.Load() }

// stopForClose implements stopper.
func (t *Timer) stopForClose() { t.Stop() }
