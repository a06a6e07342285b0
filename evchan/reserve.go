package evchan

import (
	"context"
	"fmt"
)

// The completion path (§4, "queue limit"): a completion of an operation a
// program submitted must never be dropped, so its slot is taken when the
// operation is submitted, not when it completes. Reserve hands out credits
// (one per future event); Post spends one and cannot fail for lack of
// room. A producer that completes many operations (a stack worker)
// reserves a batch, posts what it has, and releases the rest.
//
// Flow of a credit:
//
//  1. Reserve/ReserveContext takes it (Channel.granted grows);
//  2. Post/PostBatch turns it into a queued event (or Release returns it:
//     Channel.returned grows);
//  3. a consumer takes the event and releases its position (ring.released
//     grows), which frees the credit, and lets waiting producers in.

// Reservation holds credits for completions on one channel: each credit
// is the right to post one event that cannot be refused for lack of room.
// The zero value holds nothing. A Reservation must not be copied after
// first use (go vet's copylocks check reports copies); pass a pointer, or
// move credits with Split. Methods are not safe for concurrent use on one
// Reservation.
type Reservation struct {
	_ noCopy
	// ch is the channel the credits belong to; nil in the zero value.
	ch *Channel
	// n is the number of credits held. Invariant: n >= 0.
	n int
}

// Reserve takes n credits without waiting. It returns an error wrapping
// ErrFull when fewer than n are free or other producers are already
// waiting in ReserveContext (credits are granted in order), ErrClosed when
// the channel is closed, and ErrInvalid when n is negative or exceeds the
// channel's capacity. Reserve(0) returns an empty reservation.
func (c *Channel) Reserve(n int) (Reservation, error) {
	if err := c.checkReserve(n); err != nil {
		return Reservation{}, err
	}
	if n == 0 {
		return Reservation{ch: c}, nil
	}
	if c.roomWaiting.Load() == 0 && c.takeCredits(int64(n)) {
		return Reservation{ch: c, n: n}, nil
	}
	if c.closed.Load() {
		return Reservation{}, ErrClosed
	}
	return Reservation{}, ErrFull
}

// ReserveContext takes n credits, waiting until consumers free enough
// slots, ctx is done, or the channel closes. Waiting producers are served
// in arrival order, so a large request is not starved by small ones.
// It returns ctx.Err() when ctx ends first, ErrClosed when the channel
// closes first, and ErrInvalid as Reserve does.
func (c *Channel) ReserveContext(ctx context.Context, n int) (Reservation, error) {
	if err := c.checkReserve(n); err != nil {
		return Reservation{}, err
	}
	if n == 0 {
		return Reservation{ch: c}, nil
	}
	if c.roomWaiting.Load() == 0 && c.takeCredits(int64(n)) {
		return Reservation{ch: c, n: n}, nil
	}
	if err := ctx.Err(); err != nil {
		return Reservation{}, err
	}
	w := &roomWaiter{n: int64(n), ready: make(chan struct{})}
	c.roomMu.Lock()
	if c.closed.Load() {
		c.roomMu.Unlock()
		return Reservation{}, ErrClosed
	}
	c.pushRoomLocked(w)
	// Consumers add credits, then look at roomWaiting; we registered,
	// now we look at credits. One of the two sees the other.
	c.grantRoomLocked()
	c.roomMu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
		c.roomMu.Lock()
		if !w.done {
			c.removeRoomLocked(w)
			// Our leaving may let the next waiter in.
			c.grantRoomLocked()
			c.roomMu.Unlock()
			return Reservation{}, ctx.Err()
		}
		c.roomMu.Unlock()
	}
	// w.done was set before ready was closed (or under roomMu, which we
	// took above), so w.granted is visible.
	if !w.granted {
		return Reservation{}, ErrClosed
	}
	return Reservation{ch: c, n: n}, nil
}

// TryPost posts one event if a slot is free: Reserve(1) and Post in one
// call, for events that are not completions of a reserved operation. It
// returns an error wrapping ErrFull or ErrClosed; on error the caller keeps
// ownership of ev.Buffer.
func (c *Channel) TryPost(ev Event) error {
	if ev.Source == SourceOverflow {
		return errOverflowSource
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if c.roomWaiting.Load() != 0 || !c.takeCredits(1) {
		return ErrFull
	}
	if err := c.ring.enqueue1(&ev, nil); err != nil {
		c.returnCredits(1)
		return err
	}
	c.signal()
	return nil
}

func (c *Channel) checkReserve(n int) error {
	if n < 0 || uint64(n) > c.ring.capacity() {
		return fmt.Errorf("evchan: reserve %d of a channel of %d slots: %w", n, c.ring.capacity(), ErrInvalid)
	}
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}

// takeCredits takes n credits if that many are free. It counts
// releases through ring.relSeen and looks at ring.released only when that
// is not enough.
func (c *Channel) takeCredits(n int64) bool {
	fresh := false
	for {
		g := c.granted.Load()
		var rel uint64
		if fresh {
			rel = c.ring.releasedNow()
		} else {
			rel = c.ring.relSeen.Load()
		}
		inUse := g - c.returned.Load() - rel
		if c.ring.capacity()-inUse < uint64(n) {
			if fresh {
				return false
			}
			fresh = true
			continue
		}
		if c.granted.CompareAndSwap(g, g+uint64(n)) {
			return true
		}
	}
}

// freeCredits is the number of credits neither granted nor in use.
// It is a snapshot for Stats: under concurrent grants it may be stale.
func (c *Channel) freeCredits() uint64 {
	g := c.granted.Load()
	inUse := int64(g - c.returned.Load() - c.ring.released.Load())
	return uint64(int64(c.ring.capacity()) - min(max(inUse, 0), int64(c.ring.capacity())))
}

// returnCredits gives back n unspent credits.
func (c *Channel) returnCredits(n int64) {
	c.returned.Add(uint64(n))
	c.letProducersIn()
}

// letProducersIn serves producers waiting in ReserveContext after credits
// were freed. The freeing side stores (returned, released), then loads
// roomWaiting; a waiter stores roomWaiting, then loads the credits.
func (c *Channel) letProducersIn() {
	if c.roomWaiting.Load() != 0 {
		c.roomMu.Lock()
		c.grantRoomLocked()
		c.roomMu.Unlock()
	}
}

// Len returns the number of credits held.
func (r *Reservation) Len() int { return r.n }

// Channel returns the channel the credits belong to (nil for the zero
// Reservation).
func (r *Reservation) Channel() *Channel { return r.ch }

// Post spends one credit to queue ev. It fails only with ErrNoCredit (no
// credit held), ErrClosed (the channel was closed; the credit is gone and
// the caller keeps ownership of ev.Buffer), or ErrInvalid (ev.Source is
// SourceOverflow, which only the channel may post). On success the
// channel's consumers own ev.Buffer.
func (r *Reservation) Post(ev Event) error {
	if r.n <= 0 {
		return ErrNoCredit
	}
	if ev.Source == SourceOverflow {
		return errOverflowSource
	}
	return r.postHook(&ev, nil)
}

// postHook is Post with an eventHook, for this package's sources.
func (r *Reservation) postHook(ev *Event, hook eventHook) error {
	if r.n <= 0 {
		return ErrNoCredit
	}
	if err := r.ch.ring.enqueue1(ev, hook); err != nil {
		return err
	}
	r.n--
	r.ch.signal()
	return nil
}

// PostBatch spends len(evs) credits to queue evs in order, waking at most
// one consumer for the whole batch. It returns how many events were
// queued: all of them, or, with ErrClosed, those queued before the channel
// closed (the caller keeps ownership of the Buffers of the rest). With
// ErrNoCredit (len(evs) > Len()) or ErrInvalid (an Overflow event) nothing
// is queued.
func (r *Reservation) PostBatch(evs []Event) (int, error) {
	if len(evs) > r.n {
		return 0, fmt.Errorf("evchan: batch of %d with %d credits: %w", len(evs), r.n, ErrNoCredit)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	for i := range evs {
		if evs[i].Source == SourceOverflow {
			return 0, errOverflowSource
		}
	}
	n, err := r.ch.ring.enqueue(evs)
	r.n -= n
	if n > 0 {
		r.ch.signal()
	}
	return n, err
}

// Split moves n of r's credits into a new Reservation, for example one
// per submitted operation out of a batch reserved at once.
func (r *Reservation) Split(n int) (Reservation, error) {
	if n < 0 || n > r.n {
		return Reservation{}, fmt.Errorf("evchan: split %d of %d credits: %w", n, r.n, ErrNoCredit)
	}
	r.n -= n
	return Reservation{ch: r.ch, n: n}, nil
}

// Release returns the unspent credits to the channel. The Reservation is
// empty afterwards; Release is idempotent.
func (r *Reservation) Release() {
	if r.n > 0 {
		n := r.n
		r.n = 0
		r.ch.returnCredits(int64(n))
	}
}

// roomWaiter is a producer waiting in ReserveContext.
type roomWaiter struct {
	n int64
	// link is w's place in Channel.room, guarded by Channel.roomMu.
	link waitLink[roomWaiter]
	// done is set under roomMu when the waiter leaves the queue by
	// grant or by Close; granted says which. ready is closed after.
	done, granted bool
	ready         chan struct{}
	// fn, for a ReserveFunc waiter, is called instead of closing ready.
	fn func(*Reservation, error)
}

// finishLocked ends w's wait: it wakes a ReserveContext waiter, or calls a
// ReserveFunc waiter's function with the credits (granted) or ErrClosed.
func (w *roomWaiter) finishLocked(c *Channel) {
	if w.fn == nil {
		close(w.ready)
		return
	}
	if w.granted {
		w.fn(&Reservation{ch: c, n: int(w.n)}, nil)
	} else {
		w.fn(&Reservation{}, ErrClosed)
	}
}

// pushRoomLocked appends w to the room queue.
//
// +checklocks:c.roomMu
func (c *Channel) pushRoomLocked(w *roomWaiter) {
	c.room.pushBack(w, &w.link)
	c.roomWaiting.Add(1)
}

// removeRoomLocked unlinks w from the room queue.
//
// +checklocks:c.roomMu
func (c *Channel) removeRoomLocked(w *roomWaiter) {
	c.room.remove(&w.link)
	c.roomWaiting.Add(-1)
}

// grantRoomLocked serves waiting producers in order while credits last.
//
// +checklocks:c.roomMu
func (c *Channel) grantRoomLocked() {
	for w := c.room.front(); w != nil; w = c.room.front() {
		if !c.takeCredits(w.n) {
			return
		}
		c.removeRoomLocked(w)
		w.done, w.granted = true, true
		w.finishLocked(c)
	}
}

// failRoomWaiters releases every waiting producer with ErrClosed.
func (c *Channel) failRoomWaiters() {
	c.roomMu.Lock()
	for w := c.room.front(); w != nil; w = c.room.front() {
		c.removeRoomLocked(w)
		w.done = true
		w.finishLocked(c)
	}
	c.roomMu.Unlock()
}

// noCopy makes go vet's copylocks check report copies of the struct that
// embeds it.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
