//go:build linux

package ring

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Fault is a kind of malformed ring entry a hostile peer writes. Peer's
// InjectFault writes them, so tests of the stack side (here, in
// integration/ and with the ringtest package) attack it the way a
// misbehaving process could, through the shared memory itself.
type Fault int

// The faults, each rejected by the stack side and counted in the Stats
// field Counter names.
const (
	FaultOffsetOutside    Fault = iota // descriptor offset far past the segment (BadOffset)
	FaultOffsetControl                 // offset into the control area: indices, rings (BadOffset)
	FaultOffsetWraps                   // offset+length past 2^64 (BadOffset)
	FaultFramePastPool                 // a frame index past the last frame (BadOffset)
	FaultOtherSide                     // a frame of the stack side's own partition (NotOwned)
	FaultLengthOver                    // length over the frame size (BadLength)
	FaultOffsetLengthOver              // inside a frame, but running past its end (BadLength)
	FaultLengthZero                    // length zero (BadLength)
	FaultFlags                         // reserved flags set (BadFlags)
	FaultReused                        // a frame published again before it came back (NotOwned)
	FaultForgedReturn                  // a stack frame "returned" as it was never lent (NotOwned)
	FaultIndexOverrun                  // the avail ring's head jumps past the ring (IndexOverrun)
	FaultIndexBackwards                // the avail ring's head moves backwards (IndexBackwards)
	FaultUsedTailOverrun               // the used ring's tail jumps past the stack's head (IndexOverrun)
	NumFaults                          // the number of kinds
)

var faultNames = [NumFaults]string{
	"offset outside the segment", "offset in the control area", "offset+length wraps",
	"frame index past the pool", "the stack side's own frame", "length over the frame",
	"offset+length over the frame", "zero length", "reserved flags", "frame reused before it came back",
	"forged return of a frame never lent", "avail head past the ring", "avail head backwards",
	"used tail past the head",
}

func (f Fault) String() string {
	if f < 0 || f >= NumFaults {
		return fmt.Sprintf("Fault(%d)", int(f))
	}
	return faultNames[f]
}

// Counter returns the counter in s that the stack side raises when it
// rejects f.
func (f Fault) Counter(s Stats) uint64 {
	switch f {
	case FaultOffsetOutside, FaultOffsetControl, FaultOffsetWraps, FaultFramePastPool:
		return s.BadOffset
	case FaultOtherSide, FaultReused, FaultForgedReturn:
		return s.NotOwned
	case FaultLengthOver, FaultOffsetLengthOver, FaultLengthZero:
		return s.BadLength
	case FaultFlags:
		return s.BadFlags
	case FaultIndexBackwards:
		return s.IndexBackwards
	case FaultIndexOverrun, FaultUsedTailOverrun:
		return s.IndexOverrun
	}
	return 0
}

// ErrUnknownFault is InjectFault's answer to a Fault it does not know.
var ErrUnknownFault = errors.New("ring: unknown fault")

// faultWait bounds how long InjectFault waits for the stack side to take
// everything published before it moves the head backwards.
const faultWait = 5 * time.Second

// InjectFault writes one entry of kind f into the rings, as a hostile peer
// would, between the frames the peer sends (a stack on Endpoint keeps
// working). Faults in ring indices must stay visible until the stack side
// has looked: InjectFault calls seen, with the peer's transmit side held,
// which should return once the stack side counted the fault (or gave up
// waiting), and then restores the true index. Other faults leave nothing
// to restore; seen, if not nil, is called after they are written. It
// returns ErrPeerGone after the session ended.
func (p *Peer) InjectFault(f Fault, seen func()) error {
	if seen == nil {
		seen = func() {}
	}
	c := p.ch
	lay := c.lay
	frameOff := func(i uint32) uint64 { return uint64(lay.frameOff(i)) }
	bad := desc{len: 60}
	switch f {
	case FaultOffsetOutside:
		bad.off = 1 << 40
	case FaultOffsetControl:
		bad.off, bad.len = offStackWait, 4
	case FaultOffsetWraps:
		bad.off = ^uint64(0) - 8
	case FaultFramePastPool:
		bad.off = frameOff(2 * lay.frames)
	case FaultOtherSide:
		bad.off = frameOff(c.thrs)
	case FaultLengthOver:
		bad.off, bad.len = frameOff(c.mine), lay.frameSize+1
	case FaultOffsetLengthOver:
		bad.off, bad.len = frameOff(c.mine)+100, lay.frameSize-99
	case FaultLengthZero:
		bad.off, bad.len = frameOff(c.mine), 0
	case FaultFlags:
		bad.off, bad.flags = frameOff(c.mine), 1
	case FaultForgedReturn:
		return p.forgeReturn(seen)
	case FaultReused, FaultIndexOverrun, FaultIndexBackwards, FaultUsedTailOverrun:
		return p.injectLocked(f, seen)
	default:
		return fmt.Errorf("%w: %d", ErrUnknownFault, int(f))
	}
	// A bad descriptor takes a slot on the avail ring and lends nothing:
	// the stack side skips it, and no frame of ours is lost. It needs a
	// slot no frame of ours may be waiting in, and must be gone before
	// honest sends resume (see extraLocked).
	c.txMu.Lock()
	if c.dead || p.endpoint.ch.Load() == nil {
		c.txMu.Unlock()
		return ErrPeerGone
	}
	err := c.extraLocked(1, func() { c.publishLocked(bad) })
	c.txMu.Unlock()
	if err != nil {
		return err
	}
	seen()
	return nil
}

// awaitLocked waits, at most faultWait, until cond holds, and otherwise
// returns an error saying what the stack side did not do. The stack side
// may be asleep with a kick owed to it: a lazy flush while our receive
// loop ran leaves the kick to that loop (flushLocked), which pays it
// before it sleeps (settle), under txMu, which we hold. So pay it first,
// or the stack side sleeps through the whole wait. A kick it did not need
// costs it one early wake-up. One kick is not always enough: the stack
// side takes returns back when it wakes only if none of its senders holds
// its transmit lock (tryReclaim), so while it is seen asleep with cond
// still false it is kicked again, at most every rekick.
func (c *channel) awaitLocked(what string, cond func() bool) error {
	c.kickOwed = false
	c.kick()
	kicked := time.Now()
	deadline := kicked.Add(faultWait)
	for !cond() {
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("ring: stack side %s for %v (head %d, its tail %d, asleep %d)",
				what, faultWait, c.outHead, c.outAvail.tail.Load(), c.peerWait.Load())
		}
		if c.peerWait.Load() != 0 && now.Sub(kicked) > rekick {
			c.kick()
			kicked = now
		}
		runtime.Gosched()
	}
	return nil
}

// rekick is how often awaitLocked kicks again a stack side it sees asleep.
const rekick = time.Millisecond

// takenLocked reports whether the stack side has taken everything we
// published on the avail ring.
func (c *channel) takenLocked() bool { return c.outAvail.tail.Load() == c.outHead }

// extraLocked runs publish, which puts n descriptors on the avail ring,
// some beyond those of our lent frames (bad ones, or one published twice).
// Honest sends rely on frames ≤ slots to publish without looking at the
// stack side's tail: a free frame always has a slot. Extra descriptors
// break that while they wait in the ring: a head more than a ring ahead
// of the stack side's tail is refused as an overrun (counted, though no
// fault was meant), and the slot written over held a frame the stack side
// would never see nor return. So wait for room before publishing, and
// until the stack side has taken them before returning (txMu held, so
// nothing else is published meanwhile).
func (c *channel) extraLocked(n uint32, publish func()) error {
	room := func() bool { return c.outHead+n-c.outAvail.tail.Load() <= c.lay.slots }
	if err := c.awaitLocked("made no room", room); err != nil {
		return err
	}
	publish()
	return c.awaitLocked("took nothing", c.takenLocked)
}

// publishLocked puts d on our avail ring, bypassing every check.
func (c *channel) publishLocked(d desc) {
	putDesc(c.outAvail.slot(c.outHead), d)
	c.outHead++
	c.outAvail.head.Store(c.outHead)
}

// injectLocked writes the faults that need the transmit side held.
func (p *Peer) injectLocked(f Fault, seen func()) error {
	c := p.ch
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.dead || p.endpoint.ch.Load() == nil {
		return ErrPeerGone
	}
	// The stack side counts a bad index value once, however often it sees
	// it: make each injection's value new.
	c.faultSeq++
	seq := c.faultSeq
	switch f {
	case FaultReused:
		// A frame filled with zeros (the stack side drops it: not for its
		// address), published, then published again at once: the second
		// comes while the stack side has not handed it back to us.
		free := func() bool { c.reclaimLocked(); return len(c.free) > 0 }
		if err := c.awaitLocked("returned no frame", free); err != nil {
			return fmt.Errorf("%w: %v", ErrNoFrame, err)
		}
		err := c.extraLocked(2, func() {
			_ = c.sendLocked(60, func(b []byte) { clear(b) }) // a frame is free
			c.outPending = false
			c.publishLocked(getDesc(c.outAvail.slot(c.outHead - 1)))
		})
		if err != nil {
			return err
		}
		seen()
	case FaultIndexOverrun:
		c.outAvail.head.Store(c.outHead + c.lay.slots + 1 + seq%c.lay.slots)
		c.kick()
		seen()
		c.outAvail.head.Store(c.outHead)
		c.kick()
	case FaultIndexBackwards:
		// Only backwards from what the stack side has seen counts: wait
		// until it has taken everything published.
		if err := c.awaitLocked("took nothing", c.takenLocked); err != nil {
			return err
		}
		c.outAvail.head.Store(c.outHead - 1 - seq%c.lay.slots)
		c.kick()
		seen()
		c.outAvail.head.Store(c.outHead)
		c.kick()
	case FaultUsedTailOverrun:
		// Our tail on the ring the stack side returns our frames on, past
		// its head; it looks when it returns a frame, so send one. First
		// let it see our true tail (it reads it when it returns a frame):
		// a frame we took back since it last looked would otherwise still
		// be ours in its eyes, and our bogus tail would hide that.
		free := func() bool { c.reclaimLocked(); return len(c.free) >= 2 }
		if err := c.awaitLocked("returned no frames", free); err != nil {
			return fmt.Errorf("%w: %v", ErrNoFrame, err)
		}
		if err := c.sendLocked(60, func(b []byte) { clear(b) }); err != nil {
			return err
		}
		c.outPending = false
		if err := c.awaitLocked("took nothing", c.takenLocked); err != nil {
			return err
		}
		c.outUsed.tail.Store(c.outUsedTl + c.lay.slots + 1 + seq%c.lay.slots)
		if err := c.sendLocked(60, func(b []byte) { clear(b) }); err != nil { // a free frame is left: no reclaim
			c.outUsed.tail.Store(c.outUsedTl)
			return err
		}
		c.outPending = false
		c.kick()
		seen()
		c.outUsed.tail.Store(c.outUsedTl)
	}
	return nil
}

// forgeReturn "returns" a frame of the stack side's as it never lent it,
// on the used ring the stack side reclaims from (when it transmits or its
// receive loop wakes): its last frame, at an offset inside it where no
// loan starts. Which frames are lent the peer cannot know (the stack side
// may lend any free one at any moment), so a forgery at the frame's start
// of a frame that happened to be lent would be taken as its return (not
// counted, and the frame reused while the peer still holds it); one
// elsewhere is refused whatever the frame's state.
//
// The forgery takes a used-ring slot no frame pays for. Honest returns
// rely on frames ≤ slots to always find one, so it waits for room and,
// holding rxMu (no honest return meanwhile), until the stack side has
// taken it, before it returns; as extraLocked on the avail ring.
func (p *Peer) forgeReturn(seen func()) error {
	c := p.ch
	c.rxMu.Lock()
	defer c.rxMu.Unlock()
	c.txMu.Lock() // for kicks: after teardown (dead) an eventfd may be closed
	defer c.txMu.Unlock()
	if c.dead || p.endpoint.ch.Load() == nil {
		return ErrPeerGone
	}
	room := func() bool { return c.inUsedHd-c.takenBack() <= c.inUsed.mask }
	if err := c.awaitLocked("took back no frame", room); err != nil {
		return err
	}
	i := c.thrs + c.lay.frames - 1
	putDesc(c.inUsed.slot(c.inUsedHd), desc{off: uint64(c.lay.frameOff(i)) + 64, len: 60})
	// The stack side's tail passing this slot ends our hold on frame i,
	// as a genuine return would. Harmless: a genuine return of i lies in
	// an earlier slot (rxMu keeps us from writing one until the stack
	// side has passed this one), and earlier slots are passed first.
	c.usedFrame[c.inUsedHd&c.inUsed.mask] = i
	c.inUsedHd++
	c.inUsed.head.Store(c.inUsedHd)
	if err := c.awaitLocked("took nothing back", func() bool { return c.takenBack() == c.inUsedHd }); err != nil {
		return err
	}
	seen()
	return nil
}
