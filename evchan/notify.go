package evchan

import "sync/atomic"

// The unsolicited path (§4, "out-of-band overflow"): events nobody
// submitted an operation for (timer expiries, signals, readiness) cannot
// reserve a slot in advance. They take a free slot if there is one; a
// source that fires again while its event is still queued merges into it
// (coalescing: a timer's ten expiries become one event with Result 10);
// and when there is no free slot the notification is counted in
// Channel.lost and reported out of band: the consumer's next batch starts
// with one SourceOverflow event whose Result is the number lost, which
// does not need a slot. Every notification is thus accounted for exactly
// once: delivered as an event, merged into a delivered event's Result, or
// counted in an Overflow event's Result.
//
// A completion of a submitted operation never takes this path: see
// Reservation.

// Notify queues an unsolicited event without coalescing. It reports
// whether the event was queued; when the channel has no free slot it
// returns false and counts the event for the next Overflow event, and
// when the channel is closed (or ev.Source is SourceOverflow) it returns
// false and counts nothing. On false the caller keeps ownership of
// ev.Buffer. Notify never blocks and never waits behind producers queued
// in ReserveContext (it takes at most one slot).
func (c *Channel) Notify(ev Event) bool {
	if ev.Source == SourceOverflow || c.closed.Load() {
		return false
	}
	if !c.takeCredits(1) {
		c.lose(1)
		return false
	}
	if err := c.ring.enqueue1(&ev, nil); err != nil {
		c.returnCredits(1)
		return false
	}
	c.signal()
	return true
}

// lose counts n lost notifications and makes the Overflow event pending.
func (c *Channel) lose(n uint64) {
	if c.closed.Load() {
		return
	}
	c.stats.lostTotal.Add(n)
	c.lost.Add(n)
	c.signal()
}

// Notifier is a coalescing unsolicited source on one channel: at most one
// of its events is queued at a time, and notifications made while it is
// queued are merged into it. When the consumer takes the event, Result is
// the number of notifications it stands for and Op is the template's Op
// OR'ed with the bits the notifications carried.
//
// Timers, signal watches and fd watches are built on Notifier; a program
// can make its own for any source whose repeated firings may be merged.
// Notifier methods are safe for concurrent use.
type Notifier struct {
	ch *Channel
	// ev is the template queued on each idle→pending transition.
	// Immutable.
	ev Event
	// state packs the pending notifications (layout below). count == 0
	// exactly when no event of this Notifier is queued (or being queued).
	state atomic.Uint64
}

// Notifier state layout:
//
//	63          48 47            32 31                               0
//	+-------------+----------------+---------------------------------+
//	|   unused    | Op bits (OR)   | notifications merged (count)    |
//	+-------------+----------------+---------------------------------+
const (
	notifierCountMask = 1<<32 - 1
	notifierOpShift   = 32
)

// NewNotifier returns a Notifier that queues ev (with Result and the
// merged Op bits filled in) on ch. ev.Source must not be SourceOverflow.
func (c *Channel) NewNotifier(ev Event) (*Notifier, error) {
	if ev.Source == SourceOverflow {
		return nil, errOverflowSource
	}
	return &Notifier{ch: c, ev: ev}, nil
}

// Notify records one notification carrying op bits; see NotifyN.
func (n *Notifier) Notify(op uint16) bool { return n.NotifyN(1, op) }

// NotifyN records count notifications (count >= 1; a timer that missed
// periods passes several) carrying op bits. If none of n's events is
// queued it queues one; otherwise it merges into the queued event. It
// returns false when the notifications were lost for lack of room (they
// are counted for the next Overflow event) or the channel is closed.
// A merge returns true; should the event it merged into then fail to be
// queued (a race with a full ring), the merged notifications are counted
// as lost all the same, so the accounting stays exact though the earlier
// true was optimistic.
func (n *Notifier) NotifyN(count uint32, op uint16) bool {
	if count == 0 {
		return true
	}
	c := n.ch
	if c.closed.Load() {
		return false
	}
	for {
		old := n.state.Load()
		cnt := old & notifierCountMask
		add := uint64(count)
		var excess uint64
		if cnt+add > notifierCountMask {
			// 4 billion notifications merged before a consumer looked:
			// saturate and count the rest as lost.
			excess = cnt + add - notifierCountMask
			add -= excess
		}
		next := (old + add) | uint64(op)<<notifierOpShift
		if !n.state.CompareAndSwap(old, next) {
			continue
		}
		if excess != 0 {
			c.lose(excess)
		}
		if cnt != 0 {
			c.stats.coalesced.Add(add)
			return true
		}
		break
	}
	// We moved the Notifier from idle to pending: queue its event.
	if c.takeCredits(1) {
		if c.ring.enqueue1(&n.ev, n) == nil {
			if count > 1 {
				c.stats.coalesced.Add(uint64(count - 1))
			}
			c.signal()
			return true
		}
		c.returnCredits(1)
	}
	// No room (or closed): whatever accumulated since our transition is
	// lost, and the Notifier is idle again.
	lost := n.state.Swap(0) & notifierCountMask
	c.lose(lost)
	return false
}

// taken implements eventHook.taken: it fills in the event from the
// Notifier's merged state and makes the Notifier idle.
func (n *Notifier) taken(ev *Event) {
	st := n.state.Swap(0)
	ev.Result = int64(st & notifierCountMask)
	ev.Op |= uint16(st >> notifierOpShift)
}

// discarded implements eventHook.discarded; taken has already reset the
// Notifier.
func (n *Notifier) discarded(*Event) {}
