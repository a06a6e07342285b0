package main

import (
	"runtime"
	"testing"
	"time"
)

var sink [][]byte

// TestReturnIdle grows the heap by 64 MiB of garbage and checks that
// returnIdle gives the freed memory back to the OS (the heap's free,
// unreturned bytes fall under the bound), and does nothing when there is
// less than the bound.
func TestReturnIdle(t *testing.T) {
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	before := heapFree()
	if did := returnIdle(memIdleMax); did != (before > memIdleMax) {
		t.Fatalf("%d bytes free in the heap, bound %d: returned %v", before, memIdleMax, did)
	}
	if f := heapFree(); f > memIdleMax {
		t.Fatalf("after returning: %d bytes still free and unreturned", f)
	}
	if returnIdle(memIdleMax) {
		t.Fatal("returned again with nothing idle")
	}
	stop := startReturningIdle(time.Millisecond, memIdleMax)
	stop()
	stop() // idempotent
}
