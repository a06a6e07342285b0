package dmapool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// set is the current region set; empty for a zero Pool (not made by New),
// which then behaves as a closed one instead of panicking.
func (p *Pool) set() *regionSet {
	if rs := p.regions.Load(); rs != nil {
		return rs
	}
	return &regionSet{}
}

// regionLimit is MaxRegionSize; tests lower it to exercise splitting
// without mapping gigabytes.
var regionLimit = MaxRegionSize

// cacheLine pads hot fields apart.
const cacheLine = 64

// Pool is a set of off-heap memory regions and the slot allocator over
// them. All methods are safe for concurrent use.
type Pool struct {
	// Immutable after New.
	cfg      Config
	slotSize int
	shift    uint // log2(slotSize)
	poison   bool
	log      *slog.Logger

	// Read on every operation, written rarely: kept on lines of their own.
	_       [cacheLine]byte
	regions atomic.Pointer[regionSet] // replaced (copy on write) by Grow under mu; never shrinks
	closed  atomic.Bool               // set by a successful Close, under mu; never cleared
	waiters atomic.Int32              // goroutines parked in ReserveContext
	salt    atomic.Uint64             // perturbs home groups; bumped on contention
	_       [cacheLine]byte

	failed    atomic.Uint64 // reservations that failed with ErrExhausted
	highWater atomic.Int64  // see Stats.HighWater

	wakeMu sync.Mutex
	wakeCh chan struct{} // +checklocks:wakeMu; closed and replaced by every wake-up

	mu     sync.Mutex // serializes Grow and Close
	warned bool       // +checklocks:mu; the "not pinned" warning was logged

	stripes [nStripes]stripe // split parts, see buf.go
}

// New maps cfg.Size bytes of buffer memory and returns a pool over it.
// The memory is populated now and, unless cfg.Pin is PinOff, locked in RAM.
func New(cfg Config) (*Pool, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      c,
		slotSize: c.SlotSize,
		shift:    uint(log2(c.SlotSize)),
		poison:   c.Poison,
		log:      c.Logger,
		wakeCh:   make(chan struct{}),
	}
	p.regions.Store(&regionSet{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.growLocked(c.Size); err != nil {
		for _, r := range p.regions.Load().list {
			r.m.unmap()
		}
		return nil, err
	}
	return p, nil
}

// Grow maps size more bytes as new regions (the paper's answer to
// unexpected traffic: add buffers), with the pool's Config, and wakes
// goroutines waiting in ReserveContext. Existing buffers are untouched.
func (p *Pool) Grow(size int) error {
	if size <= 0 {
		return fmt.Errorf("dmapool: grow by %d bytes: %w", size, ErrSize)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() || p.slotSize == 0 {
		return fmt.Errorf("dmapool: grow: %w", ErrClosed)
	}
	err := p.growLocked(size)
	p.wake()
	return err
}

// growLocked adds regions of at most MaxRegionSize bytes until size bytes
// are added. Regions mapped before a failure stay.
func (p *Pool) growLocked(size int) error {
	unit := max(p.slotSize, os.Getpagesize())
	for size > 0 {
		chunk := min(size, regionLimit)
		size -= chunk
		rs := p.regions.Load()
		if len(rs.list) >= MaxRegions {
			return fmt.Errorf("dmapool: grow: already %d regions: %w", len(rs.list), ErrSize)
		}
		m, err := mapRegion(roundUp(chunk, unit), &p.cfg)
		if err != nil {
			return err
		}
		if m.pinErr != nil && !p.warned {
			p.warned = true
			p.log.Warn("dmapool: buffer memory is not pinned and may be paged out", "bytes", len(m.mem), "err", m.pinErr)
		}
		r := newRegion(len(rs.list), rs.size, m, p.shift)
		p.regions.Store(rs.with(r))
	}
	return nil
}

// Close unmaps the pool's memory and closes its memfds, if no buffer is
// outstanding. Otherwise it returns an error wrapping ErrBusy that says how
// many are, and the pool stays open and usable. Reservations that run
// while a Close is deciding may fail with ErrExhausted. After a successful
// Close every handle is invalid, Reserve and Grow return ErrClosed, and
// Close returns nil again.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return nil
	}
	rs := p.set()
	for {
		bufs, slots, settled := sweep(rs, p.shift)
		if bufs > 0 {
			unsweep(rs)
			p.wake()
			return fmt.Errorf("dmapool: close: %d buffers (%d slots) still reserved: %w", bufs, slots, ErrBusy)
		}
		if settled {
			break
		}
		// A reservation or release is between its steps; it finishes
		// without blocking.
		runtime.Gosched()
	}
	p.closed.Store(true)
	for _, r := range rs.list {
		r.m.unmap()
	}
	p.wake()
	return nil
}

// sweep is one pass of Close: every free slot becomes a tombstone, which no
// reservation can claim. It counts the live reservations it sees, and
// reports settled when every slot is a tombstone and no run is marked.
func sweep(rs *regionSet, shift uint) (bufs, slots int, settled bool) {
	settled = true
	for _, r := range rs.list {
		for g := range r.cover {
			if r.cover[g].Load() != 0 {
				settled = false // a run claim or release between its steps
			}
		}
		for i := 0; i < r.nslots; i++ {
			w := &r.words[i]
			v := w.Load()
			switch wordState(v) {
			case stateTomb:
				continue
			case stateFree:
				if w.CompareAndSwap(v, v|stateTomb<<stateShift) {
					continue
				}
				i-- // changed under us: look again
				continue
			case stateHead, stateSplit:
				bufs++
				slots += slotsFor(wordLen(v), shift)
			}
			settled = false
		}
	}
	return bufs, slots, settled
}

// slotsFor is the number of slots an n-byte reservation takes.
func slotsFor(n uint32, shift uint) int {
	return int((uint64(n) + 1<<shift - 1) >> shift)
}

// unsweep undoes a failed Close: tombstones become free, and the summary is
// cleared, since reservations during the sweep may have marked groups full
// that have room again.
func unsweep(rs *regionSet) {
	for _, r := range rs.list {
		for i := range r.words {
			if wordState(r.words[i].Load()) == stateTomb {
				r.words[i].And(^stateMask)
			}
		}
		for i := range r.full {
			r.full[i].Store(0)
		}
	}
}

// Reserve reserves n bytes, rounded up to whole slots, and returns the
// handle. The memory is contiguous, lies in one region, and belongs to the
// caller until it releases the handle (or all the parts Split or Trim make
// of it). It never blocks: when no run of free slots is large enough it
// fails with ErrExhausted. n must be in [1, MaxRegionSize].
func (p *Pool) Reserve(n int) (Buf, error) {
	// Fast path: one slot from the goroutine's home group. The rest of the
	// work, including the full-group protocol, is in reserve.
	// (After Close every word is a tombstone, so a closed pool falls through.)
	if uint(n-1) < uint(p.slotSize) { // false for a zero Pool, whose slotSize is 0
		rs := p.regions.Load()
		ri, g := rs.home(p.homeHash())
		r := rs.list[ri]
		if !r.isFull(g) {
			lo := g << groupShift
			words := r.words[lo:min(lo+groupSize, len(r.words))]
			cover := &r.cover[g]
			covered := cover.Load()
			for i := range words {
				v := words[i].Load()
				if wordState(v) != stateFree || covered>>i&1 != 0 {
					continue
				}
				if words[i].CompareAndSwap(v, v|stateHead<<stateShift|uint64(n)) {
					if cover.Load()>>i&1 == 0 { // see "Runs" in alloc.go
						return newBuf(p, wordGen(v), ri, uint32(lo+i), uint32(n)), nil
					}
					words[i].CompareAndSwap(v|stateHead<<stateShift|uint64(n), v)
				}
				p.salt.Add(1) // another goroutine shares this home: move
				break
			}
		}
	}
	b, err := p.reserve(n)
	if err != nil && errors.Is(err, ErrExhausted) {
		p.failed.Add(1)
	}
	return b, err
}

// reserve is Reserve without the fast path and the failure count.
func (p *Pool) reserve(n int) (Buf, error) {
	if uint(n-1) >= uint(p.slotSize) {
		return p.reserveRun(n)
	}
	rs := p.set()
	if p.closed.Load() || len(rs.list) == 0 {
		return Buf{}, p.exhausted(n)
	}
	ri, g := rs.home(p.homeHash())
	r := rs.list[ri]
	if !r.isFull(g) {
		slot, gen, contended, ok := r.takeOne(g, uint32(n))
		if contended {
			p.salt.Add(1)
		}
		if ok {
			return newBuf(p, gen, ri, uint32(slot), uint32(n)), nil
		}
		p.noteFull(rs)
	}
	return p.reserveOneSlow(rs, ri, g, n)
}

// reserveOneSlow visits every group not marked full, starting after the
// home group, across regions.
func (p *Pool) reserveOneSlow(rs *regionSet, ri, g, n int) (Buf, error) {
	start := g + 1
	for range len(rs.list) + 1 {
		r := rs.list[ri]
		for g := r.nextGroup(start); g >= 0; g = r.nextGroup(g + 1) {
			if slot, gen, _, ok := r.takeOne(g, uint32(n)); ok {
				return newBuf(p, gen, ri, uint32(slot), uint32(n)), nil
			}
			p.noteFull(rs)
		}
		ri = (ri + 1) % len(rs.list)
		start = 0
	}
	return Buf{}, p.exhausted(n)
}

// reserveRun reserves k > 1 contiguous slots, searching from the home
// group on, then the rest of each region.
func (p *Pool) reserveRun(n int) (Buf, error) {
	if n <= 0 || n > MaxRegionSize {
		return Buf{}, fmt.Errorf("dmapool: reserve %d bytes (allowed: 1 to %d): %w", n, MaxRegionSize, ErrSize)
	}
	rs := p.set()
	if p.closed.Load() || len(rs.list) == 0 {
		return Buf{}, p.exhausted(n)
	}
	k := (n + p.slotSize - 1) >> p.shift
	if k <= rs.maxSlots {
		ri, g := rs.home(p.homeHash())
		from := g << groupShift
		for range len(rs.list) {
			r := rs.list[ri]
			if k <= r.nslots {
				slot, gen, ok := r.takeRun(from, r.nslots, k, uint32(n))
				if !ok && from > 0 {
					slot, gen, ok = r.takeRun(0, from, k, uint32(n))
				}
				if ok {
					return newBuf(p, gen, ri, uint32(slot), uint32(n)), nil
				}
			}
			ri = (ri + 1) % len(rs.list)
			from = 0
		}
	}
	return Buf{}, p.exhausted(n)
}

func (p *Pool) exhausted(n int) error {
	if p.closed.Load() || p.slotSize == 0 {
		return fmt.Errorf("dmapool: reserve: %w", ErrClosed)
	}
	return fmt.Errorf("dmapool: reserve %d bytes: %w", n, ErrExhausted)
}

// homeHash hashes the caller's stack address, perturbed by the salt.
// Goroutine stacks are at least 2 KiB and aligned to their size, so the
// address shifted right by 11 differs between any two live goroutines.
func (p *Pool) homeHash() uint32 {
	h := (uint64(stackHint()>>11) ^ p.salt.Load()) * 0x9E3779B97F4A7C15
	return uint32(h >> 32)
}

// noteFull records a lower bound for HighWater when a group fills.
func (p *Pool) noteFull(rs *regionSet) {
	n := 0
	for _, r := range rs.list {
		n += r.fullSlots()
	}
	p.noteHighWater(n)
}

func (p *Pool) noteHighWater(n int) {
	for {
		hw := p.highWater.Load()
		if int64(n) <= hw || p.highWater.CompareAndSwap(hw, int64(n)) {
			return
		}
	}
}

// release returns b to the pool. The fast path is a whole, one-slot
// reservation without poisoning: one compare-and-swap both checks the
// handle and frees the slot.
func (p *Pool) release(b Buf) error {
	if rs := p.regions.Load(); rs != nil && !p.poison {
		if b.region() < uint32(len(rs.list)) {
			r := rs.list[b.region()]
			if b.head() < uint32(len(r.words)) && b.gen() <= genMask && b.n-1 < uint32(p.slotSize) && b.off == b.head()<<p.shift &&
				r.words[b.head()].CompareAndSwap(headWord(b.gen(), b.n), freeWord(b.gen()+1)) {
				if g := b.head() >> groupShift; r.full[g>>6].Load()&(1<<(g&63)) != 0 {
					r.clearFull(int(g))
				}
				if p.waiters.Load() != 0 {
					p.wake()
				}
				return nil
			}
		}
	}
	return p.releaseSlow(b)
}

// releaseSlow handles runs, split parts, poisoning and invalid handles.
func (p *Pool) releaseSlow(b Buf) error {
	r, err := p.slotOf(b)
	if err != nil {
		return err
	}
	w := &r.words[b.head()]
	for {
		v := w.Load()
		switch wordState(v) {
		case stateHead:
			if err := p.matchHead(b, v); err != nil {
				return err
			}
			if !w.CompareAndSwap(v, v&^stateMask|stateBusy<<stateShift) {
				continue // released or split under us: look again
			}
			p.freeReservation(r, int(b.head()), wordLen(v), b.gen())
			return nil
		case stateSplit:
			return p.releasePart(r, b)
		default:
			return p.invalid(b, r, v)
		}
	}
}

// freeReservation returns the slots of an n-byte reservation whose head
// word the caller has turned to stateBusy, poisoning them first if asked.
func (p *Pool) freeReservation(r *region, head int, n uint32, gen uint32) {
	k := slotsFor(n, p.shift)
	if p.poison {
		poison(r.mem[head<<p.shift : (head+k)<<p.shift])
	}
	r.freeSlots(head, k, gen)
	if p.waiters.Load() != 0 {
		p.wake()
	}
}

// slotOf checks b's pool, region and slot fields and returns the region.
func (p *Pool) slotOf(b Buf) (*region, error) {
	if b.p == nil {
		return nil, fmt.Errorf("dmapool: zero Buf (no pool): %w", ErrInvalidBuffer)
	}
	if b.p != p {
		return nil, fmt.Errorf("dmapool: handle of another pool: %w", ErrInvalidBuffer)
	}
	rs := p.set()
	if b.region() >= uint32(len(rs.list)) {
		return nil, fmt.Errorf("dmapool: forged handle: region %d, pool has %d: %w", b.region(), len(rs.list), ErrInvalidBuffer)
	}
	r := rs.list[b.region()]
	if b.head() >= uint32(r.nslots) {
		return nil, fmt.Errorf("dmapool: forged handle: slot %d, region has %d: %w", b.head(), r.nslots, ErrInvalidBuffer)
	}
	if b.gen() > genMask {
		return nil, fmt.Errorf("dmapool: forged handle: generation %#x: %w", b.gen(), ErrInvalidBuffer)
	}
	return r, nil
}

// matchHead checks b against the head word v of a whole reservation.
func (p *Pool) matchHead(b Buf, v uint64) error {
	if wordGen(v) != b.gen() {
		return fmt.Errorf("dmapool: buffer released (slot %d is at generation %d, handle has %d): %w",
			b.head(), wordGen(v), b.gen(), ErrInvalidBuffer)
	}
	if b.off != b.head()<<p.shift || b.n != wordLen(v) {
		return fmt.Errorf("dmapool: handle of %d bytes at %d does not match the reservation of %d bytes at %d "+
			"(forged, or consumed by Split/Trim): %w", b.n, b.off, wordLen(v), b.head()<<p.shift, ErrInvalidBuffer)
	}
	return nil
}

// invalid explains why b does not match word v, whose state is neither
// head nor split.
func (p *Pool) invalid(b Buf, r *region, v uint64) error {
	switch {
	case wordState(v) == stateTomb && p.closed.Load():
		return fmt.Errorf("dmapool: buffer of a closed pool: %w (%w)", ErrInvalidBuffer, ErrClosed)
	case wordGen(v) != b.gen():
		return fmt.Errorf("dmapool: buffer released (slot %d is at generation %d, handle has %d): %w",
			b.head(), wordGen(v), b.gen(), ErrInvalidBuffer)
	}
	return fmt.Errorf("dmapool: buffer released (slot %d is free): %w", b.head(), ErrInvalidBuffer)
}

// wake wakes every goroutine parked in ReserveContext.
func (p *Pool) wake() {
	p.wakeMu.Lock()
	if p.wakeCh != nil { // nil only in a zero Pool
		close(p.wakeCh)
	}
	p.wakeCh = make(chan struct{})
	p.wakeMu.Unlock()
}

// Stats is a snapshot of a pool's counters.
type Stats struct {
	SlotSize   int // bytes per slot
	SlotsTotal int // slots in all regions
	// SlotsInUse counts reserved slots. Stats walks every slot word to count
	// them (about a nanosecond per slot), so it is exact when the pool is
	// quiet and a close estimate while reservations run.
	SlotsInUse int
	// HighWater is the most slots seen in use. It is measured exactly on
	// every Stats call, and as a lower bound (the slots of groups of 64
	// marked full) whenever a one-slot reservation finds a group full; a
	// short peak that does neither may be missed. Keeping it exact would
	// need a shared counter written by every reservation, which is what the
	// allocator is built to avoid.
	HighWater      int
	Buffers        int    // live reservations; a split reservation counts once
	ReservesFailed uint64 // reservations that failed with ErrExhausted
	Regions        int
	BytesMapped    int64 // bytes of buffer memory in all regions
	BytesPinned    int64 // of which locked in RAM
}

// Stats returns the pool's counters. After Close, slot figures are zero.
func (p *Pool) Stats() Stats {
	rs := p.set()
	s := Stats{
		SlotSize:       p.slotSize,
		ReservesFailed: p.failed.Load(),
		Regions:        len(rs.list),
		BytesMapped:    rs.size,
	}
	for _, r := range rs.list {
		s.SlotsTotal += r.nslots
		used, bufs := r.inUse()
		s.SlotsInUse += used
		s.Buffers += bufs
		if r.m.pinned && !p.closed.Load() {
			s.BytesPinned += int64(len(r.mem))
		}
	}
	if p.closed.Load() {
		s.SlotsInUse, s.Buffers = 0, 0
	}
	p.noteHighWater(s.SlotsInUse)
	s.HighWater = int(p.highWater.Load())
	return s
}

// Pinned reports whether every region is locked in RAM.
func (p *Pool) Pinned() bool {
	rs := p.set()
	for _, r := range rs.list {
		if !r.m.pinned {
			return false
		}
	}
	return len(rs.list) > 0 && !p.closed.Load()
}

// SlotSize is the allocation unit in bytes.
func (p *Pool) SlotSize() int { return p.slotSize }

// RegionInfo describes one region, for handing it to a peer process.
type RegionInfo struct {
	Index int   // the region number Locate reports
	Base  int64 // offset of the region's first byte in the pool's address space: the sum of the sizes of the regions before it
	Size  int   // bytes
	// FD is the region's sealed memfd in a Shared pool, -1 otherwise. The
	// pool owns it and closes it in Close; send it (SCM_RIGHTS) or dup it,
	// and the peer maps it with MapShared(fd, Size).
	FD     int
	Pages  PageKind
	Pinned bool
	// Addr is the address of the region's first byte in this process, for
	// registering the region with the kernel (io_uring's fixed buffers,
	// say), which wants an address and a length. It is valid while the
	// pool is open: a region stays mapped at Addr from New or Grow until
	// Close. It is no way into the memory for Go code; use Buf.Bytes.
	Addr uintptr
}

// Regions describes the pool's regions in order. Grow appends; nothing is
// ever removed until Close, after which it returns nil.
func (p *Pool) Regions() []RegionInfo {
	if p.closed.Load() {
		return nil
	}
	rs := p.set()
	out := make([]RegionInfo, len(rs.list))
	for i, r := range rs.list {
		out[i] = RegionInfo{Index: i, Base: r.base, Size: len(r.mem), FD: r.m.fd, Pages: r.m.pages, Pinned: r.m.pinned, Addr: r.m.addr()}
	}
	return out
}

// Locate returns where b's bytes lie: the region number and the byte offset
// in it. A peer that mapped the region with MapShared reads and writes the
// same bytes at that offset. It fails with ErrInvalidBuffer when b is not
// a live handle of p.
func (p *Pool) Locate(b Buf) (region, off int, err error) {
	if err := p.Validate(b); err != nil {
		return 0, 0, err
	}
	return int(b.region()), int(b.off), nil
}

// Validate is Buf.Valid plus a check that b belongs to p.
func (p *Pool) Validate(b Buf) error {
	if b.p != nil && b.p != p {
		return fmt.Errorf("dmapool: handle of another pool: %w", ErrInvalidBuffer)
	}
	if b.p == nil {
		return fmt.Errorf("dmapool: zero Buf (no pool): %w", ErrInvalidBuffer)
	}
	return b.Valid()
}

// Release is Buf.Release plus a check that b belongs to p: a handle of
// another pool is refused with ErrInvalidBuffer and left alone.
func (p *Pool) Release(b Buf) error {
	if b.p != p {
		if b.p == nil {
			return fmt.Errorf("dmapool: release: zero Buf (no pool): %w", ErrInvalidBuffer)
		}
		return fmt.Errorf("dmapool: release: handle of another pool: %w", ErrInvalidBuffer)
	}
	return p.release(b)
}

func log2(v int) int {
	n := 0
	for v > 1 {
		v >>= 1
		n++
	}
	return n
}

func roundUp(v, unit int) int { return (v + unit - 1) / unit * unit }
