package evchan

import (
	"math/bits"
	"sync/atomic"
)

// The ring is a bounded multi-producer, multi-consumer queue of events in
// which each side claims a run of positions with one compare-and-swap and
// publishes the whole run with one store. Positions grow without bound (a
// 63-bit counter outlives the process); the slot of position pos is
// pos & mask, and its lap is pos >> log2(capacity).
//
// Counters, each on its own cache line:
//
//	released ≤ head ≤ tail ≤ released + capacity
//
//	tail      producers claim [tail, tail+k) by CAS; bit 63 is closedBit
//	head      consumers claim [head, head+k) by CAS, only over published runs
//	released  positions below it are copied out and free for the next lap
//
// Per-slot words, meaningful only at the first position of a run:
//
//	run  published by the producer when its run [pos, pos+k) is written
//	rel  published by the consumer when its run [pos, pos+k) is copied out
//
// Both words encode the run's position and length in one atomic value, so
// a reader needs no other field and a word left over from an older lap can
// never be mistaken for a current one:
//
//	63                          L+1 L                            0
//	+------------------------------+------------------------------+
//	|          lap(pos) + 1        |         k (1..capacity)      |
//	+------------------------------+------------------------------+
//	L = log2(capacity); lap(pos) = pos >> L; 0 means "never written"
//
// Producer: claim [pos, pos+k) on tail, write the k events, store run at
// pos. Producers never wait for one another; a run that is published
// before an earlier one simply is not taken until the earlier one is.
//
// Consumer: from head, follow run words while they are published, up to
// len(dst) positions; claim them on head; if the last run was only partly
// taken, publish a run word for its remainder (the consumer owns that
// word: no producer writes inside a claimed run); copy out; store rel at
// the first position; then advance released over every copied-out run
// that starts at released (any consumer may do this for any other, so
// none waits for a slower one) and return the credits for what it
// advanced over.
//
// So a batch costs each side a constant number of atomic read-modify-
// writes however many events it carries. (On amd64 every atomic store is a
// full fence, XCHG; a sequence word per slot, as in Vyukov's bounded
// queue, costs one per event on each side, so a batch would cost in
// proportion to its length.)
//
// Room is the channel's business, not the ring's: Channel.free admits a
// producer only for positions already below released + capacity, because
// credits are returned only as released advances. claim re-checks and
// refuses a run that would overwrite unreleased positions, which only
// overspent credits can cause.
const closedBit = 1 << 63

// cacheLinePad keeps counters written by different sides apart.
type cacheLinePad struct{ _ [64]byte }

// slot is the control part of one ring entry; its Event is at the same
// index of ring.evs.
type slot struct {
	run atomic.Uint64 // see the layout above
	rel atomic.Uint64 // see the layout above
	// hook, when set, is the source object the event at this position
	// belongs to (a coalescing Notifier, a lock); see eventHook. Written
	// by the producer before it publishes run; the consumer calls it and
	// sets it back to nil.
	hook eventHook
}

// eventHook lets a source of this package finish or undo its event when
// the event leaves the ring. Sources attach one per event with enqueue1
// (a pointer already held, so no allocation).
type eventHook interface {
	// taken is called by the consumer that takes ev, before ev is
	// handed out: a Notifier fills in its merged count here.
	taken(ev *Event)
	// discarded is called by Close for an event it discards, after the
	// closer's callback: a lock releases the hold the event carried.
	discarded(ev *Event)
}

type ring struct {
	_ cacheLinePad
	// tail: see the table above.
	tail atomic.Uint64
	_    cacheLinePad
	// head: see the table above.
	head atomic.Uint64
	_    cacheLinePad
	// released: see the table above.
	released atomic.Uint64
	_        cacheLinePad
	// relSeen is a recent value of released, for producers: they check
	// room against it and reload released only when it says there is
	// none, so that the consumers' line holding released is not pulled
	// to the producers' cores on every post. released only grows, so a
	// stale relSeen errs on the side of "full".
	relSeen atomic.Uint64
	_       cacheLinePad

	// mask is capacity-1; capacity is a power of two. Immutable.
	mask uint64
	// lapShift is log2(capacity); run words put lap+1 above bit
	// lapShift. Immutable.
	lapShift uint
	// slots has capacity entries. Immutable slice header.
	slots []slot
	// evs[pos&mask] is written by the producer that claimed pos before it
	// publishes its run, and read by the consumer that claimed pos before
	// it publishes rel. An Event is 64 bytes, so each is one cache line.
	// Immutable slice header.
	evs []Event
}

func (r *ring) init(capacity int) {
	r.mask = uint64(capacity - 1)
	r.lapShift = uint(bits.TrailingZeros(uint(capacity)))
	r.slots = make([]slot, capacity)
	r.evs = make([]Event, capacity)
}

func (r *ring) capacity() uint64 { return r.mask + 1 }

// word encodes a run of k positions starting at pos (layout above).
func (r *ring) word(pos, k uint64) uint64 {
	return (pos>>r.lapShift+1)<<(r.lapShift+1) | k
}

// runAt returns the length of the run whose word w was read from the slot
// of pos, or 0 if w does not describe a run starting at pos.
func (r *ring) runAt(w, pos uint64) uint64 {
	if w>>(r.lapShift+1) != pos>>r.lapShift+1 {
		return 0
	}
	return w & (1<<(r.lapShift+1) - 1)
}

// enqueue publishes evs in order as one run. The caller must hold one
// credit per event (see Channel.granted).
// It returns how many events it published: len(evs), or 0 with ErrClosed
// (closedBit was set) or errOverspent (credits were spent twice: a copied
// Reservation).
func (r *ring) enqueue(evs []Event) (int, error) {
	k := uint64(len(evs))
	pos, err := r.claim(k)
	if err != nil {
		return 0, err
	}
	for i := range k {
		r.evs[(pos+i)&r.mask] = evs[i]
	}
	r.slots[pos&r.mask].run.Store(r.word(pos, k))
	return int(k), nil
}

// enqueue1 is enqueue for one event, without the slice, with an optional
// hook.
func (r *ring) enqueue1(ev *Event, hook eventHook) error {
	pos, err := r.claim(1)
	if err != nil {
		return err
	}
	j := pos & r.mask
	r.evs[j] = *ev
	s := &r.slots[j]
	if hook != nil {
		s.hook = hook
	}
	s.run.Store(r.word(pos, 1))
	return nil
}

// claim claims k positions and returns the first.
func (r *ring) claim(k uint64) (uint64, error) {
	for {
		pos := r.tail.Load()
		if pos&closedBit != 0 {
			return 0, ErrClosed
		}
		// released may have moved past a stale pos: compare without
		// subtracting.
		if pos+k > r.relSeen.Load()+r.capacity() && pos+k > r.releasedNow()+r.capacity() {
			return 0, errOverspent
		}
		if r.tail.CompareAndSwap(pos, pos+k) {
			return pos, nil
		}
	}
}

// releasedNow loads released and refreshes relSeen with it.
func (r *ring) releasedNow() uint64 {
	rel := r.released.Load()
	if seen := r.relSeen.Load(); rel > seen {
		r.relSeen.CompareAndSwap(seen, rel) // lost race: someone stored a value as fresh
	}
	return rel
}

// dequeue takes up to len(dst) published events, oldest first. It returns
// how many it took and how many positions it released for the next lap
// (its own or other consumers'), which frees as many credits. It never
// waits: positions claimed by a producer and not yet published end the
// scan. Each event's hook has been told it was taken; if hooks is not nil
// (Close) the hooks are also stored in hooks[:taken].
func (r *ring) dequeue(dst []Event, hooks []eventHook) (taken, freed int) {
	pos, k := r.claimRun(uint64(len(dst)))
	if k == 0 {
		return 0, 0
	}
	r.copyOut(pos, k, dst, hooks)
	return int(k), int(r.releaseRun(pos, k))
}

// claimRun claims up to limit published positions from head and returns
// the first and how many (0: none published).
func (r *ring) claimRun(limit uint64) (pos, k uint64) {
	var end uint64
	for {
		pos = r.head.Load()
		end = pos
		for end-pos < limit {
			n := r.runAt(r.slots[end&r.mask].run.Load(), end)
			if n == 0 {
				break
			}
			end += n
		}
		if end == pos {
			return 0, 0
		}
		k = min(end-pos, limit)
		if r.head.CompareAndSwap(pos, pos+k) {
			break
		}
	}
	if rest := pos + k; rest < end {
		// We took part of the last run: its remainder is a run of its own.
		r.slots[rest&r.mask].run.Store(r.word(rest, end-rest))
	}
	return pos, k
}

// copyOut copies the k claimed events from pos into dst, drops the ring's
// references to them and tells their hooks (see dequeue).
func (r *ring) copyOut(pos, k uint64, dst []Event, hooks []eventHook) {
	for i := range k {
		j := (pos + i) & r.mask
		e := &r.evs[j]
		dst[i] = *e
		// Drop the references the ring holds so that a consumed event's
		// Data and Buffer are not kept alive by it.
		e.Data, e.Buffer = nil, nil
		if s := &r.slots[j]; s.hook != nil {
			s.hook.taken(&dst[i])
			if hooks != nil {
				hooks[i] = s.hook
			}
			s.hook = nil
		}
	}
}

// releaseRun marks the k copied-out positions from pos free for the next
// lap and returns how many positions released advanced over.
func (r *ring) releaseRun(pos, k uint64) uint64 {
	if r.released.Load() == pos {
		// Every earlier run is released, and nobody else can move
		// released past pos: it needs our rel word, which we skip.
		r.released.Store(pos + k)
		return k + r.advanceReleased()
	}
	// An earlier consumer is still copying: leave our run for it (or for
	// whoever advances released to pos) to release.
	r.slots[pos&r.mask].rel.Store(r.word(pos, k))
	return r.advanceReleased()
}

// advanceReleased moves released over every copied-out run that starts
// there and returns how many positions it moved over.
func (r *ring) advanceReleased() uint64 {
	var freed uint64
	for {
		rel := r.released.Load()
		n := r.runAt(r.slots[rel&r.mask].rel.Load(), rel)
		if n == 0 {
			// Either the run at released is still being copied (its
			// consumer will advance when it publishes rel: it stores rel,
			// then loads released; we loaded released, then rel), or
			// there is nothing more.
			return freed
		}
		if r.released.CompareAndSwap(rel, rel+n) {
			freed += n
		}
	}
}

// ready reports whether a consumer would take at least one event.
func (r *ring) ready() bool {
	h := r.head.Load()
	return r.runAt(r.slots[h&r.mask].run.Load(), h) != 0
}

// queued is the number of positions claimed by producers and not yet
// claimed by consumers (published, or about to be).
func (r *ring) queued() uint64 {
	h := r.head.Load()
	t := r.tail.Load() &^ closedBit
	return t - h // head is loaded first and tail only grows: t >= h
}
