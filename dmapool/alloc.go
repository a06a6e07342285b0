package dmapool

import (
	"math/bits"
	"sync/atomic"
)

// The allocator.
//
// Every slot has one atomic 64-bit word. Its top bits say whether the slot
// is free, widened so that the same word also carries the slot's generation
// and the reservation's length: one compare-and-swap then claims a slot and
// stamps it, and one releases it and checks the handle, with no lock and no
// second word to keep in step. (A one-bit-per-slot bitmap plus a separate
// generation word costs two more atomic operations per reserve+release
// pair, which would double the pair's atomic operations.)
//
// Slot word layout:
//
//	bits    field  meaning
//	63..61  state  stateFree .. stateTomb, below
//	60..32  gen    generation: bumped when a head or split word returns to
//	               free, so a handle from an earlier reservation of the slot
//	               no longer matches
//	31..0   len    bytes reserved (head and split words); 0 otherwise
//
// Runs. A reservation of n bytes takes k = ceil(n / slot size) contiguous
// slots of one region. Its first slot (the head) holds stateHead or
// stateSplit, the generation its handles carry, and n. When k > 1 the run
// is also marked in the region's cover bitmap, one bit per slot: the run
// claims its k bits with one atomic OR per 64 slots instead of one atomic
// per slot; the words of the other k-1 slots stay free. The two claims
// exclude each other like Dekker's algorithm: a single-slot claim
// compare-and-swaps the word, then reads the cover bit, and backs off if it
// is set; a run sets its cover bits, then reads the words, and backs off if
// one is taken. Sequentially consistent atomics make at least one of two
// racing claims see the other.
//
// Slots are grouped by 64. Each region has a summary bitmap, one bit per
// group, set when the group looks full, so that searches skip full groups.
// The full-group protocol keeps the summary honest without a lock:
//  1. a reserver that finds no free slot in a group sets its bit, then scans
//     the group once more, and clears the bit again if it finds a free slot;
//  2. a releaser frees its slots first, then reads the bit and clears it if
//     set.
//
// One of the two always sees the other, so once concurrent operations
// finish, no group with a free slot is marked full.
//
// Scaling across goroutines: each goroutine starts its search at a home
// group picked by hashing its stack address (stackHint), so goroutines on
// different cores work on different cache lines and the common case writes
// no shared memory at all. A failed compare-and-swap in the home group (two
// goroutines hashed to one group) bumps a salt that moves every home.
const (
	stateShift = 61
	stateMask  = uint64(7) << stateShift
	genShift   = 32
	genBits    = 29
	genMask    = 1<<genBits - 1
	lenMask    = 1<<32 - 1

	stateFree  = 0 // may be claimed (unless its cover bit is set)
	stateHead  = 1 // head of a live reservation that is one part, the whole of it
	stateSplit = 2 // head of a live reservation whose parts are in the split table
	stateBusy  = 3 // head of a reservation being released
	stateTomb  = 4 // taken by Close; Close gives it back if it fails

	groupShift = 6
	groupSize  = 1 << groupShift
)

func wordState(w uint64) uint64 { return w >> stateShift }
func wordGen(w uint64) uint32   { return uint32(w>>genShift) & genMask }
func wordLen(w uint64) uint32   { return uint32(w & lenMask) }

// headWord is the word of a head slot of generation gen reserved for n
// bytes. gen must be at most genMask.
func headWord(gen, n uint32) uint64 {
	return stateHead<<stateShift | uint64(gen)<<genShift | uint64(n)
}

// freeWord is the word of a free slot of generation gen (any value; it wraps).
func freeWord(gen uint32) uint64 {
	return uint64(gen&genMask) << genShift
}

// region is one mapping and its slots.
type region struct {
	// Immutable after the region is published.
	index  int
	base   int64 // offset of the region in the pool's address space
	nslots int
	mem    []byte // len == nslots << shift; unmapped by a successful Close
	m      *mapping

	words []atomic.Uint64 // one per slot; layout above
	cover []atomic.Uint64 // one bit per slot, word g for group g: slot belongs to a run
	full  []atomic.Uint64 // summary: bit g set = group g looks full
}

func newRegion(index int, base int64, m *mapping, shift uint) *region {
	n := len(m.mem) >> shift
	groups := (n + groupSize - 1) >> groupShift
	return &region{
		index:  index,
		base:   base,
		nslots: n,
		mem:    m.mem[:n<<shift],
		m:      m,
		words:  make([]atomic.Uint64, n),
		cover:  make([]atomic.Uint64, groups),
		full:   make([]atomic.Uint64, (groups+63)/64),
	}
}

func (r *region) groups() int { return (r.nslots + groupSize - 1) >> groupShift }

func (r *region) isFull(g int) bool {
	return r.full[g>>6].Load()&(1<<(g&63)) != 0
}

func (r *region) setFull(g int)   { r.full[g>>6].Or(1 << (g & 63)) }
func (r *region) clearFull(g int) { r.full[g>>6].And(^(uint64(1) << (g & 63))) }

// unmarkFull is step 2 of the full-group protocol for slots [s, s+k), just
// freed.
func (r *region) unmarkFull(s, k int) {
	for g := s >> groupShift; g <= (s+k-1)>>groupShift; g++ {
		if r.isFull(g) {
			r.clearFull(g)
		}
	}
}

// takeOne claims one free slot of group g as the head of an n-byte
// reservation (n <= slot size). It returns the slot and its generation.
// contended reports a lost compare-and-swap. When the group has no free
// slot it marks it full (step 1 of the full-group protocol) and reports
// !ok.
func (r *region) takeOne(g int, n uint32) (slot int, gen uint32, contended, ok bool) {
	lo := g << groupShift
	words := r.words[lo:min(lo+groupSize, r.nslots)]
	for pass := 0; pass < 2; pass++ {
		for i := range words {
			cov := r.cover[g].Load()
			if cov>>i&1 != 0 {
				continue
			}
			v := words[i].Load()
			if wordState(v) != stateFree {
				continue
			}
			if !words[i].CompareAndSwap(v, v|stateHead<<stateShift|uint64(n)) {
				contended = true
				continue
			}
			if r.cover[g].Load()>>i&1 != 0 {
				// A run claimed it meanwhile (the Dekker check): give it back.
				words[i].CompareAndSwap(v|stateHead<<stateShift|uint64(n), v)
				contended = true
				continue
			}
			if pass == 1 {
				r.clearFull(g) // we marked it; it had room after all
			}
			return lo + i, wordGen(v), contended, true
		}
		if pass == 0 {
			r.setFull(g)
		}
	}
	return 0, 0, contended, false
}

// free reports whether slot i is free: its word free and no run covering it.
func (r *region) free(i int) bool {
	return wordState(r.words[i].Load()) == stateFree && r.cover[i>>groupShift].Load()>>(i&(groupSize-1))&1 == 0
}

// firstCovered is the first slot of [s, s+k) whose cover bit is set, or -1.
func (r *region) firstCovered(s, k int) int {
	for g := s >> groupShift; g <= (s+k-1)>>groupShift; g++ {
		if m := r.cover[g].Load() & coverMask(g, s, k); m != 0 {
			return g<<groupShift + bits.TrailingZeros64(m)
		}
	}
	return -1
}

// coverRun sets the cover bits of slots [s, s+k). It fails, changing
// nothing, if another run holds any of them.
func (r *region) coverRun(s, k int) bool {
	for g := s >> groupShift; g <= (s+k-1)>>groupShift; g++ {
		m := coverMask(g, s, k)
		if old := r.cover[g].Or(m); old&m != 0 {
			r.cover[g].And(^(m &^ old)) // only the bits this call set
			for h := s >> groupShift; h < g; h++ {
				r.cover[h].And(^coverMask(h, s, k))
			}
			// The bits set for a moment may have made a single-slot search
			// mark a group full: step 2 of the full-group protocol.
			r.unmarkFull(s, min(k, (g+1)<<groupShift-s))
			return false
		}
	}
	return true
}

// uncoverRun clears the cover bits of slots [s, s+k), then does step 2 of
// the full-group protocol: the slots may have made a search mark their
// groups full.
func (r *region) uncoverRun(s, k int) {
	for g := s >> groupShift; g <= (s+k-1)>>groupShift; g++ {
		r.cover[g].And(^coverMask(g, s, k))
	}
	r.unmarkFull(s, k)
}

// coverMask is the part of [s, s+k) in group g, as bits of cover[g].
func coverMask(g, s, k int) uint64 {
	lo := max(s, g<<groupShift) - g<<groupShift
	hi := min(s+k, (g+1)<<groupShift) - g<<groupShift
	if hi-lo == groupSize {
		return ^uint64(0)
	}
	return (uint64(1)<<(hi-lo) - 1) << lo
}

// testHookCovered, when set by a test, runs in takeRun between setting the
// cover bits and checking the words: the window a racing single-slot claim
// uses.
var testHookCovered func(r *region, s, k int)

// takeRun claims k > 1 contiguous free slots whose first slot lies in
// [from, to), for an n-byte reservation, and returns the head slot and its
// generation: 1. find k free slots; 2. set their cover bits; 3. check that
// no single-slot claim took one meanwhile; 4. publish the head word.
func (r *region) takeRun(from, to, k int, n uint32) (slot int, gen uint32, ok bool) {
	i := from
	for i < to && i+k <= r.nslots {
		if i&(groupSize-1) == 0 && r.isFull(i>>groupShift) {
			i += groupSize
			continue
		}
		if !r.free(i) {
			i++
			continue
		}
		j := i + 1
		for j < i+k && wordState(r.words[j].Load()) == stateFree {
			j++
		}
		if j < i+k {
			i = j + 1
			continue
		}
		if c := r.firstCovered(i, k); c >= 0 {
			i = c + 1
			continue
		}
		if !r.coverRun(i, k) {
			i++
			continue
		}
		if testHookCovered != nil {
			testHookCovered(r, i, k)
		}
		j = i
		for j < i+k && wordState(r.words[j].Load()) == stateFree {
			j++
		}
		if j < i+k {
			r.uncoverRun(i, k)
			i = j + 1
			continue
		}
		v := r.words[i].Load()
		if wordState(v) != stateFree || !r.words[i].CompareAndSwap(v, v|stateHead<<stateShift|uint64(n)) {
			r.uncoverRun(i, k)
			i++
			continue
		}
		return i, wordGen(v), true
	}
	return 0, 0, false
}

// freeSlots returns slots [s, s+k) to the pool. The caller owns them: the
// head word is stateBusy (set by the releasing compare-and-swap) with
// generation gen. The head becomes free last, with the next generation.
func (r *region) freeSlots(s, k int, gen uint32) {
	r.words[s].Store(freeWord(gen + 1))
	if k > 1 {
		r.uncoverRun(s, k)
	}
	r.unmarkFull(s, k)
}

// inUse walks the words: slots reserved, and live reservations.
func (r *region) inUse() (slots, bufs int) {
	for i := range r.words {
		switch wordState(r.words[i].Load()) {
		case stateHead, stateSplit:
			slots++
			bufs++
		case stateBusy:
			slots++
		case stateFree, stateTomb:
			if r.cover[i>>groupShift].Load()>>(i&(groupSize-1))&1 != 0 {
				slots++
			}
		}
	}
	return slots, bufs
}

// fullSlots is a lower bound on the slots in use: those of groups marked
// full.
func (r *region) fullSlots() int {
	n := 0
	for i := range r.full {
		n += bits.OnesCount64(r.full[i].Load())
	}
	n <<= groupShift
	if last := r.groups() - 1; last >= 0 && r.isFull(last) {
		n -= groupSize - (r.nslots - last<<groupShift)
	}
	return n
}

// regionSet is an immutable snapshot of the pool's regions; Grow publishes
// a new one.
type regionSet struct {
	list     []*region
	first    []int // first[i]: global index of region i's first group
	groups   int   // groups in all regions
	maxSlots int   // slots of the largest region
	size     int64 // bytes in all regions
}

func (rs *regionSet) with(r *region) *regionSet {
	n := &regionSet{
		list:     append(append([]*region(nil), rs.list...), r),
		first:    append(append([]int(nil), rs.first...), rs.groups),
		groups:   rs.groups + r.groups(),
		maxSlots: max(rs.maxSlots, r.nslots),
		size:     rs.size + int64(len(r.mem)),
	}
	return n
}

// home maps a 32-bit hash to a region and a group in it.
func (rs *regionSet) home(h uint32) (ri, g int) {
	gi := int(uint64(h) * uint64(rs.groups) >> 32)
	for ri = len(rs.list) - 1; rs.first[ri] > gi; ri-- {
	}
	return ri, gi - rs.first[ri]
}

// nextGroup is the first group >= g of r not marked full, or -1.
func (r *region) nextGroup(g int) int {
	n := r.groups()
	for g < n {
		w := ^r.full[g>>6].Load() >> (g & 63)
		if w != 0 {
			g += bits.TrailingZeros64(w)
			if g < n {
				return g
			}
			return -1
		}
		g = (g | 63) + 1
	}
	return -1
}
