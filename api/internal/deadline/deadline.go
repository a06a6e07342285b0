// Package deadline gives api's net.Conn adapters their deadlines: a
// channel closed when the deadline passes, re-armed cheaply as net/http
// moves it. It owns the timer and the channel; the adapters own what a
// passed deadline means (os.ErrDeadlineExceeded).
package deadline

import (
	"context"
	"sync"
	"time"
)

// Deadline turns a net.Conn deadline into a channel that is closed when it
// passes, so a blocked operation can select on it beside the endpoint's
// readiness. Setting a new deadline re-arms it; a zero time disarms it.
//
// A waiter takes the channel once (done, or ctx) and keeps it: moving the
// deadline while the channel is still open re-arms the timer on the same
// channel, so a blocked call sees the new time, including one in the past
// (the way net/http aborts a background Read with SetReadDeadline).
//
// net/http moves a connection's read deadline several times per request,
// so a set costs no allocation while the channel is open: the deadline
// keeps one timer for its life, whose function closes the channel only if
// the deadline in force (when) has passed. A firing left over from an
// earlier arming finds a later or no deadline and does nothing, or arms
// the timer again for the deadline now in force. A new channel is made
// only after the old one was closed.
//
// So the timer is moved only when it must fire sooner: a set that moves
// the deadline later, or clears it, leaves the timer armed for the earlier
// time (armed), and that firing re-arms it for what is then in force.
// net/http's sets per request (a header deadline ahead, none, one in the
// past to abort a background read, none) then cost no timer operation
// while one is armed, only a firing now and then.
type Deadline struct {
	mu     sync.Mutex
	timer  *time.Timer   // +checklocks:mu; made at the first deadline, then reused
	armed  time.Time     // +checklocks:mu; when timer fires; zero: not armed
	when   time.Time     // +checklocks:mu; the deadline in force; zero: none
	ch     chan struct{} // +checklocks:mu; closed once when has passed
	closed bool          // +checklocks:mu; ch is closed
}

// New returns a Deadline with none in force.
func New() *Deadline { return &Deadline{ch: make(chan struct{})} }

// Set arms the deadline for t (zero: none). A time in the past expires it
// immediately, as package net does.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.ch, d.closed = make(chan struct{}), false
	}
	d.when = t
	if t.IsZero() {
		return // an armed timer's firing finds no deadline
	}
	dur := time.Until(t)
	if dur <= 0 {
		d.closeLocked()
		return
	}
	if !d.armed.IsZero() && !t.Before(d.armed) {
		return // the armed firing comes first and re-arms for t
	}
	d.armLocked(t, dur)
}

// armLocked makes the timer fire at t, dur from now.
//
// +checklocks:d.mu
func (d *Deadline) armLocked(t time.Time, dur time.Duration) {
	d.armed = t
	if d.timer == nil {
		d.timer = time.AfterFunc(dur, d.fire)
		return
	}
	d.timer.Reset(dur)
}

// fire is the timer's function: it closes the channel if the deadline in
// force has passed, and arms the timer again for one still ahead (a set
// moved it later, or a firing raced with a set that moved it earlier).
func (d *Deadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.armed = time.Time{}
	if d.when.IsZero() {
		return
	}
	if dur := time.Until(d.when); dur > 0 {
		d.armLocked(d.when, dur)
		return
	}
	d.closeLocked()
}

// +checklocks:d.mu
func (d *Deadline) closeLocked() {
	if !d.closed {
		close(d.ch)
		d.closed = true
	}
}

// Done returns the channel for the deadline in force now.
func (d *Deadline) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// Expired reports whether the deadline in force now has passed.
func (d *Deadline) Expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Ctx returns the deadline in force now as a context for the Socket calls,
// which wait on contexts. It allocates nothing.
func (d *Deadline) Ctx() context.Context { return deadlineCtx{d.Done()} }

// Stop disarms the timer. A later set (SetDeadline after Close, as
// net/http does) still works.
func (d *Deadline) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.when = time.Time{}
	d.armed = time.Time{}
	if d.timer != nil {
		d.timer.Stop()
	}
}

// deadlineCtx is a context whose Done is a deadline's channel. Its Err is
// context.DeadlineExceeded once the channel is closed, which ctxErr turns
// into os.ErrDeadlineExceeded, the error package net gives. A struct of one
// channel fits in an interface without an allocation, so a net.Conn call
// costs no context per call.
type deadlineCtx struct{ ch <-chan struct{} }

// Deadline implements context.Context.Deadline: the time is the deadline
// type's business; callers only wait on Done.
func (deadlineCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done implements context.Context.Done.
func (c deadlineCtx) Done() <-chan struct{} { return c.ch }

// Err implements context.Context.Err.
func (c deadlineCtx) Err() error {
	select {
	case <-c.ch:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// Value implements context.Context.Value; it carries none.
func (deadlineCtx) Value(any) any { return nil }
