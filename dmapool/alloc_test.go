package dmapool

import "testing"

// TestRunBacksOffFromRacingSingle plays the race of "Runs" in alloc.go in
// one goroutine: a single-slot claim lands inside a run after the run has
// scanned the slots free but before it checks them again. The run must
// back off and land elsewhere, and the single must keep its slot.
func TestRunBacksOffFromRacingSingle(t *testing.T) {
	p := newPool(t, small())
	r := p.regions.Load().list[0]
	var stolen int = -1
	testHookCovered = func(r *region, s, k int) {
		if stolen >= 0 {
			return
		}
		// The single read the word before the cover bits were set.
		stolen = s + k/2
		w := &r.words[stolen]
		v := w.Load()
		if !w.CompareAndSwap(v, v|stateHead<<stateShift|100) {
			t.Error("could not play the single's claim")
		}
	}
	defer func() { testHookCovered = nil }()
	run := mustReserve(t, p, 8*2048)
	if stolen < 0 {
		t.Fatal("hook did not run")
	}
	_, off, _ := p.Locate(run)
	head := off >> p.shift
	if stolen >= head && stolen < head+8 {
		t.Fatalf("run [%d,%d) overlaps the single's slot %d", head, head+8, stolen)
	}
	// The single's claim stands; release it as its owner would.
	v := r.words[stolen].Load()
	single := newBuf(p, wordGen(v), 0, uint32(stolen), 100)
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
	mustRelease(t, single)
	mustRelease(t, run)
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
}

// TestSingleSkipsCoveredSlots: a slot whose word is free but whose cover
// bit is set belongs to a run and is never handed out alone.
func TestSingleSkipsCoveredSlots(t *testing.T) {
	p := newPool(t, Config{Size: 128 << 10, HugePages: HugeOff}) // one group of 64 slots
	r := p.regions.Load().list[0]
	r.cover[0].Store(^uint64(0) >> 1) // slots 0..62 covered
	b := mustReserve(t, p, 10)
	if _, off, _ := p.Locate(b); off>>p.shift != 63 {
		t.Fatalf("single got slot %d, want 63 (the only uncovered one)", off>>p.shift)
	}
	if _, err := p.Reserve(10); err == nil {
		t.Fatal("single reserved a covered slot")
	}
	mustRelease(t, b)
	r.cover[0].Store(0)
	r.full[0].Store(0)
}

func TestCoverMask(t *testing.T) {
	for _, c := range []struct {
		g, s, k int
		want    uint64
	}{
		{0, 0, 2, 3},
		{0, 62, 4, 3 << 62},
		{1, 62, 4, 3},
		{1, 64, 64, ^uint64(0)},
		{1, 100, 100, ^uint64(0) &^ (1<<36 - 1)},
		{2, 100, 100, ^uint64(0)},
		{3, 100, 100, 0xff},
	} {
		if got := coverMask(c.g, c.s, c.k); got != c.want {
			t.Errorf("coverMask(%d, %d, %d) = %#x, want %#x", c.g, c.s, c.k, got, c.want)
		}
	}
}

func TestWordLayout(t *testing.T) {
	w := headWord(genMask, lenMask)
	if wordState(w) != stateHead || wordGen(w) != genMask || wordLen(w) != lenMask {
		t.Fatalf("headWord round trip: %#x", w)
	}
	if f := freeWord(genMask + 1); f != 0 {
		t.Fatalf("generation does not wrap: %#x", f)
	}
	b := newBuf(&Pool{shift: 11}, genMask, MaxRegions-1, 1<<idHeadBits-1, 7)
	if b.gen() != genMask || b.region() != MaxRegions-1 || b.head() != 1<<idHeadBits-1 {
		t.Fatalf("Buf id round trip: %+v", b)
	}
	if MaxRegionSize/MinSlotSize > 1<<idHeadBits || MaxRegions > 1<<idRegionBits {
		t.Fatal("Buf.id fields too narrow for the limits")
	}
}
