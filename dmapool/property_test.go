package dmapool

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// model is what the pool should hold: reservations by (region, head slot),
// each with its live parts, and which slots they occupy.
type model struct {
	t     *testing.T
	p     *Pool
	occ   [][]bool // region -> slot -> reserved
	res   map[[2]int]*modelRes
	parts []modelPart // every live part, for picking at random
	dead  []Buf       // released or consumed handles
}

type modelRes struct {
	slots int
	live  int // parts
}

type modelPart struct {
	b   Buf
	key [2]int
	tag byte
}

func (m *model) sync() {
	m.occ = m.occ[:0]
	for _, r := range m.p.regions.Load().list {
		m.occ = append(m.occ, make([]bool, r.nslots))
	}
	for key, r := range m.res {
		for i := key[1]; i < key[1]+r.slots; i++ {
			m.occ[key[0]][i] = true
		}
	}
}

func (m *model) usedSlots() (n int) {
	for _, r := range m.res {
		n += r.slots
	}
	return n
}

// hasRun reports whether some region has k free contiguous slots.
func (m *model) hasRun(k int) bool {
	for _, occ := range m.occ {
		run := 0
		for _, used := range occ {
			if used {
				run = 0
			} else if run++; run >= k {
				return true
			}
		}
	}
	return false
}

func fill(b Buf, tag byte) {
	mem := b.Bytes()
	for i := range mem {
		mem[i] = tag
	}
}

func holds(b Buf, tag byte) bool {
	for _, c := range b.Bytes() {
		if c != tag {
			return false
		}
	}
	return b.Bytes() != nil
}

func (m *model) reserve(n int, tag byte) {
	b, err := m.p.Reserve(n)
	k := slotsFor(uint32(n), m.p.shift)
	if errors.Is(err, ErrExhausted) {
		if m.hasRun(k) {
			m.t.Fatalf("Reserve(%d) exhausted, but the model has %d free slots in a row", n, k)
		}
		return
	}
	if err != nil {
		m.t.Fatalf("Reserve(%d): %v", n, err)
	}
	region, off, err := m.p.Locate(b)
	if err != nil {
		m.t.Fatal(err)
	}
	head := off >> m.p.shift
	for i := head; i < head+k; i++ {
		if m.occ[region][i] {
			m.t.Fatalf("Reserve(%d) gave slot %d of region %d, which is reserved", n, i, region)
		}
		m.occ[region][i] = true
	}
	key := [2]int{region, head}
	m.res[key] = &modelRes{slots: k, live: 1}
	fill(b, tag)
	m.parts = append(m.parts, modelPart{b: b, key: key, tag: tag})
}

func (m *model) take(i int) modelPart {
	pt := m.parts[i]
	m.parts[i] = m.parts[len(m.parts)-1]
	m.parts = m.parts[:len(m.parts)-1]
	return pt
}

func (m *model) release(i int) {
	pt := m.take(i)
	if !holds(pt.b, pt.tag) {
		m.t.Fatalf("part %+v lost its bytes: someone else wrote into them", pt.b)
	}
	if err := pt.b.Release(); err != nil {
		m.t.Fatalf("Release: %v", err)
	}
	m.dead = append(m.dead, pt.b)
	r := m.res[pt.key]
	if r.live--; r.live == 0 {
		for s := pt.key[1]; s < pt.key[1]+r.slots; s++ {
			m.occ[pt.key[0]][s] = false
		}
		delete(m.res, pt.key)
	}
}

func (m *model) split(i, at int) {
	pt := m.parts[i]
	h, tl, err := pt.b.Split(at)
	if at <= 0 || at >= pt.b.Len() {
		if !errors.Is(err, ErrSize) {
			m.t.Fatalf("Split(%d) of %d bytes = %v", at, pt.b.Len(), err)
		}
		return
	}
	if err != nil {
		m.t.Fatalf("Split: %v", err)
	}
	m.take(i)
	m.dead = append(m.dead, pt.b)
	m.res[pt.key].live++
	m.parts = append(m.parts, modelPart{h, pt.key, pt.tag}, modelPart{tl, pt.key, pt.tag})
}

func (m *model) trim(i, off, n int) {
	pt := m.parts[i]
	out, err := pt.b.Trim(off, n)
	if off < 0 || n <= 0 || off+n > pt.b.Len() {
		if !errors.Is(err, ErrSize) {
			m.t.Fatalf("Trim(%d, %d) of %d bytes = %v", off, n, pt.b.Len(), err)
		}
		return
	}
	if err != nil {
		m.t.Fatalf("Trim: %v", err)
	}
	m.take(i)
	if out != pt.b {
		m.dead = append(m.dead, pt.b)
	}
	m.parts = append(m.parts, modelPart{out, pt.key, pt.tag})
}

func (m *model) check() {
	if err := checkInvariants(m.p); err != nil {
		m.t.Fatal(err)
	}
	s := m.p.Stats()
	if s.SlotsInUse != m.usedSlots() || s.Buffers != len(m.res) {
		m.t.Fatalf("Stats say %d slots, %d buffers; model %d, %d", s.SlotsInUse, s.Buffers, m.usedSlots(), len(m.res))
	}
	for _, pt := range m.parts {
		if err := pt.b.Valid(); err != nil || !holds(pt.b, pt.tag) {
			m.t.Fatalf("live part %+v: %v", pt.b, err)
		}
	}
}

// TestProperty runs random reserve / release / split / trim / grow sequences
// against the model: no slot is given twice, a released or consumed handle
// never works again, and at the end every slot is back.
func TestProperty(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		slot := []int{512, 2048, 4096}[seed%3]
		p, err := New(Config{Size: 192 << 10, SlotSize: slot, HugePages: HugeOff, Poison: seed%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		m := &model{t: t, p: p, res: map[[2]int]*modelRes{}}
		m.sync()
		grows := 0
		for step := range 3000 {
			switch op := rng.IntN(100); {
			case op < 40:
				n := 1 + rng.IntN(slot)
				if rng.IntN(3) == 0 {
					n = 1 + rng.IntN(80<<10)
				}
				m.reserve(n, byte(step))
			case op < 70 && len(m.parts) > 0:
				m.release(rng.IntN(len(m.parts)))
			case op < 80 && len(m.parts) > 0:
				i := rng.IntN(len(m.parts))
				m.split(i, rng.IntN(m.parts[i].b.Len()+1))
			case op < 85 && len(m.parts) > 0:
				i := rng.IntN(len(m.parts))
				l := m.parts[i].b.Len()
				off := rng.IntN(l + 1)
				m.trim(i, off, rng.IntN(l-off+2))
			case op < 92 && len(m.dead) > 0:
				d := m.dead[rng.IntN(len(m.dead))]
				if err := d.Release(); !errors.Is(err, ErrInvalidBuffer) {
					t.Fatalf("seed %d step %d: dead handle released: %v", seed, step, err)
				}
				if d.Bytes() != nil {
					t.Fatalf("seed %d step %d: dead handle has bytes", seed, step)
				}
			case op < 93 && grows < 3:
				grows++
				if err := p.Grow((32 + rng.IntN(64)) << 10); err != nil {
					t.Fatal(err)
				}
				m.sync()
			default:
				m.check()
			}
		}
		m.check()
		for len(m.parts) > 0 {
			m.release(len(m.parts) - 1)
		}
		m.check()
		if s := p.Stats(); s.SlotsInUse != 0 || s.Buffers != 0 {
			t.Fatalf("seed %d: slots not all returned: %+v", seed, s)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}
