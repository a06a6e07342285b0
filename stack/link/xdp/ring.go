//go:build linux

package xdp

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The four AF_XDP rings are single-producer single-consumer queues shared
// with the kernel (include/uapi/linux/if_xdp.h; the kernel's side is
// net/xdp/xsk_queue.h). Each has a producer and a consumer index that only
// grow (wrapping at 2^32), a flags word (XDP_RING_NEED_WAKEUP) and a power
// of two number of entries, entry i living at i & mask. We produce on the
// fill and TX rings and consume the RX and completion rings.
//
// The index we own is kept in a local copy and published with one store
// per batch; the other side's index is re-read only when the local copy
// says the ring is full (producing) or empty (consuming). The kernel is
// trusted less than it could be: a consumer ring whose producer index runs
// more than its size ahead of ours holds nothing we can trust, so it is
// read as empty (counted by the caller as a bad index) until the index is
// back in range.

// ringIndex is the bookkeeping part of one ring, the entries aside.
type ringIndex struct {
	prod, cons *atomic.Uint32 // shared with the kernel
	flags      *atomic.Uint32 // shared; XDP_RING_NEED_WAKEUP
	size, mask uint32
	local      uint32 // our index: prod on a ring we produce, cons on one we consume
	cached     uint32 // the last value read of the other side's index
}

func newRingIndex(prod, cons, flags *atomic.Uint32, size uint32) ringIndex {
	return ringIndex{prod: prod, cons: cons, flags: flags, size: size, mask: size - 1,
		local: 0, cached: 0}
}

// free reports how many entries a producer may write now, at most want,
// re-reading the consumer index only when the cached one leaves fewer.
func (r *ringIndex) free(want uint32) uint32 {
	n := r.size - (r.local - r.cached)
	if n >= want {
		return want
	}
	r.cached = r.cons.Load()
	n = r.size - (r.local - r.cached)
	if n > r.size { // a consumer index ahead of what we produced: nothing is free
		return 0
	}
	return min(n, want)
}

// submit publishes n entries written at local..local+n.
func (r *ringIndex) submit(n uint32) {
	r.local += n
	r.prod.Store(r.local)
}

// ready reports how many entries a consumer may read now, at most want,
// and whether the producer index was out of range (more than size ahead:
// then none).
func (r *ringIndex) ready(want uint32) (uint32, bool) {
	n := r.cached - r.local
	if n == 0 {
		r.cached = r.prod.Load()
		n = r.cached - r.local
	}
	if n > r.size {
		r.cached = r.local // re-read next time
		return 0, true
	}
	return min(n, want), false
}

// release gives n consumed entries back to the producer.
func (r *ringIndex) release(n uint32) {
	r.local += n
	r.cons.Store(r.local)
}

// pending reports how many entries we produced that the consumer has not
// taken yet.
func (r *ringIndex) pending() uint32 {
	r.cached = r.cons.Load()
	return r.local - r.cached
}

// needWakeup reports whether the kernel asked to be woken for this ring.
func (r *ringIndex) needWakeup() bool { return r.flags.Load()&unix.XDP_RING_NEED_WAKEUP != 0 }

// addrRing is the fill or the completion ring: entries are UMEM addresses.
type addrRing struct {
	ringIndex
	addrs []uint64
}

func (r *addrRing) at(i uint32) *uint64 { return &r.addrs[i&r.mask] }

// descRing is the RX or the TX ring: entries are descriptors.
type descRing struct {
	ringIndex
	descs []unix.XDPDesc
}

func (r *descRing) at(i uint32) *unix.XDPDesc { return &r.descs[i&r.mask] }

// ringMem is a ring laid out in ordinary Go memory, for rings that a test
// plays the kernel's side of.
type ringMem struct {
	prod, cons, flags atomic.Uint32
}

func newAddrRingMem(size uint32) (*addrRing, *ringMem) {
	m := &ringMem{}
	return &addrRing{ringIndex: newRingIndex(&m.prod, &m.cons, &m.flags, size), addrs: make([]uint64, size)}, m
}

func newDescRingMem(size uint32) (*descRing, *ringMem) {
	m := &ringMem{}
	return &descRing{ringIndex: newRingIndex(&m.prod, &m.cons, &m.flags, size), descs: make([]unix.XDPDesc, size)}, m
}

// txDesc is the TX descriptor of size bytes at UMEM address addr.
func txDesc(addr uint64, size int) unix.XDPDesc { return unix.XDPDesc{Addr: addr, Len: uint32(size)} }
