package idlemem

import (
	"runtime"
	"runtime/debug"
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
	stop := start(10*time.Millisecond, IdleMax, base) // started at idle, before the burst
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

// TestSoftLimit checks that SoftLimit sets the runtime's limit to the Go
// memory in use plus the headroom, and leaves a GOMEMLIMIT from the
// environment alone.
func TestSoftLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	before := int64(GoMemory())
	got := SoftLimit(48 << 20)
	after := int64(GoMemory())
	if set := debug.SetMemoryLimit(-1); set != got || got < before+48<<20 || got > after+48<<20 {
		t.Fatalf("SoftLimit = %d, runtime limit %d; want Go memory (%d..%d) + 48 MiB", got, set, before, after)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30)
	if got := SoftLimit(48 << 20); got != 1<<30 || debug.SetMemoryLimit(-1) != 1<<30 {
		t.Fatalf("with GOMEMLIMIT set, SoftLimit = %d and the limit changed", got)
	}
}
