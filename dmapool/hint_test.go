package dmapool

import (
	"sync"
	"testing"
)

// TestStackHintDistinguishesGoroutines: goroutines alive at the same time
// get different hints after the shift homeHash applies, so they get
// different homes unless the hash collides.
func TestStackHintDistinguishesGoroutines(t *testing.T) {
	const n = 16
	var (
		ready, done sync.WaitGroup
		release     = make(chan struct{})
		hints       [n]uintptr
	)
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			hints[i] = stackHint() >> 11
			ready.Done()
			<-release // stay alive until every hint is taken
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	seen := map[uintptr]int{}
	for i, h := range hints {
		if j, dup := seen[h]; dup {
			t.Fatalf("goroutines %d and %d share stack hint %#x", j, i, h)
		}
		seen[h] = i
	}
}
