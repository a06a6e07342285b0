package impair

import "sync/atomic"

// Stats counts what the endpoint did to the traffic, per direction.
type Stats struct {
	Outbound DirectionStats
	Inbound  DirectionStats
}

// DirectionStats counts packets of one direction. A duplicate counts as a
// packet of its own from the moment it is made. Once the direction is quiet
// (no call in progress), the counters balance:
//
//	In + Duplicated == Passed + Refused + DroppedLoss + DroppedQueueFull +
//	                   DroppedClosed + Pending
//
// Reordered, Corrupted and Delayed count packets that were impaired on their
// way and are also counted in one of the terms on the right.
type DirectionStats struct {
	// In is the number of packets offered to the direction.
	In uint64
	// Passed is the number of packets handed on: to the inner link's
	// WritePackets (and taken by it) or to the stack's dispatcher.
	Passed uint64
	// Refused is the number of packets handed to the inner link that it did
	// not take (WritePackets wrote fewer than it was given, or failed).
	Refused uint64
	// DroppedLoss is the number of packets dropped by Loss.
	DroppedLoss uint64
	// DroppedQueueFull is the number of packets dropped because QueueLimit
	// packets were already waiting for their delay or for rate tokens.
	DroppedQueueFull uint64
	// DroppedClosed is the number of packets released unsent because the
	// direction was stopped: offered while the endpoint was detached or
	// closed, or still held or queued when it was detached or closed.
	DroppedClosed uint64
	// Duplicated is the number of copies made by Duplicate.
	Duplicated uint64
	// Reordered is the number of packets held back by Reorder.
	Reordered uint64
	// Corrupted is the number of packets with a byte changed by Corrupt.
	Corrupted uint64
	// Delayed is the number of packets that waited in the timed queue for
	// their delay or for rate tokens.
	Delayed uint64
	// Pending is the number of packets held back or queued right now: the
	// references the direction holds.
	Pending uint64
}

// counters are a direction's live counters. They are atomics so that Stats
// never takes a pipe's lock; each is only ever added to, except pending.
type counters struct {
	in, passed, refused                      atomic.Uint64
	droppedLoss, droppedQueue, droppedClosed atomic.Uint64
	duplicated, reordered, corrupted         atomic.Uint64
	delayed                                  atomic.Uint64
	pending                                  atomic.Int64
}

// snapshot reads the counters. A pass-through direction (pass) does not
// count Passed, to keep its per-batch cost at one atomic addition: every
// packet it was offered was passed unless the inner link refused it.
func (c *counters) snapshot(pass bool) DirectionStats {
	in, passed := c.in.Load(), c.passed.Load()
	if pass {
		passed = in - c.refused.Load()
	}
	return DirectionStats{
		In:               in,
		Passed:           passed,
		Refused:          c.refused.Load(),
		DroppedLoss:      c.droppedLoss.Load(),
		DroppedQueueFull: c.droppedQueue.Load(),
		DroppedClosed:    c.droppedClosed.Load(),
		Duplicated:       c.duplicated.Load(),
		Reordered:        c.reordered.Load(),
		Corrupted:        c.corrupted.Load(),
		Delayed:          c.delayed.Load(),
		Pending:          uint64(max(c.pending.Load(), 0)),
	}
}
