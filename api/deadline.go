package api

import (
	"sync"
	"time"
)

// deadline turns a net.Conn deadline into a channel that is closed when it
// passes, so a blocked operation can select on it beside the endpoint's
// readiness. Setting a new deadline re-arms it; a zero time disarms it.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer   // +checklocks:mu; nil when no deadline is armed
	ch    chan struct{} // +checklocks:mu; closed once the deadline has passed
}

func newDeadline() *deadline { return &deadline{ch: make(chan struct{})} }

// set arms the deadline for t (zero: none). A time in the past expires it
// immediately, as package net does.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// The timer fired (or is firing): the old channel is, or will be,
		// closed; give waiters for the new deadline a fresh one.
		d.ch = make(chan struct{})
	}
	d.timer = nil
	select {
	case <-d.ch:
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(dur, func() { close(ch) })
}

// done returns the channel for the deadline in force now.
func (d *deadline) done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// stop releases the timer; the deadline is not used again.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
