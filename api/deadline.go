package api

import (
	"context"
	"sync"
	"time"
)

// deadline turns a net.Conn deadline into a channel that is closed when it
// passes, so a blocked operation can select on it beside the endpoint's
// readiness. Setting a new deadline re-arms it; a zero time disarms it.
//
// A waiter takes the channel once (done, or ctx) and keeps it: moving the
// deadline while the channel is still open re-arms the timer on the same
// channel, so a blocked call sees the new time, including one in the past
// (the way net/http aborts a background Read with SetReadDeadline).
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
	d.disarmLocked()
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

// expired reports whether the deadline in force now has passed.
func (d *deadline) expired() bool {
	select {
	case <-d.done():
		return true
	default:
		return false
	}
}

// ctx returns the deadline in force now as a context for the Socket calls,
// which wait on contexts. It allocates nothing.
func (d *deadline) ctx() context.Context { return deadlineCtx{d.done()} }

// disarmLocked stops the armed timer, if any. A timer that has fired (or
// is firing: Stop reports false and its func runs in its own goroutine)
// closes, or will close, the channel it was armed on, so the deadline
// moves to a fresh channel: no later close of the old one can meet a close
// of ours. Every path that drops the timer comes through here.
//
// +checklocks:d.mu
func (d *deadline) disarmLocked() {
	if d.timer != nil && !d.timer.Stop() {
		d.ch = make(chan struct{})
	}
	d.timer = nil
}

// stop releases the timer. A later set (SetDeadline after Close, as
// net/http does) still works.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disarmLocked()
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
