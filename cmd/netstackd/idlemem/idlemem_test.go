package idlemem

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

var sink [][]byte

// TestReturnIdle grows the heap by 64 MiB of garbage and checks that
// Return gives the freed memory back to the OS (the heap's free,
// unreturned bytes fall under the bound), and does nothing when there is
// less than the bound.
func TestReturnIdle(t *testing.T) {
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	before := HeapFree()
	if did := Return(IdleMax); did != (before > IdleMax) {
		t.Fatalf("%d bytes free in the heap, bound %d: returned %v", before, IdleMax, did)
	}
	if f := HeapFree(); f > IdleMax {
		t.Fatalf("after returning: %d bytes still free and unreturned", f)
	}
	if Return(IdleMax) {
		t.Fatal("returned again with nothing idle")
	}
	stop := Start(time.Millisecond, IdleMax)
	stop()
	stop() // idempotent
}

// TestDue checks the policy: memory free over the bound is returned at
// once; heap objects over the floor by more than a quarter of the bound
// are collected only after a period with no collection of the runtime's
// own (the heap is quiet, not busy).
func TestDue(t *testing.T) {
	const max, floor = 8 << 20, 10 << 20
	quiet := Sample{Cycles: 5}
	for _, c := range []struct {
		name      string
		prev, cur Sample
		want      bool
	}{
		{"steady", quiet, Sample{Free: max, Objects: floor + max/4, Cycles: 5}, false},
		{"free over the bound", quiet, Sample{Free: max + 1, Cycles: 9}, true},
		{"grown, quiet", quiet, Sample{Objects: floor + max/4 + 1, Cycles: 5}, true},
		{"grown, busy", quiet, Sample{Objects: floor + 4*max, Cycles: 6}, false},
	} {
		if got := Due(c.prev, c.cur, floor, max); got != c.want {
			t.Errorf("%s: Due(%+v, %+v) = %v, want %v", c.name, c.prev, c.cur, got, c.want)
		}
	}
}

// quietGarbage runs the checker over a heap holding 64 MiB of dead objects
// with the collector held off (as a burst that stops short of the next
// collection leaves it), made by dead, and checks that it collects and
// returns them within a few periods although none of it was free.
func quietGarbage(t *testing.T, dead func()) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	base := Read().Live
	dead()
	if s := Read(); s.Objects < base+60<<20 || s.Free > IdleMax {
		t.Fatalf("after the burst: %+v, want about 64 MiB of objects over %d and little free", s, base)
	}
	stop := start(10*time.Millisecond, time.Hour, IdleMax, base, nil) // started at idle, before the burst
	defer stop()
	if !evchantest.Poll(10*time.Second, func() bool { s := Read(); return s.Objects < base+IdleMax/4 && s.Free < IdleMax }) {
		t.Fatalf("dead heap not collected and returned: %+v (live before %d)", Read(), base)
	}
}

// TestStartCollectsQuietGarbage: objects allocated since the last
// collection, dead by the time the heap goes quiet.
func TestStartCollectsQuietGarbage(t *testing.T) {
	quietGarbage(t, func() {
		for range 64 {
			sink = append(sink, make([]byte, 1<<20))
		}
		sink = nil
	})
}

// TestStartCollectsQuietDeadLive: objects the last collection found
// alive (a burst's queued packets), dead since.
func TestStartCollectsQuietDeadLive(t *testing.T) {
	quietGarbage(t, func() {
		for range 64 {
			sink = append(sink, make([]byte, 1<<20))
		}
		runtime.GC() // marks them alive: the live heap is 64 MiB larger
		sink = nil
	})
}

// TestStartCollectsDeadAfterOwnCollection: objects that were alive when
// the checker itself collected (a burst's connections, still open), dead
// since with nothing allocated after (their TIME-WAIT ended): nothing
// grows, so only the recheck after a quiet spell collects them. Before,
// the checker's floor was the live heap of its own collection, and such
// memory stayed resident until the runtime's forced collection minutes
// later.
func TestStartCollectsDeadAfterOwnCollection(t *testing.T) {
	for _, tc := range []struct {
		recheck time.Duration
		want    bool
	}{{300 * time.Millisecond, true}, {time.Hour, false}} {
		got := deadAfterOwnCollection(t, tc.recheck)
		if got != tc.want {
			t.Errorf("recheck %v: memory collected and returned %v, want %v (%+v)", tc.recheck, got, tc.want, Read())
		}
	}
}

// deadAfterOwnCollection runs the scenario with a checker of the given
// recheck and reports whether the dead memory was collected and returned
// within 2 s (the recheck-less control shows the scenario is one the other
// checks miss).
func deadAfterOwnCollection(t *testing.T, recheck time.Duration) bool {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	base := Read().Live
	collections := make(chan Sample, 16)
	stop := start(10*time.Millisecond, recheck, IdleMax, base, func(s Sample) {
		select {
		case collections <- s:
		default:
		}
	})
	defer stop()
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	// The heap grew while quiet: the checker collects, and finds it alive.
	deadline := time.After(10 * time.Second)
	for alive := false; !alive; {
		select {
		case s := <-collections:
			alive = s.Live >= base+60<<20
		case <-deadline:
			t.Fatalf("checker did not collect the grown heap: %+v (live before %d)", Read(), base)
		}
	}
	sink = nil
	return evchantest.Poll(2*time.Second, func() bool { s := Read(); return s.Objects < base+IdleMax/4 && s.Free < IdleMax })
}

// TestPressureGate checks when the soft limit is on: from the first rise
// of the pressure count, through rises closer together than calm, until
// calm has passed without one; and not at all while the count stands.
func TestPressureGate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := &pressureGate{limit: 100 << 20, calm: 5 * time.Second, last: 7}
	steps := []struct {
		at      time.Duration
		p       uint64
		limit   int64
		changed bool
	}{
		{0, 7, 0, false},                        // no flood: nothing set
		{time.Second, 7, 0, false},              // still none
		{2 * time.Second, 9, 100 << 20, true},   // drops: the limit goes on
		{3 * time.Second, 50, 0, false},         // more drops: stays on
		{7 * time.Second, 50, 0, false},         // 4 s calm: still on
		{8 * time.Second, 50, noLimit, true},    // 5 s calm: lifted
		{9 * time.Second, 50, 0, false},         // stays off
		{10 * time.Second, 51, 100 << 20, true}, // a new flood: on again
	}
	for _, s := range steps {
		limit, changed := g.step(t0.Add(s.at), s.p)
		if limit != s.limit || changed != s.changed {
			t.Fatalf("at %v count %d: limit %d changed %v, want %d %v", s.at, s.p, limit, changed, s.limit, s.changed)
		}
	}
}

// TestLimitUnderPressure checks the runtime's limit itself: none while the
// count stands, the Go memory plus the headroom once it rises, none again
// after calm, the limit found at the start after stop; and that a
// GOMEMLIMIT from the environment is left alone.
func TestLimitUnderPressure(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	const start = 1 << 40
	debug.SetMemoryLimit(start)
	var drops atomic.Uint64
	before := int64(GoMemory())
	stop := LimitUnderPressure(48<<20, time.Millisecond, 50*time.Millisecond, drops.Load)
	defer stop()
	// The count stands: the limit is not touched. (Checked over many
	// periods by polling that must not succeed.)
	if evchantest.Poll(20*time.Millisecond, func() bool { return debug.SetMemoryLimit(-1) != start }) {
		t.Fatalf("limit set to %d with no drops", debug.SetMemoryLimit(-1))
	}
	drops.Add(3)
	evchantest.Eventually(t, "the limit set under pressure", func() bool {
		l := debug.SetMemoryLimit(-1)
		return l >= before+48<<20 && l < before+96<<20
	})
	evchantest.Eventually(t, "the limit lifted after calm", func() bool { return debug.SetMemoryLimit(-1) == noLimit })
	stop()
	if l := debug.SetMemoryLimit(-1); l != start {
		t.Fatalf("after stop the limit is %d, want the one found at the start, %d", l, start)
	}

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30)
	stop2 := LimitUnderPressure(48<<20, time.Millisecond, time.Hour, drops.Load)
	drops.Add(1)
	if evchantest.Poll(20*time.Millisecond, func() bool { return debug.SetMemoryLimit(-1) != 1<<30 }) {
		t.Fatal("with GOMEMLIMIT set, the limit changed")
	}
	stop2()
}
