package evchan

import (
	"context"
	"fmt"
	"sync"
)

// Asynchronous locks (§7: sem_await, pthread_mutex_alock). A program that
// waits for everything on one event channel must not block a thread on a
// lock; instead it asks for the lock and gets an event when it holds it.
// Sem, Mutex and RWMutex here can be acquired both ways: blocking (Lock,
// Acquire) and asynchronously (ALock, Await), with one FIFO queue of
// waiters of both kinds, so neither kind starves the other.
//
// An asynchronous acquisition is a submitted operation: it reserves its
// completion slot on the channel when it is requested (so it fails at once
// with ErrFull when the channel has no room, and its event is never lost),
// and the event, once posted, carries the hold: whoever takes it owns the
// lock and must release it. If the channel is closed before the lock is
// granted, the request is dropped when its turn comes; if the channel is
// closed with the event still queued, Close releases the hold.
//
// Bad calls (Unlock of an unlocked Mutex, RUnlock without a reader hold,
// Release of a non-positive count) return ErrNotLocked or ErrInvalid
// instead of panicking as sync does.

// lockKind is what a waiter asks for.
type lockKind uint8

const (
	kindUnit      lockKind = iota // one unit of a Sem
	kindShared                    // a reader hold of an RWMutex
	kindExclusive                 // the writer hold of an RWMutex, or a Mutex
)

// lockWaiter is a queued acquisition.
type lockWaiter struct {
	kind lockKind
	// link is w's place in lockCore.waiters, guarded by lockCore.mu.
	link waitLink[lockWaiter]
	// Blocking waiter: ready is closed once the hold is granted, and
	// granted is set under mu before that.
	ready   chan struct{}
	granted bool
	// Asynchronous waiter (ready == nil): the credit and the event to
	// post when the hold is granted.
	res Reservation
	ev  Event
}

// lockCore is the state and the waiter queue shared by Sem, Mutex and
// RWMutex. The zero value is an unlocked lock, or a semaphore of 0 units.
type lockCore struct {
	mu sync.Mutex
	// units is a Sem's count of available units.
	// +checklocks:mu
	units int64
	// readers is the number of shared holds.
	// +checklocks:mu
	readers int64
	// writer is true while the exclusive hold is held.
	// +checklocks:mu
	writer bool
	// waiters holds the queued acquisitions, first come first.
	// +checklocks:mu
	waiters waitList[lockWaiter]
}

var _ eventHook = (*lockCore)(nil)

// canLocked reports whether a hold of kind is available now.
//
// +checklocks:l.mu
func (l *lockCore) canLocked(k lockKind) bool {
	switch k {
	case kindUnit:
		return l.units > 0
	case kindShared:
		return !l.writer
	default:
		return !l.writer && l.readers == 0
	}
}

// +checklocks:l.mu
func (l *lockCore) takeLocked(k lockKind) {
	switch k {
	case kindUnit:
		l.units--
	case kindShared:
		l.readers++
	default:
		l.writer = true
	}
}

// giveLocked gives back a hold of kind, or returns ErrNotLocked if none is
// held.
//
// +checklocks:l.mu
func (l *lockCore) giveLocked(k lockKind) error {
	switch k {
	case kindUnit:
		l.units++
	case kindShared:
		if l.readers == 0 {
			return ErrNotLocked
		}
		l.readers--
	default:
		if !l.writer {
			return ErrNotLocked
		}
		l.writer = false
	}
	return nil
}

// tryLocked takes a hold if it is free and nobody is queued (FIFO: a new
// request does not pass waiting ones).
//
// +checklocks:l.mu
func (l *lockCore) tryLocked(k lockKind) bool {
	if l.waiters.empty() && l.canLocked(k) {
		l.takeLocked(k)
		return true
	}
	return false
}

// pushLocked queues w behind the waiters already there.
//
// +checklocks:l.mu
func (l *lockCore) pushLocked(w *lockWaiter) { l.waiters.pushBack(w, &w.link) }

// removeLocked unlinks w, which is queued.
//
// +checklocks:l.mu
func (l *lockCore) removeLocked(w *lockWaiter) { l.waiters.remove(&w.link) }

// grantLocked grants holds to waiters in order while the head's kind is
// available. An asynchronous waiter whose channel was closed is dropped and
// its hold given back.
//
// +checklocks:l.mu
func (l *lockCore) grantLocked() {
	for w := l.waiters.front(); w != nil && l.canLocked(w.kind); w = l.waiters.front() {
		l.removeLocked(w)
		l.takeLocked(w.kind)
		if w.ready != nil {
			w.granted = true
			close(w.ready)
			continue
		}
		if err := w.res.postHook(&w.ev, l); err != nil {
			l.giveLocked(w.kind) // the channel is closed: nobody to hold it
		}
	}
}

// acquire blocks until a hold of kind is granted or ctx ends.
func (l *lockCore) acquire(ctx context.Context, k lockKind) error {
	l.mu.Lock()
	if l.tryLocked(k) {
		l.mu.Unlock()
		return nil
	}
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			l.mu.Unlock()
			return err
		}
	}
	w := &lockWaiter{kind: k, ready: make(chan struct{})}
	l.pushLocked(w)
	l.mu.Unlock()

	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case <-w.ready:
		return nil
	case <-done:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted {
		return nil // granted as ctx ended: the hold is ours
	}
	l.removeLocked(w)
	l.grantLocked() // we may have been holding back those behind us
	return ctx.Err()
}

// try takes a hold of kind if available without waiting.
func (l *lockCore) try(k lockKind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tryLocked(k)
}

// await requests a hold of kind, to be announced on ec by ev (with data).
func (l *lockCore) await(ec *Channel, k lockKind, ev Event) error {
	if ec == nil {
		return fmt.Errorf("evchan: asynchronous acquisition without a channel: %w", ErrInvalid)
	}
	w := &lockWaiter{kind: k, ev: ev}
	var err error
	if w.res, err = ec.Reserve(1); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tryLocked(k) {
		w.ev.Flags |= FlagInline
		if err := w.res.postHook(&w.ev, l); err != nil {
			l.giveLocked(k)
			return err
		}
		return nil
	}
	l.pushLocked(w)
	return nil
}

// release gives back a hold of kind and grants waiters.
func (l *lockCore) release(k lockKind) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.giveLocked(k); err != nil {
		return err
	}
	l.grantLocked()
	return nil
}

// taken implements eventHook: the hold passes to the consumer as is.
func (l *lockCore) taken(*Event) {}

// discarded implements eventHook: Close discarded an event that carried a
// hold, so nobody will release it; release it here.
func (l *lockCore) discarded(ev *Event) {
	k := kindExclusive
	switch {
	case ev.Source == SourceSem:
		k = kindUnit
	case ev.Op == OpRLock:
		k = kindShared
	}
	l.release(k)
}

// Sem is a counting semaphore whose units can be awaited on an event
// channel (the paper's sem_await). The zero value has no units; NewSem
// makes one with some. Methods are safe for concurrent use.
type Sem struct{ l lockCore }

// NewSem returns a semaphore with n units; ErrInvalid if n is negative.
func NewSem(n int64) (*Sem, error) {
	if n < 0 {
		return nil, fmt.Errorf("evchan: semaphore of %d units: %w", n, ErrInvalid)
	}
	s := &Sem{}
	s.l.units = n
	return s, nil
}

// Acquire takes one unit, blocking until one is available or ctx ends.
func (s *Sem) Acquire(ctx context.Context) error { return s.l.acquire(ctx, kindUnit) }

// TryAcquire takes one unit if one is available and nobody is waiting.
func (s *Sem) TryAcquire() bool { return s.l.try(kindUnit) }

// Await requests one unit, announced on ec by a SourceSem event with Op
// OpAcquire, Result 1 and data in Event.Data; FlagInline is set if the unit
// was available at once. The consumer of the event owns the unit and gives
// it back with Release. Await returns ErrFull (ec has no room for the
// completion) or ErrClosed without queueing anything.
func (s *Sem) Await(ec *Channel, data any) error {
	return s.l.await(ec, kindUnit, Event{Source: SourceSem, Op: OpAcquire, Result: 1, Data: data})
}

// Release adds n units (n ≥ 1), granting them to waiters in order.
func (s *Sem) Release(n int64) error {
	if n < 1 {
		return fmt.Errorf("evchan: release of %d units: %w", n, ErrInvalid)
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.l.units += n
	s.l.grantLocked()
	return nil
}

// Value returns the number of units available now.
func (s *Sem) Value() int64 {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	return s.l.units
}

// Mutex is a mutual-exclusion lock that can be acquired asynchronously on
// an event channel (the paper's pthread_mutex_alock). The zero value is
// unlocked. A Mutex is not tied to a goroutine: any goroutine may unlock
// it. It must not be copied after first use.
type Mutex struct{ l lockCore }

// Lock blocks until the mutex is held.
func (m *Mutex) Lock() { m.l.acquire(nil, kindExclusive) }

// LockContext blocks until the mutex is held or ctx ends.
func (m *Mutex) LockContext(ctx context.Context) error { return m.l.acquire(ctx, kindExclusive) }

// TryLock takes the mutex if it is free and nobody is waiting.
func (m *Mutex) TryLock() bool { return m.l.try(kindExclusive) }

// ALock requests the mutex, announced on ec by a SourceMutex event with Op
// OpLock and data in Event.Data (FlagInline if it was free at once). The
// consumer of the event holds the mutex and must Unlock it. ALock returns
// ErrFull (ec has no room) or ErrClosed without queueing anything.
func (m *Mutex) ALock(ec *Channel, data any) error {
	return m.l.await(ec, kindExclusive, Event{Source: SourceMutex, Op: OpLock, Data: data})
}

// Unlock releases the mutex and hands it to the next waiter; ErrNotLocked
// if it was not locked.
func (m *Mutex) Unlock() error { return m.l.release(kindExclusive) }

// RWMutex is a reader/writer lock that can be acquired asynchronously on
// an event channel. Requests are served in arrival order: a reader that
// arrives after a waiting writer waits behind it, so writers are not
// starved. The zero value is unlocked; it must not be copied after first
// use.
type RWMutex struct{ l lockCore }

// Lock blocks until the write lock is held.
func (rw *RWMutex) Lock() { rw.l.acquire(nil, kindExclusive) }

// LockContext blocks until the write lock is held or ctx ends.
func (rw *RWMutex) LockContext(ctx context.Context) error {
	return rw.l.acquire(ctx, kindExclusive)
}

// TryLock takes the write lock if it is free and nobody is waiting.
func (rw *RWMutex) TryLock() bool { return rw.l.try(kindExclusive) }

// ALock requests the write lock, announced on ec by a SourceMutex event
// with Op OpLock; see Mutex.ALock.
func (rw *RWMutex) ALock(ec *Channel, data any) error {
	return rw.l.await(ec, kindExclusive, Event{Source: SourceMutex, Op: OpLock, Data: data})
}

// Unlock releases the write lock; ErrNotLocked if it was not held.
func (rw *RWMutex) Unlock() error { return rw.l.release(kindExclusive) }

// RLock blocks until a read lock is held.
func (rw *RWMutex) RLock() { rw.l.acquire(nil, kindShared) }

// RLockContext blocks until a read lock is held or ctx ends.
func (rw *RWMutex) RLockContext(ctx context.Context) error { return rw.l.acquire(ctx, kindShared) }

// TryRLock takes a read lock if no writer holds or awaits the lock.
func (rw *RWMutex) TryRLock() bool { return rw.l.try(kindShared) }

// ARLock requests a read lock, announced on ec by a SourceMutex event with
// Op OpRLock and data in Event.Data (FlagInline if granted at once). The
// consumer of the event holds a read lock and must RUnlock it.
func (rw *RWMutex) ARLock(ec *Channel, data any) error {
	return rw.l.await(ec, kindShared, Event{Source: SourceMutex, Op: OpRLock, Data: data})
}

// RUnlock releases one read lock; ErrNotLocked if none was held.
func (rw *RWMutex) RUnlock() error { return rw.l.release(kindShared) }
