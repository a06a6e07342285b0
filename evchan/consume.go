package evchan

import (
	"context"
	"fmt"
	"runtime"
	"sync"
)

// Wake-ups (§4, "no thundering herd"). The rules, and how they are kept:
//
//   - A consumer that is running is not woken: producers look at nparked
//     (one atomic load) and do nothing more when no consumer is parked.
//   - A parked consumer is woken once per batch: a producer wakes one
//     consumer and sets waking; until that consumer has looked at the ring,
//     other producers see waking and do not wake anyone. PostBatch wakes
//     once for its whole batch.
//   - Many parked consumers, one event: one wake-up. The woken consumer
//     clears waking before it takes events, and after taking wakes the next
//     parked consumer only if events remain (a chain, one link per batch).
//
// Lost wake-ups are excluded by a store-then-load on each side (Go's
// atomics are sequentially consistent): a producer publishes its event,
// then loads nparked; a consumer increments nparked, then checks the ring.
// At least one of the two sees the other.
//
// Parked consumers form a LIFO stack: the most recently parked, whose
// cache is warmest, is woken first.

// spinChecks is how many times Next re-checks an empty ring, yielding the
// processor between checks, before it parks. A producer on another core
// usually publishes within that window, which saves a park and a wake-up.
const spinChecks = 4

// parker is a consumer parked in Next.
type parker struct {
	// wake receives one token when the parker is woken.
	wake chan struct{}
	// state is parkWaiting while on the stack, then why it was woken.
	// Written under wmu before the token is sent.
	state parkState
	// link is p's place in Channel.parked, guarded by Channel.wmu.
	link waitLink[parker]
}

type parkState uint8

const (
	parkWaiting parkState = iota
	parkEvents            // woken because events are pending
	parkClosed            // woken by Close
)

var parkerPool = sync.Pool{New: func() any { return &parker{wake: make(chan struct{}, 1)} }}

// TryNext takes up to len(dst) pending events without waiting and returns
// how many it stored in dst[:n]. When notifications were lost since the
// last batch, dst[0] is an Overflow event whose Result counts them. The
// caller takes ownership of the events' Buffers. TryNext returns 0 when
// nothing is pending, dst is empty, or the channel is closed.
func (c *Channel) TryNext(dst []Event) int {
	if len(dst) == 0 || c.closed.Load() {
		return 0
	}
	return c.take(dst)
}

// Next takes up to len(dst) events, waiting until at least one is pending
// (the paper's ec_next_event, batched). It returns the number stored in
// dst[:n], with the same Overflow rule as TryNext. It returns ErrClosed
// once the channel is closed, even if Next was parked, ctx.Err() when ctx
// ends before an event arrives, and ErrInvalid for an empty dst. Pending
// events are returned even if ctx is already done.
func (c *Channel) Next(ctx context.Context, dst []Event) (int, error) {
	if len(dst) == 0 {
		return 0, fmt.Errorf("evchan: Next into an empty slice: %w", ErrInvalid)
	}
	for {
		if c.closed.Load() {
			return 0, ErrClosed
		}
		if n := c.take(dst); n > 0 {
			return n, nil
		}
		if c.spin() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		woken, err := c.park(ctx)
		if err != nil {
			return 0, err
		}
		if woken {
			// We are the consumer the producers are counting on: say that
			// we are looking before we look (see the comment at the top).
			c.waking.Store(false)
		}
	}
}

// spin re-checks the ring a few times before parking and reports whether
// something became pending.
func (c *Channel) spin() bool {
	for range spinChecks {
		runtime.Gosched()
		if c.pendingReady() {
			return true
		}
	}
	return false
}

// park parks the calling consumer until a producer or Close wakes it, or
// ctx ends. woken reports a wake-up for events (the caller must clear
// waking); err is ErrClosed or ctx.Err(). It returns (false, nil) when the
// re-check after registering found events.
func (c *Channel) park(ctx context.Context) (woken bool, err error) {
	p := parkerPool.Get().(*parker)
	c.wmu.Lock()
	if c.closed.Load() {
		c.wmu.Unlock()
		parkerPool.Put(p)
		return false, ErrClosed
	}
	c.pushParkerLocked(p)
	if c.pendingReady() {
		c.removeParkerLocked(p)
		c.wmu.Unlock()
		parkerPool.Put(p)
		return false, nil
	}
	c.wmu.Unlock()
	c.stats.parks.Add(1)

	select {
	case <-p.wake:
	case <-ctx.Done():
		c.wmu.Lock()
		if p.state == parkWaiting {
			c.removeParkerLocked(p)
			c.wmu.Unlock()
			parkerPool.Put(p)
			return false, ctx.Err()
		}
		c.wmu.Unlock()
		// Woken concurrently with ctx: the token was sent under wmu before
		// state changed, so it is there. Honour the wake-up.
		<-p.wake
	}
	state := p.state
	p.state = parkWaiting
	parkerPool.Put(p)
	if state == parkClosed {
		return false, ErrClosed
	}
	return true, nil
}

// pushParkerLocked puts p on top of the park stack.
//
// +checklocks:c.wmu
func (c *Channel) pushParkerLocked(p *parker) {
	c.parked.pushFront(p, &p.link)
	c.nparked.Add(1)
}

// removeParkerLocked takes p, which is parked, off the park stack.
//
// +checklocks:c.wmu
func (c *Channel) removeParkerLocked(p *parker) {
	c.parked.remove(&p.link)
	c.nparked.Add(-1)
}

// wakeOne wakes the most recently parked consumer unless a wake-up is
// already in flight.
func (c *Channel) wakeOne() {
	c.wmu.Lock()
	p := c.parked.front()
	if p == nil || c.waking.Load() {
		c.wmu.Unlock()
		return
	}
	c.removeParkerLocked(p)
	c.waking.Store(true)
	p.state = parkEvents
	c.stats.wakeups.Add(1)
	p.wake <- struct{}{}
	c.wmu.Unlock()
}

// wakeAllClosed wakes every parked consumer with ErrClosed. The caller
// has set closed.
func (c *Channel) wakeAllClosed() {
	c.wmu.Lock()
	for p := c.parked.front(); p != nil; p = c.parked.front() {
		c.removeParkerLocked(p)
		p.state = parkClosed
		p.wake <- struct{}{}
	}
	c.waking.Store(false)
	c.wmu.Unlock()
}

// signal runs after a producer published events or counted a lost
// notification: it wakes a parked consumer if none is being woken, and
// raises the eventfd if an fd reader exists. On the common path (a
// consumer running, no fd reader) it is two atomic loads.
func (c *Channel) signal() {
	if c.nparked.Load() != 0 && !c.waking.Load() {
		c.wakeOne()
	}
	if c.fdOn.Load() && !c.fdRaised.Load() {
		c.fdSync()
	}
}

// take is the body of TryNext and Next: the Overflow event if
// notifications were lost, then events from the ring.
func (c *Channel) take(dst []Event) int {
	n := 0
	if c.lost.Load() != 0 {
		if lost := c.lost.Swap(0); lost != 0 {
			dst[0] = Event{Source: SourceOverflow, Result: int64(lost)}
			c.stats.overflows.Add(1)
			n = 1
		}
	}
	if n < len(dst) {
		k, freed := c.ring.dequeue(dst[n:], nil)
		if freed > 0 {
			c.letProducersIn()
		}
		n += k
	}
	if n == 0 {
		return 0
	}
	// Chain: if events remain and consumers are parked, hand the rest on.
	if c.nparked.Load() != 0 && !c.waking.Load() && c.pendingReady() {
		c.wakeOne()
	}
	// Lower the eventfd if we emptied the channel.
	if c.fdRaised.Load() && !c.pending() {
		c.fdSync()
	}
	return n
}

// pendingReady reports whether a consumer would take an event now.
func (c *Channel) pendingReady() bool {
	return c.lost.Load() != 0 || c.ring.ready()
}

// pending reports whether events are pending, counting positions claimed
// by producers and not yet published (they will be, shortly). This is the
// eventfd's notion of "readable".
func (c *Channel) pending() bool {
	return c.lost.Load() != 0 || c.ring.queued() != 0
}

// yield lets other goroutines run while waiting for a claimed slot to be
// published or released.
func yield() { runtime.Gosched() }
