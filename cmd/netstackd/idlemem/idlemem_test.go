package idlemem

import (
	"runtime"
	"testing"
	"time"
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
