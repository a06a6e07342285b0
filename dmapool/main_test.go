package dmapool

import (
	"fmt"
	"sort"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if runHelper() { // a child process started by a test; see helper_linux_test.go
		return
	}
	goleak.VerifyTestMain(m)
}

// newPool builds a pool for a test and closes it at the end, failing the
// test if buffers are still outstanding then.
func newPool(tb testing.TB, cfg Config) *Pool {
	tb.Helper()
	p, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return p
}

// small is a config for unit tests: 256 KiB (128 slots of 2 KiB), pinned,
// well under the 8 MiB RLIMIT_MEMLOCK of unprivileged CI machines.
func small() Config { return Config{Size: 256 << 10, HugePages: HugeOff} }

func mustReserve(tb testing.TB, p *Pool, n int) Buf {
	tb.Helper()
	b, err := p.Reserve(n)
	if err != nil {
		tb.Fatalf("Reserve(%d): %v", n, err)
	}
	return b
}

func mustRelease(tb testing.TB, b Buf) {
	tb.Helper()
	if err := b.Release(); err != nil {
		tb.Fatalf("Release: %v", err)
	}
}

// checkInvariants walks a quiescent pool and reports every broken rule:
//   - a reservation's slots lie in its region, its cover bits are set
//     exactly for runs, and no two reservations overlap;
//   - no slot is in flight (busy) and no cover bit is stray;
//   - no group marked full has a free slot;
//   - split reservations have a part set of disjoint parts inside the
//     reservation, and no other reservation has one.
func checkInvariants(p *Pool) error {
	rs := p.regions.Load()
	splits := 0
	for ri, r := range rs.list {
		owner := make([]int, r.nslots) // slot -> head+1
		for i := 0; i < r.nslots; i++ {
			v := r.words[i].Load()
			switch wordState(v) {
			case stateHead, stateSplit:
				n := wordLen(v)
				k := slotsFor(n, p.shift)
				if n == 0 || i+k > r.nslots {
					return fmt.Errorf("region %d slot %d: reservation of %d bytes does not fit", ri, i, n)
				}
				for j := i; j < i+k; j++ {
					if owner[j] != 0 {
						return fmt.Errorf("region %d slot %d: owned by heads %d and %d", ri, j, owner[j]-1, i)
					}
					owner[j] = i + 1
					if j > i && wordState(r.words[j].Load()) != stateFree {
						return fmt.Errorf("region %d slot %d: body of run at %d has word %#x", ri, j, i, r.words[j].Load())
					}
				}
				if wordState(v) == stateSplit {
					splits++
					b := newBuf(p, wordGen(v), ri, uint32(i), 0)
					st := p.stripeOf(partKey(b))
					st.mu.Lock()
					ps := st.parts[partKey(b)]
					var err error
					switch {
					case ps == nil:
						err = fmt.Errorf("region %d slot %d: split word without parts", ri, i)
					case ps.gen != wordGen(v):
						err = fmt.Errorf("region %d slot %d: parts of generation %d, word %d", ri, i, ps.gen, wordGen(v))
					case len(ps.parts) == 0:
						err = fmt.Errorf("region %d slot %d: empty part set", ri, i)
					default:
						parts := append([]span(nil), ps.parts...)
						sort.Slice(parts, func(a, b int) bool { return parts[a].off < parts[b].off })
						lo, hi := uint32(i)<<p.shift, uint32(i)<<p.shift+n
						end := lo
						for _, s := range parts {
							if s.n == 0 || s.off < end || s.off+s.n > hi {
								err = fmt.Errorf("region %d slot %d: part %+v overlaps or leaves [%d,%d)", ri, i, s, lo, hi)
								break
							}
							end = s.off + s.n
						}
					}
					st.mu.Unlock()
					if err != nil {
						return err
					}
				}
				i += k - 1
			case stateBusy:
				return fmt.Errorf("region %d slot %d: busy in a quiescent pool", ri, i)
			}
		}
		for i := 0; i < r.nslots; i++ {
			covered := r.cover[i>>groupShift].Load()>>(i&(groupSize-1))&1 != 0
			h := owner[i] - 1
			run := h >= 0 && slotsFor(wordLen(r.words[h].Load()), p.shift) > 1
			if covered != run {
				return fmt.Errorf("region %d slot %d: cover bit %v, in a run %v", ri, i, covered, run)
			}
		}
		for g := 0; g < r.groups(); g++ {
			if !r.isFull(g) {
				continue
			}
			for i := g << groupShift; i < min((g+1)<<groupShift, r.nslots); i++ {
				if owner[i] == 0 && wordState(r.words[i].Load()) == stateFree {
					return fmt.Errorf("region %d group %d: marked full but slot %d is free", ri, g, i)
				}
			}
		}
	}
	total := 0
	for i := range p.stripes {
		p.stripes[i].mu.Lock()
		total += len(p.stripes[i].parts)
		p.stripes[i].mu.Unlock()
	}
	if total != splits {
		return fmt.Errorf("%d part sets for %d split reservations", total, splits)
	}
	return nil
}
