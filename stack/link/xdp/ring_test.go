//go:build linux

package xdp

import (
	"math"
	"testing"
)

// TestRingIndexWrap produces and consumes across the 2^32 wrap of the
// indices: counts stay right and entries land at index & mask.
func TestRingIndexWrap(t *testing.T) {
	r, m := newAddrRingMem(8)
	start := uint32(math.MaxUint32 - 5)
	r.local, r.cached = start, start
	m.prod.Store(start)
	m.cons.Store(start)
	if got := r.free(100); got != 8 {
		t.Fatalf("free on an empty ring: %d, want 8", got)
	}
	for i := uint32(0); i < 8; i++ {
		*r.at(r.local + i) = uint64(i)
	}
	r.submit(8)
	if m.prod.Load() != start+8 {
		t.Fatalf("producer %d, want %d (wrapped)", m.prod.Load(), start+8)
	}
	if got := r.free(1); got != 0 {
		t.Fatalf("free on a full ring: %d", got)
	}
	// The kernel consumes 3: 3 entries free.
	m.cons.Store(start + 3)
	if got := r.free(5); got != 3 {
		t.Fatalf("free after 3 consumed: %d, want 3", got)
	}
	if got := r.pending(); got != 5 {
		t.Fatalf("pending %d, want 5", got)
	}
	// Entry i sits at (start+i) & 7.
	for i := uint32(0); i < 8; i++ {
		if r.addrs[(start+i)&7] != uint64(i) {
			t.Fatalf("entry %d at slot %d holds %d", i, (start+i)&7, r.addrs[(start+i)&7])
		}
	}
}

// TestRingConsumer reads what a producer published, re-reading the
// producer index only when the cached one runs dry, across the wrap.
func TestRingConsumer(t *testing.T) {
	r, m := newDescRingMem(4)
	start := uint32(math.MaxUint32 - 1)
	r.local, r.cached = start, start
	m.prod.Store(start)
	m.cons.Store(start)
	if n, bad := r.ready(4); n != 0 || bad {
		t.Fatalf("empty ring: %d, %v", n, bad)
	}
	m.prod.Store(start + 3)
	if n, bad := r.ready(2); n != 2 || bad {
		t.Fatalf("ready(2) of 3: %d, %v", n, bad)
	}
	r.release(2)
	if m.cons.Load() != start+2 {
		t.Fatalf("consumer %d, want %d", m.cons.Load(), start+2)
	}
	if n, _ := r.ready(4); n != 1 {
		t.Fatalf("one left, ready says %d", n)
	}
	r.release(1)
	// A producer index more than the ring's size ahead is reported and
	// nothing is read, until it is back in range.
	m.prod.Store(start + 3 + 1000)
	if n, bad := r.ready(100); n != 0 || !bad {
		t.Fatalf("bad producer index: ready %d, bad %v; want 0, true", n, bad)
	}
	m.prod.Store(start + 4)
	if n, bad := r.ready(100); n != 1 || bad {
		t.Fatalf("index back in range: ready %d, bad %v; want 1, false", n, bad)
	}
	// A consumer index ahead of what we produced: nothing is free.
	p, pm := newAddrRingMem(4)
	pm.cons.Store(7)
	if got := p.free(8); got != 0 {
		t.Fatalf("consumer ahead of producer: free %d, want 0", got)
	}
}

// TestFrameBook checks descriptor validation against the book.
func TestFrameBook(t *testing.T) {
	var g counters
	b := newFrameBook(8, 2048, &g.census)
	if c := b.census(); c[heldRx] != 4 || c[freeTx] != 4 {
		t.Fatalf("fresh book: %v", c)
	}
	// Hand receive frames 0..3 to the kernel.
	for i := uint32(0); i < 4; i++ {
		b.set(i, kernelRx)
	}
	b.held = b.held[:0]
	cases := []struct {
		name   string
		addr   uint64
		length uint32
		want   descFault
	}{
		{"frame 1 with headroom", 2048 + 256, 1500, descOK},
		{"frame 1 again (returned twice)", 2048 + 256, 60, descNotHeld},
		{"past the UMEM", 8 * 2048, 60, descOutOfRange},
		{"far past", math.MaxUint64 - 10, 60, descOutOfRange},
		{"a transmit frame", 5 * 2048, 60, descNotHeld},
		{"overrun", 2*2048 + 2000, 100, descOverrun},
		{"exactly fits", 3 * 2048, 2048, descOK},
	}
	for _, c := range cases {
		if _, f := b.checkRx(c.addr, c.length); f != c.want {
			t.Errorf("%s: fault %d, want %d", c.name, f, c.want)
		}
	}
	if c := b.census(); c[heldRx] != 2 || c[kernelRx] != 2 {
		t.Fatalf("after two good descriptors: %v", c)
	}
	// Transmit: take, complete, complete again, complete a receive frame.
	a, ok := b.takeTx()
	if !ok || a < 4*2048 {
		t.Fatalf("takeTx: %d, %v", a, ok)
	}
	if f := b.checkCompletion(a); f != descOK {
		t.Fatalf("completion: %d", f)
	}
	if f := b.checkCompletion(a); f != descNotHeld {
		t.Fatalf("second completion: %d, want descNotHeld", f)
	}
	if f := b.checkCompletion(0); f != descNotHeld {
		t.Fatalf("completion of a receive frame: %d", f)
	}
	if f := b.checkCompletion(1 << 40); f != descOutOfRange {
		t.Fatalf("completion past the UMEM: %d", f)
	}
	for i := 0; i < 4; i++ {
		if _, ok := b.takeTx(); !ok {
			t.Fatalf("takeTx %d failed with frames free", i)
		}
	}
	if _, ok := b.takeTx(); ok {
		t.Fatal("takeTx succeeded with none free")
	}
	// The gauges follow the owners.
	c := b.census()
	for o := range c {
		if int64(c[o]) != g.census[o].Load() {
			t.Fatalf("gauge %d = %d, census %d", o, g.census[o].Load(), c[o])
		}
	}
}
