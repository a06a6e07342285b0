package dmapool

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStress runs many goroutines that reserve, write their own tag, check
// it, split, pass buffers to each other and release, while others call
// Stats, Grow and a Close that must be refused. Run it with -race. A slot
// handed to two owners shows as a wrong tag; a broken slot word as a
// failed invariant or a lost slot at the end.
func TestStress(t *testing.T) {
	const (
		workers = 8
		iters   = 3000
	)
	p, err := New(Config{Size: 512 << 10, HugePages: HugeOff, Pin: PinPrefer})
	if err != nil {
		t.Fatal(err)
	}
	pinned := mustReserve(t, p, 10) // keeps every Close below busy

	var (
		wg      sync.WaitGroup
		handoff = make(chan Buf, 64)
		bad     atomic.Int64
		done    = make(chan struct{})
	)
	check := func(b Buf, tag byte) bool {
		for _, c := range b.Bytes() {
			if c != tag {
				bad.Add(1)
				return false
			}
		}
		return true
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			tag := byte(w + 1)
			var held []Buf
			for i := range iters {
				n := 1 + rng.IntN(2048)
				if rng.IntN(4) == 0 {
					n = 2049 + rng.IntN(70<<10)
				}
				var b Buf
				var err error
				if rng.IntN(8) == 0 {
					// Every worker may hold buffers while it waits, so the
					// wait must be bounded; half give up at once.
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					if rng.IntN(2) == 0 {
						cancel()
					}
					b, err = p.ReserveContext(ctx, n)
					cancel()
				} else {
					b, err = p.Reserve(n)
				}
				if err != nil {
					if !errors.Is(err, ErrExhausted) {
						t.Errorf("reserve: %v", err)
						return
					}
				} else {
					fill(b, tag)
					held = append(held, b)
				}
				if len(held) > 0 && (len(held) > 6 || rng.IntN(2) == 0) {
					j := rng.IntN(len(held))
					b := held[j]
					held[j] = held[len(held)-1]
					held = held[:len(held)-1]
					if !check(b, tag) {
						continue
					}
					switch rng.IntN(4) {
					case 0: // split; release one part here, hand the other on
						if b.Len() > 1 {
							h, tl, err := b.Split(1 + rng.IntN(b.Len()-1))
							if err != nil {
								t.Errorf("split: %v", err)
								return
							}
							fill(tl, 0xEE)
							select {
							case handoff <- tl:
							default:
								mustReleaseAsync(t, tl)
							}
							b = h
						}
					case 1: // hand it to another goroutine
						fill(b, 0xEE)
						select {
						case handoff <- b:
							continue
						default:
						}
					}
					if err := b.Release(); err != nil {
						t.Errorf("release: %v", err)
					}
					if err := b.Release(); !errors.Is(err, ErrInvalidBuffer) {
						t.Errorf("double release: %v", err)
					}
				}
				if i%16 == 0 {
					select {
					case x := <-handoff:
						if check(x, 0xEE) {
							mustReleaseAsync(t, x)
						}
					default:
					}
				}
			}
			for _, b := range held {
				if check(b, tag) {
					mustReleaseAsync(t, b)
				}
			}
		}()
	}
	var side sync.WaitGroup
	side.Add(1)
	go func() { // the bystander: stats, a refused close, growth
		defer side.Done()
		grown := 0
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			s := p.Stats()
			if s.SlotsInUse > s.SlotsTotal || s.HighWater > s.SlotsTotal {
				t.Errorf("Stats out of range: %+v", s)
			}
			if err := p.Close(); !errors.Is(err, ErrBusy) {
				t.Errorf("Close during use = %v", err)
				return
			}
			if i%64 == 0 && grown < 2 {
				grown++
				if err := p.Grow(128 << 10); err != nil {
					t.Errorf("Grow: %v", err)
				}
			}
		}
	}()
	wg.Wait()
	close(done)
	side.Wait()
	close(handoff)
	for b := range handoff {
		if check(b, 0xEE) {
			mustRelease(t, b)
		}
	}
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d buffers held bytes of another owner: a slot was handed out twice", n)
	}
	mustRelease(t, pinned)
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.SlotsInUse != 0 || s.Buffers != 0 {
		t.Fatalf("slots lost: %+v", s)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// mustReleaseAsync is mustRelease for goroutines other than the test's.
func mustReleaseAsync(t *testing.T, b Buf) {
	if err := b.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestStressCloseRace races Reserve/Release against Close attempts on a
// pool that may be empty at any moment: every Close either succeeds (and
// then nothing is outstanding, and no later reservation succeeds) or is
// refused with ErrBusy.
func TestStressCloseRace(t *testing.T) {
	for round := range 20 {
		p, err := New(Config{Size: 64 << 10, HugePages: HugeOff, Pin: PinOff})
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg, started sync.WaitGroup
			closed      atomic.Bool
		)
		for w := range 3 {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					if i == 100 {
						started.Done()
					}
					n := 100
					if (i+w)%3 == 0 {
						n = 9000
					}
					b, err := p.Reserve(n)
					if err != nil {
						if errors.Is(err, ErrClosed) {
							if i < 100 {
								started.Done()
							}
							return
						}
						if !errors.Is(err, ErrExhausted) {
							t.Errorf("Reserve: %v", err)
						}
						continue
					}
					if closed.Load() {
						t.Errorf("round %d: a reservation succeeded after Close", round)
					}
					b.Bytes()[0] = 1 // faults if the memory was unmapped
					if err := b.Release(); err != nil {
						t.Errorf("Release: %v", err)
					}
				}
			}()
		}
		started.Wait()
		for {
			err := p.Close()
			if err == nil {
				closed.Store(true)
				break
			}
			if !errors.Is(err, ErrBusy) {
				t.Fatalf("Close: %v", err)
			}
		}
		wg.Wait()
	}
}
