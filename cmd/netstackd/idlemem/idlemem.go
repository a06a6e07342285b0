// Package idlemem gives a daemon's idle heap memory back to the OS within
// seconds of a burst instead of the minutes the runtime's scavenger takes.
// It owns that policy (a periodic check of one runtime metric, and two
// collections then debug.FreeOSMemory when too much is free); it does not
// limit or account for the memory a program uses.
package idlemem

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// CheckPeriod and IdleMax are Start's arguments for a daemon.
//
// After a burst — a flood the links dropped most of, or many connections
// at once — the Go heap holds the memory it grew to, freed but not given
// back: the runtime's background scavenger returns it over minutes. A
// daemon's resident memory should come back down within seconds, as the
// kernel's does, so a daemon checks every CheckPeriod how much of the
// heap is free and not yet returned, and when that exceeds IdleMax,
// returns it (two collections, so that what gVisor's sync.Pools kept is
// freed too, then every free page back to the OS: debug.FreeOSMemory). It
// costs nothing while the heap is steady: a read of one runtime metric.
const (
	CheckPeriod = 2 * time.Second
	IdleMax     = 8 << 20
)

// heapFreeMetric is the heap memory that is free and not returned to the OS.
const heapFreeMetric = "/memory/classes/heap/free:bytes"

// HeapFree reads heapFreeMetric.
func HeapFree() uint64 {
	s := []metrics.Sample{{Name: heapFreeMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Return returns the heap's free memory to the OS if there is more
// than max of it, and reports whether it did.
func Return(max uint64) bool {
	if HeapFree() <= max {
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

// Start checks every period (see above) until the returned
// stop is called; stop waits for the checker to end.
func Start(period time.Duration, max uint64) (stop func()) {
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
				Return(max)
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
