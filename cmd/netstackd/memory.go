package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Returning idle memory.
//
// After a burst — a flood the links dropped most of, or many connections
// at once — the Go heap holds the memory it grew to, freed but not given
// back: the runtime's background scavenger returns it over minutes. A
// daemon's resident memory should come back down within seconds, as the
// kernel's does, so the daemon checks every memCheckPeriod how much of the
// heap is free and not yet returned, and when that exceeds memIdleMax,
// returns it (two collections, so that what gVisor's sync.Pools kept is
// freed too, then every free page back to the OS: debug.FreeOSMemory). It
// costs nothing while the heap is steady: a read of one runtime metric.
const (
	memCheckPeriod = 2 * time.Second
	memIdleMax     = 8 << 20
)

// heapFreeMetric is the heap memory that is free and not returned to the OS.
const heapFreeMetric = "/memory/classes/heap/free:bytes"

// heapFree reads heapFreeMetric.
func heapFree() uint64 {
	s := []metrics.Sample{{Name: heapFreeMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// returnIdle returns the heap's free memory to the OS if there is more
// than max of it, and reports whether it did.
func returnIdle(max uint64) bool {
	if heapFree() <= max {
		return false
	}
	// Two collections: the first moves what sync.Pools hold (gVisor
	// keeps freed packet buffers and chunks in them) to their victim
	// caches, the second (FreeOSMemory's) frees them, and the pages go
	// back.
	runtime.GC()
	debug.FreeOSMemory()
	return true
}

// startReturningIdle checks every period (see above) until the returned
// stop is called; stop waits for the checker to end.
func startReturningIdle(period time.Duration, max uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				returnIdle(max)
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
