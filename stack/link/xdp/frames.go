package xdp

import "sync/atomic"

// UMEM frame accounting.
//
// The UMEM is cut into equal frames (Config.FrameSize, a power of two) at
// addresses 0, size, 2*size… The first half belongs to receive: each such
// frame is, at any moment, either on the fill ring or in the kernel's hands
// (owner kernelRx) or held by the link between the RX ring and the fill ring
// (owner heldRx: the fill ring had no room). The second half belongs to
// transmit: free on the link's free list (freeTx) or on the TX ring /
// completion ring (kernelTx). Every address the kernel hands back is checked
// against this book before the link touches the frame, so a descriptor for a
// frame the kernel does not hold — out of the UMEM, of the other half,
// already returned, or running past its frame — is counted and skipped
// rather than followed; the book's totals never change, so a test can check
// that every frame comes back.

type owner uint8

const (
	kernelRx owner = iota // on the fill ring, or filled and on the RX ring
	heldRx                // consumed from the RX ring, waiting for room on the fill ring
	freeTx                // on the TX free list
	kernelTx              // on the TX ring or not yet reaped from the completion ring
)

type frameBook struct {
	size  uint64 // frame size, a power of two
	nRx   uint32 // frames [0, nRx) are receive frames
	n     uint32 // total frames
	owner []owner
	free  []uint64         // free TX frame addresses (a stack)
	held  []uint64         // receive frames waiting for the fill ring
	gauge *[4]atomic.Int64 // frames by owner, for Stats
}

// set moves frame idx to owner o, keeping the gauges.
func (b *frameBook) set(idx uint32, o owner) {
	b.gauge[b.owner[idx]].Add(-1)
	b.owner[idx] = o
	b.gauge[o].Add(1)
}

func newFrameBook(n uint32, size uint64, gauge *[4]atomic.Int64) *frameBook {
	b := &frameBook{size: size, nRx: n / 2, n: n, owner: make([]owner, n), free: make([]uint64, 0, n-n/2), gauge: gauge}
	for i := uint32(0); i < n; i++ {
		if i < b.nRx {
			b.owner[i] = heldRx
			gauge[heldRx].Add(1)
			b.held = append(b.held, uint64(i)*size)
		} else {
			b.owner[i] = freeTx
			gauge[freeTx].Add(1)
			b.free = append(b.free, uint64(i)*size)
		}
	}
	return b
}

// frameOf returns the index of the frame holding addr and addr's offset in
// it, or ok false when addr is past the UMEM.
func (b *frameBook) frameOf(addr uint64) (idx uint32, off uint64, ok bool) {
	i := addr / b.size
	if i >= uint64(b.n) {
		return 0, 0, false
	}
	return uint32(i), addr % b.size, true
}

// descFault says why a descriptor from the kernel was refused.
type descFault uint8

const (
	descOK descFault = iota
	descOutOfRange
	descNotHeld // a frame the kernel does not hold (other half, or returned twice)
	descOverrun // offset + length past the frame
)

// checkRx validates an RX descriptor: a receive frame the kernel holds, the
// data inside it. On success the frame becomes heldRx.
func (b *frameBook) checkRx(addr uint64, length uint32) (idx uint32, f descFault) {
	idx, off, ok := b.frameOf(addr)
	switch {
	case !ok:
		return 0, descOutOfRange
	case idx >= b.nRx || b.owner[idx] != kernelRx:
		return idx, descNotHeld
	case off+uint64(length) > b.size:
		return idx, descOverrun
	}
	b.set(idx, heldRx)
	return idx, descOK
}

// checkCompletion validates a completion ring entry: a transmit frame the
// kernel holds. On success the frame goes back on the free list.
func (b *frameBook) checkCompletion(addr uint64) descFault {
	idx, _, ok := b.frameOf(addr)
	switch {
	case !ok:
		return descOutOfRange
	case idx < b.nRx || b.owner[idx] != kernelTx:
		return descNotHeld
	}
	b.set(idx, freeTx)
	b.free = append(b.free, uint64(idx)*b.size)
	return descOK
}

// takeTx pops a free transmit frame and marks it the kernel's.
func (b *frameBook) takeTx() (uint64, bool) {
	if len(b.free) == 0 {
		return 0, false
	}
	a := b.free[len(b.free)-1]
	b.free = b.free[:len(b.free)-1]
	b.set(uint32(a/b.size), kernelTx)
	return a, true
}

// untakeTx puts back a frame takeTx gave that was never published.
func (b *frameBook) untakeTx(a uint64) {
	b.set(uint32(a/b.size), freeTx)
	b.free = append(b.free, a)
}

// hold records receive frame idx as waiting for the fill ring.
func (b *frameBook) hold(idx uint32) { b.held = append(b.held, uint64(idx)*b.size) }

// census counts frames by owner.
func (b *frameBook) census() (c [4]int) {
	for _, o := range b.owner {
		c[o]++
	}
	return c
}
