package dmapool

import (
	"runtime/debug"
	"sync"
	"testing"
)

// TestStackHintDistinguishesGoroutines: goroutines alive at the same time
// get different hints after the shift homeHash applies, so they get
// different homes unless the hash collides.
//
// A goroutine's stack moves when it grows (the race detector's calls grow it
// between the hint and the wait) or when a collection shrinks it, and the
// memory it leaves can become another goroutine's stack: two hints were then
// equal without two live stacks sharing an address. So each goroutine grows
// its stack before its hint, collections are off during the test, and each
// goroutine takes its hint again once every hint has been taken: two equal
// hints fail the test only if neither goroutine's stack moved in between.
func TestStackHintDistinguishesGoroutines(t *testing.T) {
	const n = 16
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var (
		ready, done  sync.WaitGroup
		release      = make(chan struct{})
		hints, again [n]uintptr
	)
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			// One call site for both hints, so that both are the
			// address of the same variable in the same frame.
			growStack()
			for k := range 2 {
				h := stackHint() >> 11
				if k == 1 {
					again[i] = h
					break
				}
				hints[i] = h
				ready.Done()
				<-release // stay alive until every hint is taken
			}
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	seen := map[uintptr]int{}
	moved := 0
	for i, h := range hints {
		if again[i] != h {
			moved++
			continue
		}
		if j, dup := seen[h]; dup {
			t.Fatalf("goroutines %d and %d share stack hint %#x", j, i, h)
		}
		seen[h] = i
	}
	if moved > n/2 {
		// The check above would then have little left to compare.
		t.Fatalf("%d of %d goroutines' stacks moved while they waited", moved, n)
	}
}

// growStack uses enough stack that the calling goroutine's stack grows now,
// once, rather than in the middle of the test.
//
//go:noinline
func growStack() byte {
	var b [32 << 10]byte
	for i := range b {
		b[i] = byte(i)
	}
	return b[len(b)-1]
}
