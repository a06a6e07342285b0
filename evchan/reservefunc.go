package evchan

// ReserveFunc is ReserveContext for producers that must not block, such as
// a stack worker whose multishot receive found the channel full. If n
// credits are free (and no producer is waiting before it), it takes them and
// returns them with true. Otherwise it queues the request in order with
// ReserveContext's waiters and returns false; fn is then called exactly
// once, with the credits when consumers have freed enough slots, or with
// ErrClosed when the channel closes first — or is already closed, in which
// case fn runs before ReserveFunc returns.
//
// fn runs on the goroutine that frees the room or closes the channel, with
// the channel's producer-queue lock held: it must not block and must not
// call methods of this channel. Move the credits out of the Reservation it
// is given (Split) and hand them to another goroutine (store them, wake a
// worker) instead. fn may run before ReserveFunc returns, when room
// appears meanwhile. A request cannot be withdrawn; a producer that no longer
// needs the credits releases them when fn delivers them. An n out of range
// (below 1 or above Cap) or a nil fn queues nothing and returns false: fn
// is never called.
func (c *Channel) ReserveFunc(n int, fn func(*Reservation, error)) (Reservation, bool) {
	if n < 1 || uint64(n) > c.ring.capacity() || fn == nil {
		return Reservation{}, false
	}
	if !c.closed.Load() && c.roomWaiting.Load() == 0 && c.takeCredits(int64(n)) {
		return Reservation{ch: c, n: n}, true
	}
	w := &roomWaiter{n: int64(n), fn: fn}
	c.roomMu.Lock()
	defer c.roomMu.Unlock()
	if c.closed.Load() {
		// Close has failed (or is failing) the queue; answer as it would.
		w.done = true
		w.finishLocked(c)
		return Reservation{}, false
	}
	c.pushRoomLocked(w)
	// As in ReserveContext: consumers add credits, then look at the queue;
	// we joined the queue, now we look at the credits.
	c.grantRoomLocked()
	return Reservation{}, false
}
