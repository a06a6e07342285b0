package evchan

// The pollable view (the paper's ec_to_fd). An eventfd, created by the
// first call to FD, mirrors one bit of channel state: its counter is
// non-zero exactly while events are pending (queued in the ring, or an
// Overflow event owed). So the fd is readable exactly while a TryNext would
// return events, or is about to (a producer has claimed a slot and is
// writing it).
//
// How the post path stays free of system calls: fdOn is false until FD is
// called, and then producers only load it. Calling FD is how an fd reader
// announces itself; the channel cannot see whether anyone still polls the
// fd, so from then on it keeps the eventfd's state for the channel's life.
// Even then only transitions cost a system call: fdRaised mirrors "counter
// is non-zero", so a producer posting into a channel that already has
// events pending loads fdRaised and stops; the post that makes the channel
// non-empty writes the eventfd once, and the take that empties it reads it
// once.
//
// Both transitions run in fdSync under fdMu, which re-evaluates pending()
// after each change until the eventfd agrees with it. The race between a
// producer that publishes and then finds fdRaised set, and a consumer that
// is lowering it, is closed the same way as for wake-ups: the lowering side
// stores fdRaised=false and then re-reads pending(); the producer
// published, then loaded fdRaised; one of them sees the other.
//
// Level and edge: the eventfd is level-triggered in the ordinary sense —
// poll, select and level-triggered epoll report it readable for as long as
// events are pending, however many. With EPOLLET the fd signals one edge
// per transition from nothing pending to something pending: a consumer
// woken by an edge must call TryNext until it returns 0 (or fewer than
// len(dst)) before it waits again, as with any edge-triggered fd.
//
// The fd belongs to the channel: do not read, write or close it; Close
// closes it (remove it from poll sets before calling Close).

// FD returns the channel's eventfd, creating it on first use. The fd is
// readable (POLLIN) exactly while events are pending; see the package
// documentation for level and edge behaviour. It returns ErrClosed after
// Close and ErrUnsupported where eventfd does not exist.
func (c *Channel) FD() (int, error) {
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	if c.closed.Load() {
		return -1, ErrClosed
	}
	if c.efd < 0 {
		fd, err := newEventFD()
		if err != nil {
			return -1, err
		}
		c.efd = fd
		// From here producers keep the fd's state; events posted before
		// fdOn was visible are caught by the sync below.
		c.fdOn.Store(true)
		c.fdSyncLocked()
	}
	return c.efd, nil
}

// fdSync brings the eventfd's counter in line with pending().
func (c *Channel) fdSync() {
	c.fdMu.Lock()
	c.fdSyncLocked()
	c.fdMu.Unlock()
}

// fdSyncLocked is fdSync with fdMu held.
func (c *Channel) fdSyncLocked() {
	if c.efd < 0 {
		return
	}
	for {
		want := c.pending()
		if want == c.fdRaised.Load() {
			return
		}
		// Store first, then the system call, then re-evaluate: a producer
		// that published after our pending() and loaded fdRaised before
		// this store is caught by the next iteration.
		c.fdRaised.Store(want)
		if want {
			eventFDRaise(c.efd)
			c.stats.fdWrites.Add(1)
		} else {
			eventFDLower(c.efd)
			c.stats.fdReads.Add(1)
		}
	}
}

// closeFD closes the eventfd, if any.
func (c *Channel) closeFD() {
	c.fdMu.Lock()
	if c.efd >= 0 {
		closeEventFD(c.efd)
		c.efd = -1
	}
	c.fdOn.Store(false)
	c.fdRaised.Store(false)
	c.fdMu.Unlock()
}
