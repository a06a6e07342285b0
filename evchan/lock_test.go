package evchan

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// take1 takes one event without waiting, or returns false.
func take1(c *Channel) (Event, bool) {
	var dst [1]Event
	if c.TryNext(dst[:]) != 1 {
		return Event{}, false
	}
	return dst[0], true
}

func TestSemAwait(t *testing.T) {
	c := mustNew(t, 8)
	s, err := NewSem(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Await(c, "a"); err != nil {
		t.Fatal(err)
	}
	ev, ok := take1(c)
	if !ok || ev.Source != SourceSem || ev.Op != OpAcquire || ev.Result != 1 || ev.Data != "a" || ev.Flags&FlagInline == 0 {
		t.Fatalf("available unit: %v", ev)
	}
	if err := s.Await(c, "b"); err != nil {
		t.Fatal(err)
	}
	if _, ok := take1(c); ok {
		t.Fatal("event before the unit was released")
	}
	if s.TryAcquire() {
		t.Fatal("TryAcquire passed a waiter")
	}
	if err := s.Release(1); err != nil {
		t.Fatal(err)
	}
	ev, ok = take1(c)
	if !ok || ev.Data != "b" || ev.Flags&FlagInline != 0 {
		t.Fatalf("granted on release: %v", ev)
	}
	if s.Value() != 0 {
		t.Fatalf("value %d", s.Value())
	}
	if err := s.Release(0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Release(0): %v", err)
	}
	if _, err := NewSem(-1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewSem(-1): %v", err)
	}
	if err := s.Await(nil, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Await(nil): %v", err)
	}
}

// TestSemFIFOMixed: blocking and asynchronous waiters are served in
// arrival order.
func TestSemFIFOMixed(t *testing.T) {
	c := mustNew(t, 8)
	var s Sem // zero value: no units
	acquired := make(chan error)
	go func() { acquired <- s.Acquire(context.Background()) }()
	waitFor(t, "blocked Acquire", func() bool {
		s.l.mu.Lock()
		defer s.l.mu.Unlock()
		return !s.l.waiters.empty()
	})
	if err := s.Await(c, "second"); err != nil {
		t.Fatal(err)
	}
	s.Release(1)
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}
	if _, ok := take1(c); ok {
		t.Fatal("the async waiter passed the blocking one")
	}
	s.Release(1)
	if ev, ok := take1(c); !ok || ev.Data != "second" {
		t.Fatalf("second waiter: %v", ev)
	}
}

func TestSemAcquireContext(t *testing.T) {
	var s Sem
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- s.Acquire(ctx) }()
	waitFor(t, "blocked Acquire", func() bool {
		s.l.mu.Lock()
		defer s.l.mu.Unlock()
		return !s.l.waiters.empty()
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", err)
	}
	s.Release(1)
	if !s.TryAcquire() {
		t.Fatal("the unit went to a cancelled waiter")
	}
}

func TestAwaitBackpressureAndClosedChannel(t *testing.T) {
	c := mustNew(t, 2)
	hold, _ := c.Reserve(2)
	var s Sem
	if err := s.Await(c, nil); !errors.Is(err, ErrFull) {
		t.Fatalf("Await on a full channel: %v", err)
	}
	hold.Release()

	// A waiter whose channel closes before its turn is skipped and the
	// unit is not lost.
	c2 := mustNew(t, 2)
	if err := s.Await(c2, nil); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	s.Release(1)
	if s.Value() != 1 {
		t.Fatalf("unit lost to a closed channel's waiter: value %d", s.Value())
	}
	if err := s.Await(c2, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Await on a closed channel: %v", err)
	}
}

// TestCloseReleasesLockEvents: an acquired lock whose event Close
// discards is released, not leaked.
func TestCloseReleasesLockEvents(t *testing.T) {
	c := mustNew(t, 4)
	var m Mutex
	var rw RWMutex
	s, _ := NewSem(1)
	if err := m.ALock(c, nil); err != nil {
		t.Fatal(err)
	}
	if err := rw.ARLock(c, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Await(c, nil); err != nil {
		t.Fatal(err)
	}
	seen := 0
	if n := c.CloseFunc(func(Event) { seen++ }); n != 3 || seen != 3 {
		t.Fatalf("discarded %d, seen %d", n, seen)
	}
	if !m.TryLock() || !rw.TryLock() || !s.TryAcquire() {
		t.Fatal("a lock carried by a discarded event was not released")
	}
}

func TestMutexALock(t *testing.T) {
	c := mustNew(t, 8)
	var m Mutex
	m.Lock()
	if err := m.ALock(c, 1); err != nil {
		t.Fatal(err)
	}
	if err := m.ALock(c, 2); err != nil {
		t.Fatal(err)
	}
	if _, ok := take1(c); ok {
		t.Fatal("ALock granted while locked")
	}
	if err := m.Unlock(); err != nil {
		t.Fatal(err)
	}
	ev, ok := take1(c)
	if !ok || ev.Source != SourceMutex || ev.Op != OpLock || ev.Data != 1 {
		t.Fatalf("first ALock: %v", ev)
	}
	if _, ok := take1(c); ok {
		t.Fatal("second ALock granted while the first holds the lock")
	}
	m.Unlock() // the consumer of event 1 releases
	if ev, ok := take1(c); !ok || ev.Data != 2 {
		t.Fatalf("second ALock: %v", ev)
	}
	m.Unlock()
	if err := m.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Unlock of an unlocked Mutex: %v", err)
	}
}

func TestMutexLockContext(t *testing.T) {
	var m Mutex
	m.Lock()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- m.LockContext(ctx) }()
	waitFor(t, "blocked LockContext", func() bool {
		m.l.mu.Lock()
		defer m.l.mu.Unlock()
		return !m.l.waiters.empty()
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled LockContext: %v", err)
	}
	m.Unlock()
	if !m.TryLock() {
		t.Fatal("mutex held by a cancelled waiter")
	}
}

func TestRWMutexAsync(t *testing.T) {
	c := mustNew(t, 8)
	var rw RWMutex
	if err := rw.ARLock(c, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := rw.ARLock(c, "r2"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"r1", "r2"} {
		ev, ok := take1(c)
		if !ok || ev.Op != OpRLock || ev.Data != want || ev.Flags&FlagInline == 0 {
			t.Fatalf("reader %s: %v", want, ev)
		}
	}
	if err := rw.ALock(c, "w"); err != nil {
		t.Fatal(err)
	}
	if err := rw.ARLock(c, "r3"); err != nil { // behind the writer
		t.Fatal(err)
	}
	if rw.TryRLock() {
		t.Fatal("TryRLock passed a waiting writer")
	}
	rw.RUnlock()
	if _, ok := take1(c); ok {
		t.Fatal("writer granted with a reader still in")
	}
	rw.RUnlock()
	if ev, ok := take1(c); !ok || ev.Op != OpLock || ev.Data != "w" {
		t.Fatalf("writer: %v", ev)
	}
	if _, ok := take1(c); ok {
		t.Fatal("reader granted while the writer holds")
	}
	if err := rw.RUnlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("RUnlock under a writer: %v", err)
	}
	rw.Unlock()
	if ev, ok := take1(c); !ok || ev.Data != "r3" {
		t.Fatalf("reader after the writer: %v", ev)
	}
	rw.RUnlock()
	if err := rw.Unlock(); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("Unlock of an unlocked RWMutex: %v", err)
	}
}

// TestMutexExclusionMixed: goroutines locking with Lock and consumers of
// ALock events increment a plain counter inside the critical section;
// the race detector and the final count check mutual exclusion.
func TestMutexExclusionMixed(t *testing.T) {
	const blockers, asyncs, rounds = 3, 2, 300
	c := mustNew(t, 1024) // every outstanding ALock holds a slot
	var m Mutex
	counter := 0
	var wg sync.WaitGroup
	for range blockers {
		wg.Go(func() {
			for range rounds {
				m.Lock()
				counter++
				m.Unlock()
			}
		})
	}
	for range asyncs {
		wg.Go(func() {
			for range rounds {
				if err := m.ALock(c, nil); err != nil {
					t.Error(err)
					c.Close() // release the consumer
					return
				}
			}
		})
	}
	// One consumer takes the grants; each grant holds the lock.
	var cg sync.WaitGroup
	cg.Go(func() {
		dst := make([]Event, 8)
		for got := 0; got < asyncs*rounds; {
			n, err := c.Next(context.Background(), dst)
			if err != nil {
				t.Error(err)
				return
			}
			for range n {
				counter++
				m.Unlock()
			}
			got += n
		}
	})
	wg.Wait()
	cg.Wait()
	if counter != (blockers+asyncs)*rounds {
		t.Fatalf("counter %d, want %d", counter, (blockers+asyncs)*rounds)
	}
}

func TestRWMutexBlocking(t *testing.T) {
	var rw RWMutex
	rw.RLock()
	if err := rw.RLockContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- rw.LockContext(ctx) }()
	waitFor(t, "blocked writer", func() bool {
		rw.l.mu.Lock()
		defer rw.l.mu.Unlock()
		return !rw.l.waiters.empty()
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled LockContext: %v", err)
	}
	locked := make(chan struct{})
	go func() {
		rw.Lock()
		close(locked)
	}()
	waitFor(t, "blocked writer", func() bool {
		rw.l.mu.Lock()
		defer rw.l.mu.Unlock()
		return !rw.l.waiters.empty()
	})
	rw.RUnlock()
	rw.RUnlock()
	<-locked
	if rw.TryRLock() {
		t.Fatal("read lock under a writer")
	}
	rw.Unlock()
	if !rw.TryRLock() {
		t.Fatal("read lock refused on an unlocked RWMutex")
	}
	rw.RUnlock()
}
