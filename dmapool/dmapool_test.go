package dmapool

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Size: -1},
		{Size: 1 << 20, SlotSize: 3000},
		{Size: 1 << 20, SlotSize: 32},
		{Size: 1 << 20, SlotSize: 2 << 20},
		{Size: 1 << 20, HugePages: 7},
		{Size: 1 << 20, Pin: -1},
	} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

func TestReserveSizes(t *testing.T) {
	p := newPool(t, small())
	if p.SlotSize() != DefaultSlotSize {
		t.Fatalf("SlotSize = %d, want %d", p.SlotSize(), DefaultSlotSize)
	}
	for _, n := range []int{0, -1, MaxRegionSize + 1} {
		if _, err := p.Reserve(n); !errors.Is(err, ErrSize) {
			t.Errorf("Reserve(%d) = %v, want ErrSize", n, err)
		}
	}
	var held []Buf
	for i, n := range []int{1, 2048, 2049, 64 << 10, 100 << 10} {
		b := mustReserve(t, p, n)
		mem := b.Bytes()
		if len(mem) != n || cap(mem) != n || b.Len() != n {
			t.Fatalf("Reserve(%d): len %d cap %d Len %d", n, len(mem), cap(mem), b.Len())
		}
		for j := range mem {
			mem[j] = byte(i + 1)
		}
		held = append(held, b)
	}
	// Each buffer kept its own bytes: no two overlap.
	for i, b := range held {
		if !bytes.Equal(b.Bytes(), bytes.Repeat([]byte{byte(i + 1)}, b.Len())) {
			t.Errorf("buffer %d was overwritten", i)
		}
	}
	s := p.Stats()
	wantSlots := 1 + 1 + 2 + 32 + 50
	if s.SlotsInUse != wantSlots || s.Buffers != len(held) {
		t.Errorf("Stats: %d slots %d buffers in use, want %d and %d", s.SlotsInUse, s.Buffers, wantSlots, len(held))
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
	for _, b := range held {
		mustRelease(t, b)
	}
	if s := p.Stats(); s.SlotsInUse != 0 || s.Buffers != 0 || s.HighWater < wantSlots {
		t.Errorf("after release: %+v", s)
	}
}

func TestInvalidHandles(t *testing.T) {
	p := newPool(t, small())
	other := newPool(t, small())

	var zero Buf
	if zero.Bytes() != nil || zero.Len() != 0 {
		t.Error("zero Buf has bytes")
	}
	for name, err := range map[string]error{
		"zero Release":      zero.Release(),
		"zero Valid":        zero.Valid(),
		"zero pool Release": p.Release(zero),
		"zero Validate":     p.Validate(zero),
	} {
		if !errors.Is(err, ErrInvalidBuffer) {
			t.Errorf("%s = %v, want ErrInvalidBuffer", name, err)
		}
	}

	b := mustReserve(t, p, 100)
	if err := b.Valid(); err != nil {
		t.Fatalf("Valid on a live buffer: %v", err)
	}
	// A handle of another pool: refused by that pool, left alone.
	if err := other.Release(b); !errors.Is(err, ErrInvalidBuffer) || !strings.Contains(err.Error(), "another pool") {
		t.Errorf("other.Release = %v", err)
	}
	if _, _, err := other.Locate(b); !errors.Is(err, ErrInvalidBuffer) {
		t.Errorf("other.Locate = %v", err)
	}
	if err := b.Valid(); err != nil {
		t.Fatalf("foreign release disturbed the buffer: %v", err)
	}

	// Forged fields.
	for name, f := range map[string]Buf{
		"region": {p: p, id: b.id | 5<<idHeadBits, off: b.off, n: b.n},
		"slot":   {p: p, id: b.id | (1<<idHeadBits - 1), off: b.off, n: b.n},
		"gen":    {p: p, id: b.id ^ 1<<idGenShift, off: b.off, n: b.n},
		"gen63":  {p: p, id: b.id | 1<<63, off: b.off, n: b.n},
		"length": {p: p, id: b.id, off: b.off, n: b.n + 1},
		"offset": {p: p, id: b.id, off: b.off + 1, n: b.n},
		"free":   {p: p, id: b.id + 1, off: b.off + 2048, n: b.n},
	} {
		if f.Bytes() != nil {
			t.Errorf("forged %s: Bytes not nil", name)
		}
		if err := f.Release(); !errors.Is(err, ErrInvalidBuffer) {
			t.Errorf("forged %s: Release = %v", name, err)
		}
		if _, _, err := f.Split(10); !errors.Is(err, ErrInvalidBuffer) {
			t.Errorf("forged %s: Split = %v", name, err)
		}
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}

	// Release, then everything about the old handle fails.
	copy1 := b
	mustRelease(t, b)
	if err := b.Release(); !errors.Is(err, ErrInvalidBuffer) || !strings.Contains(err.Error(), "released") {
		t.Errorf("double Release = %v", err)
	}
	if copy1.Bytes() != nil {
		t.Error("Bytes after Release not nil")
	}
	if err := copy1.Valid(); !errors.Is(err, ErrInvalidBuffer) {
		t.Errorf("Valid after Release = %v", err)
	}
	// Reuse of the slot does not revive the old handle.
	again := make([]Buf, 0, 128)
	for range 128 {
		again = append(again, mustReserve(t, p, 100))
	}
	if copy1.Bytes() != nil || !errors.Is(copy1.Release(), ErrInvalidBuffer) {
		t.Error("a stale handle works on a reused slot")
	}
	for _, b := range again {
		mustRelease(t, b)
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
}

func TestSplitTrim(t *testing.T) {
	p := newPool(t, Config{Size: 256 << 10, HugePages: HugeOff, Poison: true})
	b := mustReserve(t, p, 10000) // 5 slots
	for i := range b.Bytes() {
		b.Bytes()[i] = byte(i)
	}
	want := append([]byte(nil), b.Bytes()...)

	if _, _, err := b.Split(0); !errors.Is(err, ErrSize) {
		t.Errorf("Split(0) = %v", err)
	}
	if _, _, err := b.Split(10000); !errors.Is(err, ErrSize) {
		t.Errorf("Split(len) = %v", err)
	}
	if _, err := b.Trim(1, 10000); !errors.Is(err, ErrSize) {
		t.Errorf("Trim out of range = %v", err)
	}
	if b.Valid() != nil {
		t.Fatal("a refused Split consumed the buffer")
	}
	if same, err := b.Trim(0, 10000); err != nil || same != b {
		t.Fatalf("Trim to the whole = %v, %v", same, err)
	}

	h, tl, err := b.Split(3000)
	if err != nil {
		t.Fatal(err)
	}
	if b.Valid() == nil || !errors.Is(b.Release(), ErrInvalidBuffer) {
		t.Fatal("Split did not consume its handle")
	}
	if !bytes.Equal(h.Bytes(), want[:3000]) || !bytes.Equal(tl.Bytes(), want[3000:]) {
		t.Fatal("parts do not show the reservation's bytes")
	}
	_, r1, _ := p.Locate(h)
	_, r2, _ := p.Locate(tl)
	if r2 != r1+3000 {
		t.Errorf("tail at %d, head at %d", r2, r1)
	}
	mid, err := tl.Trim(100, 50)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mid.Bytes(), want[3100:3150]) || tl.Bytes() != nil {
		t.Fatal("Trim: wrong bytes, or the trimmed handle still works")
	}
	h1, h2, err := h.Split(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}

	// Three live parts: h1, h2, mid. The slots come back with the last.
	mustRelease(t, h1)
	if err := h1.Release(); !errors.Is(err, ErrInvalidBuffer) {
		t.Errorf("double release of a part = %v", err)
	}
	mustRelease(t, mid)
	if s := p.Stats(); s.SlotsInUse != 5 || s.Buffers != 1 {
		t.Fatalf("with one part live: %+v", s)
	}
	if !bytes.Equal(h2.Bytes(), want[1:3000]) {
		t.Fatal("releasing parts disturbed the live one")
	}
	_, off, _ := p.Locate(h2)
	mustRelease(t, h2)
	if s := p.Stats(); s.SlotsInUse != 0 || s.Buffers != 0 {
		t.Fatalf("after the last part: %+v", s)
	}
	// Poisoned, the whole run.
	r := p.regions.Load().list[0]
	if !bytes.Equal(r.mem[off-1:off-1+5*2048], bytes.Repeat([]byte{PoisonByte}, 5*2048)) {
		t.Error("released run not poisoned")
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
}

func TestPoison(t *testing.T) {
	for _, poisonOn := range []bool{false, true} {
		p := newPool(t, Config{Size: 64 << 10, HugePages: HugeOff, Pin: PinOff, Poison: poisonOn})
		for _, n := range []int{100, 5000} {
			b := mustReserve(t, p, n)
			mem := b.Bytes()
			for i := range mem {
				mem[i] = 0x11
			}
			_, off, _ := p.Locate(b)
			mustRelease(t, b)
			k := slotsFor(uint32(n), p.shift) << p.shift
			got := p.regions.Load().list[0].mem[off : off+k]
			wantByte := byte(0x11)
			if poisonOn {
				wantByte = PoisonByte
			}
			if !bytes.Equal(got[:n], bytes.Repeat([]byte{wantByte}, n)) {
				t.Errorf("poison=%v n=%d: released memory is not %#x", poisonOn, n, wantByte)
			}
			if poisonOn && !bytes.Equal(got, bytes.Repeat([]byte{PoisonByte}, k)) {
				t.Errorf("n=%d: slack of the last slot not poisoned", n)
			}
		}
	}
}

func TestExhaustAndGrow(t *testing.T) {
	p := newPool(t, Config{Size: 64 << 10, HugePages: HugeOff}) // 32 slots
	var held []Buf
	for {
		b, err := p.Reserve(2048)
		if err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Reserve: %v", err)
			}
			break
		}
		held = append(held, b)
	}
	if len(held) != 32 {
		t.Fatalf("got %d slots from a 32-slot pool", len(held))
	}
	if _, err := p.Reserve(5000); !errors.Is(err, ErrExhausted) {
		t.Fatalf("run from a full pool: %v", err)
	}
	if hw := p.highWater.Load(); hw != 32 {
		t.Errorf("high water %d before any Stats call; the full group should have recorded 32", hw)
	}
	s := p.Stats()
	if s.ReservesFailed != 2 || s.HighWater != 32 || s.SlotsTotal != 32 {
		t.Fatalf("Stats %+v", s)
	}
	if err := p.Grow(0); !errors.Is(err, ErrSize) {
		t.Errorf("Grow(0) = %v", err)
	}
	if err := p.Grow(128 << 10); err != nil {
		t.Fatal(err)
	}
	info := p.Regions()
	if len(info) != 2 || info[1].Base != 64<<10 || info[1].Size != 128<<10 || info[1].Index != 1 {
		t.Fatalf("Regions after Grow: %+v", info)
	}
	big := mustReserve(t, p, 128<<10) // the whole new region
	if reg, off, err := p.Locate(big); err != nil || reg != 1 || off != 0 {
		t.Fatalf("Locate = %d, %d, %v", reg, off, err)
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
	mustRelease(t, big)
	// Freed slots come back even though the groups were marked full.
	mustRelease(t, held[7])
	b := mustReserve(t, p, 1)
	if _, off, _ := p.Locate(b); off != 7*2048 {
		// region 0 is full but slot 7; region 1 is empty. Either is fine,
		// as long as the summary did not hide slot 7 for good:
		mustRelease(t, b)
		b = mustReserve(t, p, 128<<10) // fill region 1
		c := mustReserve(t, p, 1)
		if reg, off, _ := p.Locate(c); reg != 0 || off != 7*2048 {
			t.Errorf("slot 7 not found again: got region %d offset %d", reg, off)
		}
		mustRelease(t, c)
	}
	mustRelease(t, b)
	for i, b := range held {
		if i != 7 {
			mustRelease(t, b)
		}
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
}

func TestNewSplitsLargeSize(t *testing.T) {
	regionLimit = 64 << 10
	defer func() { regionLimit = MaxRegionSize }()
	p := newPool(t, Config{Size: 3*regionLimit + 1, HugePages: HugeOff, Pin: PinOff})
	info := p.Regions()
	if len(info) != 4 || info[0].Size != regionLimit || info[3].Base != 3*int64(regionLimit) || info[3].Size != 4096 {
		t.Fatalf("Regions: %+v", info)
	}
	if _, err := p.Reserve(regionLimit + 1); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Reserve larger than any region = %v", err)
	}
	if _, err := p.Reserve(regionLimit); err != nil {
		// The first region is one free run of MaxRegionSize.
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, ErrBusy) {
		t.Fatalf("Close = %v", err)
	}
	rs := p.regions.Load()
	for _, r := range rs.list { // release by hand: the handle was dropped above
		for i := range r.words {
			if wordState(r.words[i].Load()) == stateHead {
				v := r.words[i].Load()
				mustRelease(t, newBuf(p, wordGen(v), r.index, uint32(i), wordLen(v)))
			}
		}
	}
}

func TestClose(t *testing.T) {
	p, err := New(small())
	if err != nil {
		t.Fatal(err)
	}
	a := mustReserve(t, p, 10)
	b := mustReserve(t, p, 70000)
	c, d, err := mustReserve(t, p, 3000).Split(1000)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Close()
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "3 buffers") {
		t.Fatalf("Close with 3 reservations out = %v", err)
	}
	// Still usable after the refusal.
	e := mustReserve(t, p, 10)
	for _, x := range []Buf{a, b, c, e} {
		mustRelease(t, x)
	}
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "1 buffers") {
		t.Fatalf("Close with a part out = %v", err)
	}
	mustRelease(t, d)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := p.Reserve(10); !errors.Is(err, ErrClosed) {
		t.Errorf("Reserve after Close = %v", err)
	}
	if _, err := p.Reserve(10000); !errors.Is(err, ErrClosed) {
		t.Errorf("Reserve run after Close = %v", err)
	}
	if err := p.Grow(1 << 20); !errors.Is(err, ErrClosed) {
		t.Errorf("Grow after Close = %v", err)
	}
	if a.Bytes() != nil || !errors.Is(a.Release(), ErrInvalidBuffer) {
		t.Error("old handle works after Close")
	}
	if s := p.Stats(); s.SlotsInUse != 0 || s.BytesPinned != 0 || p.Pinned() || p.Regions() != nil {
		t.Errorf("after Close: %+v pinned %v regions %v", s, p.Pinned(), p.Regions())
	}
}

// TestZeroPool: a Pool not made by New refuses everything without panicking.
func TestZeroPool(t *testing.T) {
	var p Pool
	for _, n := range []int{1, 5000} {
		if _, err := p.Reserve(n); !errors.Is(err, ErrClosed) {
			t.Errorf("Reserve(%d) on a zero Pool = %v", n, err)
		}
	}
	if _, err := p.ReserveContext(t.Context(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("ReserveContext on a zero Pool = %v", err)
	}
	if err := p.Grow(1 << 20); !errors.Is(err, ErrClosed) {
		t.Errorf("Grow on a zero Pool = %v", err)
	}
	if err := p.Release(Buf{p: &p}); !errors.Is(err, ErrInvalidBuffer) {
		t.Errorf("Release on a zero Pool = %v", err)
	}
	if (Buf{p: &p}).Bytes() != nil || p.Pinned() || len(p.Regions()) != 0 || p.Stats().SlotsTotal != 0 {
		t.Error("a zero Pool reports memory")
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close on a zero Pool = %v", err)
	}
}
