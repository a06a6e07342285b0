package dmapool

import (
	"errors"
	"testing"
)

// fuzzFixture is a small pool holding one of every kind of handle: a
// one-slot reservation, a run, two parts of a split run, a released
// handle, a consumed handle, and a live handle of another pool.
type fuzzFixture struct {
	p, other *Pool
	live     []Buf // every live handle of both pools, each filled with its index+1
	bases    []Buf // handles to start a forgery from
}

func newFuzzFixture(tb testing.TB) *fuzzFixture {
	cfg := Config{Size: 64 << 10, HugePages: HugeOff, Pin: PinOff}
	f := &fuzzFixture{p: newPool(tb, cfg), other: newPool(tb, cfg)}
	one := mustReserve(tb, f.p, 700)
	run := mustReserve(tb, f.p, 9000)
	whole := mustReserve(tb, f.p, 6000)
	h, tl, err := whole.Split(2500)
	if err != nil {
		tb.Fatal(err)
	}
	dead := mustReserve(tb, f.p, 100)
	mustRelease(tb, dead)
	foreign := mustReserve(tb, f.other, 100)
	f.live = []Buf{one, run, h, tl, foreign}
	for i, b := range f.live {
		fill(b, byte(i+1))
	}
	f.bases = []Buf{{}, one, run, h, tl, dead, whole, foreign}
	return f
}

// isLive reports whether b is, field for field, one of the live handles.
func (f *fuzzFixture) isLive(b Buf) int {
	for i, l := range f.live {
		if b == l {
			return i
		}
	}
	return -1
}

// FuzzHandle forges handles from real ones by flipping bits of the
// reservation id and shifting offset and length, then uses them. A handle
// that is not one of the live ones must be refused with ErrInvalidBuffer
// (and Bytes must be nil); a live one must work. Nothing may panic, and
// the pool's invariants and the live buffers' bytes must survive.
func FuzzHandle(f *testing.F) {
	f.Add(byte(1), uint64(0), uint32(0), uint32(0), byte(0), uint16(0))
	f.Add(byte(1), uint64(1)<<idGenShift, uint32(0), uint32(0), byte(2), uint16(0))
	f.Add(byte(3), uint64(0), uint32(2500), uint32(0), byte(2), uint16(0))
	f.Add(byte(2), uint64(0), uint32(0), uint32(1), byte(3), uint16(10))
	f.Add(byte(5), uint64(0), uint32(0), uint32(0), byte(2), uint16(0))
	f.Add(byte(7), uint64(0), uint32(0), uint32(0), byte(2), uint16(0))
	f.Fuzz(func(t *testing.T, base byte, idXor uint64, offAdd, nAdd uint32, op byte, arg uint16) {
		fx := newFuzzFixture(t)
		b := fx.bases[int(base)%len(fx.bases)]
		b.id ^= idXor
		b.off += offAdd
		b.n += nAdd
		if base&0x80 != 0 {
			b.p = fx.other
		}
		live := fx.isLive(b)

		var err error
		switch op % 6 {
		case 0:
			err = b.Valid()
		case 1:
			if mem := b.Bytes(); (mem != nil) != (live >= 0) {
				t.Fatalf("Bytes of %+v: %d bytes, live %v", b, len(mem), live >= 0)
			}
		case 2:
			err = b.Release()
			if err == nil {
				fx.live = append(fx.live[:live], fx.live[live+1:]...)
			}
		case 3:
			var h, tl Buf
			h, tl, err = b.Split(int(arg))
			if err == nil {
				fx.live[live] = h
				fx.live = append(fx.live, tl)
			}
		case 4:
			var out Buf
			out, err = b.Trim(int(arg&0xff), int(arg>>8)+1)
			if err == nil {
				fx.live[live] = out
			}
		case 5:
			err = fx.p.Validate(b)
			if b.p != fx.p {
				if !errors.Is(err, ErrInvalidBuffer) {
					t.Fatalf("Validate of another pool's handle %+v = %v", b, err)
				}
				err, live = nil, 0 // checked; nothing more to say
			}
		}
		switch {
		case live < 0 && err == nil && op%6 != 1:
			t.Fatalf("op %d on forged handle %+v succeeded", op%6, b)
		case live < 0 && err != nil && !errors.Is(err, ErrInvalidBuffer):
			t.Fatalf("op %d on forged handle %+v: %v, want ErrInvalidBuffer", op%6, b, err)
		case live >= 0 && err != nil && !errors.Is(err, ErrSize):
			t.Fatalf("op %d on live handle %+v: %v", op%6, b, err)
		}
		for _, p := range []*Pool{fx.p, fx.other} {
			if err := checkInvariants(p); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range fx.live {
			if l.Valid() != nil || l.Bytes() == nil {
				t.Fatalf("live handle %+v broken by op %d on %+v", l, op%6, b)
			}
		}
		for _, l := range fx.live {
			if err := l.Release(); err != nil {
				t.Fatalf("releasing live handle %+v: %v", l, err)
			}
		}
		for _, p := range []*Pool{fx.p, fx.other} {
			if s := p.Stats(); s.SlotsInUse != 0 {
				t.Fatalf("slots lost: %+v", s)
			}
		}
	})
}
