package dmapool

import (
	"fmt"
	"sync"
)

// Buf is a handle to reserved pool memory: a small value (no per-buffer
// heap object) naming a region, an offset, a length and the generation of
// the reservation's first slot. Copying a Buf copies the handle, not the
// memory; all copies name the same bytes and only one Release succeeds.
//
// A Buf is valid from Reserve until it is released or consumed (Split and
// Trim consume the handle they are called on and return new ones). A
// handle that is not valid (the zero Buf, one already released or
// consumed, a forged one) makes every method return ErrInvalidBuffer or
// nil; it never panics and never disturbs the pool. Handles may move
// between goroutines freely; the bytes are the owner's to synchronize.
//
// Parts. Split and Trim divide a reservation into parts, each a handle of
// its own with its own Release. A reservation's slots return to the pool
// when the last of its parts is released; bytes that Trim cut away are no
// part of anything and return with the rest. The first Split or Trim of a
// reservation costs a mutex and a small heap record; later operations on
// its parts take the mutex (striped by reservation) too, including Bytes
// and Valid.
type Buf struct {
	p   *Pool
	id  uint64 // the reservation: generation, region and head slot; layout below
	off uint32 // byte offset of this part in the region
	n   uint32 // bytes in this part
}

// Buf.id layout: the reservation's identity, shared by all its parts.
//
//	bits    field   meaning
//	63      -       zero in handles the pool makes
//	62..34  gen     generation of the head slot when reserved
//	33..24  region  index into the pool's regions (< MaxRegions)
//	23..0   head    first slot of the reservation (< MaxRegionSize/MinSlotSize)
const (
	idHeadBits   = 24
	idRegionBits = 10
	idGenShift   = idHeadBits + idRegionBits
)

func newBuf(p *Pool, gen uint32, region int, head uint32, n uint32) Buf {
	return Buf{
		p:   p,
		id:  uint64(gen)<<idGenShift | uint64(region)<<idHeadBits | uint64(head),
		off: head << p.shift,
		n:   n,
	}
}

func (b Buf) head() uint32   { return uint32(b.id) & (1<<idHeadBits - 1) }
func (b Buf) region() uint32 { return uint32(b.id>>idHeadBits) & (1<<idRegionBits - 1) }

// gen is the generation field; above genMask means forged.
func (b Buf) gen() uint32 { return uint32(b.id >> idGenShift) }

// Bytes returns the buffer's memory, len and cap equal to Len, or nil if b
// is not valid. The slice is valid until b is released or consumed; the
// pool never moves it and the garbage collector never scans it.
func (b Buf) Bytes() []byte {
	p := b.p
	if p == nil {
		return nil
	}
	rs := p.regions.Load()
	if rs == nil || b.region() >= uint32(len(rs.list)) {
		return nil
	}
	r := rs.list[b.region()]
	if b.head() >= uint32(r.nslots) || b.gen() > genMask {
		return nil
	}
	v := r.words[b.head()].Load()
	if v == headWord(b.gen(), b.n) && b.off == b.head()<<p.shift {
		return r.mem[b.off : b.off+b.n : b.off+b.n]
	}
	if wordState(v) != stateSplit || p.livePart(r, b) != nil {
		return nil
	}
	return r.mem[b.off : b.off+b.n : b.off+b.n]
}

// Pool returns the pool b was reserved from, nil for the zero Buf. Like
// Len it does not check validity: a released or forged handle names a pool
// too (use Pool.Validate to ask whether b is live there).
func (b Buf) Pool() *Pool { return b.p }

// Len is the handle's length in bytes. It does not check validity (see
// Valid); the zero Buf has length 0.
func (b Buf) Len() int { return int(b.n) }

// Valid returns nil if b is a live handle, else an error wrapping
// ErrInvalidBuffer that says why. It cannot tell which pool a forged
// handle meant; Pool.Validate also rejects handles of another pool.
func (b Buf) Valid() error {
	p := b.p
	if p == nil {
		return fmt.Errorf("dmapool: zero Buf (no pool): %w", ErrInvalidBuffer)
	}
	r, err := p.slotOf(b)
	if err != nil {
		return err
	}
	v := r.words[b.head()].Load()
	switch wordState(v) {
	case stateHead:
		return p.matchHead(b, v)
	case stateSplit:
		return p.livePart(r, b)
	}
	return p.invalid(b, r, v)
}

// Release returns the buffer (or this part of it) to its pool. Afterwards
// b and every copy of it are invalid and the memory may be handed to
// someone else at once. Releasing an invalid handle returns an error
// wrapping ErrInvalidBuffer and changes nothing.
func (b Buf) Release() error {
	if b.p == nil {
		return fmt.Errorf("dmapool: release: zero Buf (no pool): %w", ErrInvalidBuffer)
	}
	return b.p.release(b)
}

// Split consumes b and returns two parts: head, the first n bytes, and
// tail, the rest. 0 < n < b.Len(). Each part is released on its own; see
// Buf.
func (b Buf) Split(n int) (head, tail Buf, err error) {
	err = b.reshape(func(parts []span, i int) ([]span, error) {
		if n <= 0 || n >= int(b.n) {
			return nil, fmt.Errorf("dmapool: split %d-byte buffer at %d: %w", b.n, n, ErrSize)
		}
		head, tail = b, b
		head.n = uint32(n)
		tail.off += uint32(n)
		tail.n -= uint32(n)
		parts[i] = span{head.off, head.n}
		return append(parts, span{tail.off, tail.n}), nil
	})
	if err != nil {
		return Buf{}, Buf{}, err
	}
	return head, tail, nil
}

// Trim consumes b and returns the part of it n bytes long starting off
// bytes in: 0 <= off, 0 < n, off+n <= b.Len(). Trimming to the whole of b
// returns b itself. The bytes cut away return to the pool with the rest of
// the reservation.
func (b Buf) Trim(off, n int) (Buf, error) {
	if off == 0 && n == int(b.n) {
		if err := b.Valid(); err != nil {
			return Buf{}, err
		}
		return b, nil
	}
	var out Buf
	err := b.reshape(func(parts []span, i int) ([]span, error) {
		if off < 0 || n <= 0 || off > int(b.n) || n > int(b.n)-off {
			return nil, fmt.Errorf("dmapool: trim %d-byte buffer to %d bytes at %d: %w", b.n, n, off, ErrSize)
		}
		out = b
		out.off += uint32(off)
		out.n = uint32(n)
		parts[i] = span{out.off, out.n}
		return parts, nil
	})
	if err != nil {
		return Buf{}, err
	}
	return out, nil
}

// Split table. A reservation whose head word says stateSplit has an entry
// here listing its live parts; the entry and the word change together,
// under the stripe's mutex.
const nStripes = 64

type span struct{ off, n uint32 } // a live part: region offset and length

type partSet struct {
	gen   uint32 // the reservation's generation
	parts []span // live parts: disjoint, unordered, never empty
}

type stripe struct {
	mu    sync.Mutex
	parts map[uint64]*partSet // +checklocks:mu; key: the region and head bits of Buf.id
	_     [cacheLine - 16]byte
}

func partKey(b Buf) uint64 { return b.id & (1<<idGenShift - 1) }

func (p *Pool) stripeOf(key uint64) *stripe {
	return &p.stripes[(key*0x9E3779B97F4A7C15)>>(64-6)]
}

// findPartLocked returns the index of b's part in the set, or an error.
func findPartLocked(ps *partSet, b Buf) (int, error) {
	if ps == nil || ps.gen != b.gen() {
		return -1, fmt.Errorf("dmapool: buffer released (reservation at slot %d is gone): %w", b.head(), ErrInvalidBuffer)
	}
	for i, s := range ps.parts {
		if s.off == b.off && s.n == b.n {
			return i, nil
		}
	}
	return -1, fmt.Errorf("dmapool: part of %d bytes at %d is not live (released, consumed by Split/Trim, or forged): %w",
		b.n, b.off, ErrInvalidBuffer)
}

// livePart checks that b is a live part of a split reservation in r.
func (p *Pool) livePart(r *region, b Buf) error {
	key := partKey(b)
	st := p.stripeOf(key)
	st.mu.Lock()
	defer st.mu.Unlock()
	v := r.words[b.head()].Load()
	if wordState(v) != stateSplit {
		if wordState(v) == stateHead {
			return p.matchHead(b, v)
		}
		return p.invalid(b, r, v)
	}
	_, err := findPartLocked(st.parts[key], b)
	return err
}

// reshape replaces b's part with what edit returns (edit gets the part list
// and b's index in it). A whole reservation becomes a split one first.
func (b Buf) reshape(edit func(parts []span, i int) ([]span, error)) error {
	p := b.p
	if p == nil {
		return fmt.Errorf("dmapool: zero Buf (no pool): %w", ErrInvalidBuffer)
	}
	r, err := p.slotOf(b)
	if err != nil {
		return err
	}
	key := partKey(b)
	st := p.stripeOf(key)
	st.mu.Lock()
	defer st.mu.Unlock()
	w := &r.words[b.head()]
	for {
		v := w.Load()
		switch wordState(v) {
		case stateHead:
			if err := p.matchHead(b, v); err != nil {
				return err
			}
			parts, err := edit([]span{{b.off, b.n}}, 0)
			if err != nil {
				return err
			}
			if !w.CompareAndSwap(v, v&^stateMask|stateSplit<<stateShift) {
				continue // released under us: look again
			}
			if st.parts == nil {
				st.parts = make(map[uint64]*partSet)
			}
			st.parts[key] = &partSet{gen: b.gen(), parts: parts}
			return nil
		case stateSplit:
			ps := st.parts[key]
			i, err := findPartLocked(ps, b)
			if err != nil {
				return err
			}
			parts, err := edit(append([]span(nil), ps.parts...), i)
			if err != nil {
				return err
			}
			ps.parts = parts
			return nil
		default:
			return p.invalid(b, r, v)
		}
	}
}

// releasePart releases one part of a split reservation, and the
// reservation with its last part.
func (p *Pool) releasePart(r *region, b Buf) error {
	key := partKey(b)
	st := p.stripeOf(key)
	st.mu.Lock()
	w := &r.words[b.head()]
	v := w.Load()
	if wordState(v) != stateSplit {
		st.mu.Unlock()
		// Changed between the caller's look and the lock: start over.
		return p.releaseSlow(b)
	}
	ps := st.parts[key]
	i, err := findPartLocked(ps, b)
	if err != nil {
		st.mu.Unlock()
		return err
	}
	last := len(ps.parts) - 1
	ps.parts[i] = ps.parts[last]
	ps.parts = ps.parts[:last]
	if last > 0 {
		st.mu.Unlock()
		return nil
	}
	delete(st.parts, key)
	w.Store(v&^stateMask | stateBusy<<stateShift) // ours now: split words change only under st.mu
	st.mu.Unlock()
	p.freeReservation(r, int(b.head()), wordLen(v), b.gen())
	return nil
}
