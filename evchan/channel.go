package evchan

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
)

// Capacity limits.
const (
	// DefaultCapacity is the ring size when Config.Capacity is 0.
	DefaultCapacity = 4096
	// MaxCapacity bounds Config.Capacity (96 MiB of ring: 64 bytes of
	// Event and 32 of control per slot).
	MaxCapacity = 1 << 20
)

// errOverspent is returned (wrapped in ErrFull) when a producer that
// should hold a credit finds the ring full: the credits were spent twice,
// which only a copied Reservation can do.
var errOverspent = fmt.Errorf("evchan: ring full although credit was held (was a Reservation copied?): %w", ErrFull)

// Config configures a channel. The zero value is valid.
type Config struct {
	// Capacity is the most events the channel holds at once, rounded up
	// to a power of two; 0 means DefaultCapacity. It bounds queued events
	// plus outstanding reservations.
	Capacity int
}

// Channel is an event channel (the paper's ec_create'd object): a bounded
// ring of Events with producers on any goroutine and consumers that take
// events in batches. Create one with New; the zero value is not usable.
// All methods are safe for concurrent use.
type Channel struct {
	ring ring

	// Credits (see reserve.go). granted counts every credit ever handed
	// out (Reserve, TryPost, Notify), returned every credit given back
	// unspent (Release, a post refused by Close). A spent credit comes back
	// when the consumers release its position (ring.released), so
	//
	//   credits in use = granted - returned - ring.released
	//   free           = capacity - credits in use
	//
	// and consumers return credits without touching these words. All three
	// only grow: a producer loads granted, then the other two, and takes
	// credits with a CAS on granted, so it never takes a credit that is
	// not free (see takeCredits).
	granted  atomic.Uint64
	_        cacheLinePad
	returned atomic.Uint64
	_        cacheLinePad

	// lost counts unsolicited notifications that found no credit since the
	// last Overflow event; the next consumer batch starts with an Overflow
	// event carrying it.
	lost atomic.Uint64

	// closed is set once by Close, before the ring's closedBit.
	closed atomic.Bool

	// Consumers parked in Next, LIFO (see consume.go).
	wmu sync.Mutex
	// parked holds the parked consumers, the most recent first.
	// +checklocks:wmu
	parked waitList[parker]
	// nparked is the length of the park list; written under wmu, read
	// without it by producers deciding whether to wake.
	nparked atomic.Int32
	// waking is true from the moment a producer wakes a parked consumer
	// until that consumer looks at the ring; while it is set producers do
	// not wake another (one wake-up per batch). Set under wmu.
	waking atomic.Bool

	// Producers waiting in ReserveContext, FIFO (see reserve.go).
	roomMu sync.Mutex
	// room holds the waiting producers, the first to have come first.
	// +checklocks:roomMu
	room waitList[roomWaiter]
	// roomWaiting is the length of the room queue; written under roomMu.
	roomWaiting atomic.Int32

	// fd state (see fd.go).
	fdMu sync.Mutex
	// efd is the eventfd, -1 until FD is first called and after Close.
	// +checklocks:fdMu
	efd int
	// fdOn is set once FD has been called: from then on producers keep
	// the eventfd's state. Read without fdMu.
	fdOn atomic.Bool
	// fdRaised mirrors the eventfd counter: true exactly when it is
	// non-zero. Written under fdMu, read without it.
	fdRaised atomic.Bool

	// Sources to stop when the channel closes (see sources.go).
	srcMu sync.Mutex
	// sources is nil after Close.
	// +checklocks:srcMu
	sources map[stopper]struct{}

	// closeMu serialises Close so that a second caller returns only after
	// the first has finished.
	closeMu sync.Mutex

	stats counters
}

// counters are the statistics that are not derived from ring positions.
// They are off the per-event path, except coalesced (per merged
// notification).
type counters struct {
	coalesced atomic.Uint64
	lostTotal atomic.Uint64
	overflows atomic.Uint64
	parks     atomic.Uint64
	wakeups   atomic.Uint64
	fdWrites  atomic.Uint64
	fdReads   atomic.Uint64
	discarded atomic.Uint64
}

// New creates a channel (the paper's ec_create).
func New(cfg Config) (*Channel, error) {
	n := cfg.Capacity
	switch {
	case n == 0:
		n = DefaultCapacity
	case n < 0 || n > MaxCapacity:
		return nil, fmt.Errorf("evchan: capacity %d not in [1, %d]: %w", cfg.Capacity, MaxCapacity, ErrInvalid)
	}
	if n&(n-1) != 0 {
		n = 1 << bits.Len(uint(n))
	}
	c := &Channel{efd: -1, sources: make(map[stopper]struct{})}
	c.ring.init(n)
	return c, nil
}

// Cap returns the channel's capacity in events.
func (c *Channel) Cap() int { return int(c.ring.capacity()) }

// Len returns the number of events queued (claimed by producers and not
// yet taken). It is a snapshot; concurrent posts and takes change it.
func (c *Channel) Len() int { return int(c.ring.queued()) }

// Closed reports whether Close has been called.
func (c *Channel) Closed() bool { return c.closed.Load() }

// Close closes the channel (the paper's ec_destroy) and discards the
// events still queued; Stats().Discarded counts them. Use CloseFunc to see
// the discarded events, for example to release their buffers. Close is
// idempotent and always returns nil.
func (c *Channel) Close() error {
	c.CloseFunc(nil)
	return nil
}

// CloseFunc closes the channel and returns how many queued events it
// discarded; it calls fn, if not nil, for each of them in queue order, so
// that the closer takes ownership of their Buffers. After CloseFunc begins:
//
//  1. no event can be posted: Reserve, ReserveContext, Post and PostBatch
//     return ErrClosed (the caller keeps ownership of the event's Buffer),
//     Notify returns false;
//  2. every consumer parked in Next and every producer waiting in
//     ReserveContext returns ErrClosed;
//  3. the sources bound to the channel (timers, signal watches, fd watches)
//     are stopped and their goroutines have exited when CloseFunc returns;
//  4. the events queued are discarded (a consumer that was already taking
//     events may still receive some; each event is either delivered or
//     discarded, never both); an event that carries a hold on a Sem, Mutex
//     or RWMutex of this package is released after fn has seen it, so fn
//     must not release it;
//  5. the eventfd returned by FD is closed.
//
// A second call returns 0 once the first has finished. fn runs on the
// closing goroutine; it must not call Close or CloseFunc (that would wait
// for itself) and must not wait for the channel's consumers.
func (c *Channel) CloseFunc(fn func(Event)) int {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed.Load() {
		return 0
	}

	// 1. Producers: flag first (cheap checks), then the ring's closedBit,
	// which stops claims exactly; end is one past the last position any
	// producer claimed.
	c.wmu.Lock()
	c.closed.Store(true)
	c.wmu.Unlock()
	end := c.ring.tail.Or(closedBit) &^ closedBit

	// 2. Waiters.
	c.wakeAllClosed()
	c.failRoomWaiters()

	// 3. Sources.
	c.stopSources()

	// 4. Drain positions below end; a position claimed but not yet
	// published will be within a few instructions, and a consumer racing
	// with us takes some.
	var buf [64]Event
	var hooks [64]eventHook
	discarded := 0
	for c.ring.head.Load() < end {
		n, _ := c.ring.dequeue(buf[:], hooks[:]) // credits no longer matter
		if n == 0 {
			yield()
			continue
		}
		for i := range buf[:n] {
			if fn != nil {
				fn(buf[i])
			}
			if hooks[i] != nil {
				hooks[i].discarded(&buf[i])
				hooks[i] = nil
			}
			buf[i] = Event{}
		}
		discarded += n
	}
	c.lost.Store(0)
	c.stats.discarded.Add(uint64(discarded))

	// 5. The eventfd.
	c.closeFD()
	return discarded
}

// Stats is a snapshot of a channel's counters. Counts since New unless
// noted; fields are read one by one, so a snapshot taken under load is not
// atomic across fields.
type Stats struct {
	Capacity int // slots in the ring
	Queued   int // events claimed by producers and not yet taken (now)
	Free     int // credits neither reserved nor used (now)

	Posted    uint64 // events placed in the ring
	Delivered uint64 // events handed to consumers, Overflow events not included
	Discarded uint64 // events discarded by Close

	Coalesced uint64 // notifications merged into another's event rather than queued as their own
	Lost      uint64 // notifications that found no room; reported by Overflow events
	Overflows uint64 // Overflow events delivered

	Parked  int    // consumers parked in Next (now)
	Parks   uint64 // times a consumer parked in Next
	Wakeups uint64 // times a producer or a consumer woke a parked consumer for events (Close's wake-ups not included)

	FDWrites uint64 // eventfd writes: transitions to "events pending" while an fd reader exists
	FDReads  uint64 // eventfd reads: transitions back to "nothing pending"
}

// Stats returns the channel's counters.
func (c *Channel) Stats() Stats {
	head := c.ring.head.Load()
	tail := c.ring.tail.Load() &^ closedBit
	discarded := c.stats.discarded.Load()
	s := Stats{
		Capacity:  c.Cap(),
		Queued:    int(c.ring.queued()),
		Free:      int(c.freeCredits()),
		Posted:    tail,
		Delivered: head - discarded,
		Discarded: discarded,
		Coalesced: c.stats.coalesced.Load(),
		Lost:      c.stats.lostTotal.Load(),
		Overflows: c.stats.overflows.Load(),
		Parked:    int(c.nparked.Load()),
		Parks:     c.stats.parks.Load(),
		Wakeups:   c.stats.wakeups.Load(),
		FDWrites:  c.stats.fdWrites.Load(),
		FDReads:   c.stats.fdReads.Load(),
	}
	return s
}

// errOverflowSource rejects a producer's attempt to forge an Overflow event.
var errOverflowSource = fmt.Errorf("evchan: SourceOverflow is reserved for the channel: %w", ErrInvalid)
