// Package idlemem gives a daemon's idle heap memory back to the OS within
// seconds of a burst instead of the minutes the runtime's scavenger takes.
// It owns that policy (a periodic check of a few runtime metrics, and two
// collections then debug.FreeOSMemory when too much is free or dead), and
// the daemon's soft memory limit (LimitUnderPressure: while the links drop
// a flood, the runtime collects harder as the Go memory nears its idle
// size plus a headroom); it does not
// account for the memory a program maps itself, nor fail allocations.
package idlemem

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// CheckPeriod and IdleMax are Start's arguments for a daemon.
//
// After a burst — a flood the links dropped most of, or many connections
// at once — the Go heap holds memory the burst no longer needs in two
// forms, and a daemon's resident memory should come back down within
// seconds of it, as the kernel's does:
//
//   - freed but not given back: the runtime's background scavenger
//     returns it over minutes;
//   - dead but not yet collected: the runtime collects when the heap has
//     grown by GOGC percent since the last collection, and a burst that
//     stops short of that leaves everything it allocated since then
//     resident, dead or alive, until traffic resumes.
//
// So a daemon checks every CheckPeriod; when more than IdleMax of the
// heap is free and unreturned, or when no collection ran during the whole
// period and the heap grew by more than a quarter of IdleMax since the
// last one (what a burst leaves is mostly less than IdleMax: it ends
// within a collection's growth of the last one), it
// collects twice (so that what gVisor's sync.Pools kept is freed too) and
// returns every free page to the OS (debug.FreeOSMemory). It costs
// nothing while the heap is steady (a read of three runtime metrics), and
// at most one collection per period while it is busy: a busy heap is
// collected by the runtime itself, which the check sees.
//
// A third form the first two checks miss: memory a collection found alive
// — its own, during a burst — that died later with nothing allocated
// since, such as the endpoints of thousands of connections the stack
// closed first, freed when their TIME-WAIT ends a minute after the
// clients left. Nothing grows, so neither the runtime nor the checks
// above collect, and the dead endpoints stay resident until the runtime's
// forced collection every two minutes. So when no collection has run for
// Recheck and the heap's objects exceed the lowest live heap seen since
// Start by more than a quarter of IdleMax, the check collects as well: on
// a daemon idle with a large live heap (thousands of held connections)
// that costs one collection per Recheck.
const (
	CheckPeriod = 2 * time.Second
	IdleMax     = 8 << 20
	Recheck     = 20 * time.Second
)

// The runtime metrics a check reads.
const (
	heapFreeMetric    = "/memory/classes/heap/free:bytes"    // free, not returned to the OS
	heapObjectsMetric = "/memory/classes/heap/objects:bytes" // allocated objects, dead or alive, not yet swept
	heapLiveMetric    = "/gc/heap/live:bytes"                // live after the last collection
	gcCyclesMetric    = "/gc/cycles/total:gc-cycles"
)

// Sample is what a check reads of the runtime.
type Sample struct {
	// Free is the heap memory that is free and not returned to the OS.
	Free uint64
	// Objects is the memory of the heap's objects, dead or alive, not
	// yet freed; Live what of it the last collection found alive.
	Objects, Live uint64
	// Cycles counts the collections so far.
	Cycles uint64
}

// Read samples the runtime.
func Read() Sample {
	s := []metrics.Sample{{Name: heapFreeMetric}, {Name: heapObjectsMetric}, {Name: heapLiveMetric}, {Name: gcCyclesMetric}}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return Sample{Free: v(0), Objects: v(1), Live: v(2), Cycles: v(3)}
}

// HeapFree reads heapFreeMetric.
func HeapFree() uint64 { return Read().Free }

// Due reports whether a check that sampled prev one period ago and cur now
// should collect and return memory (see CheckPeriod): more than max free,
// or a quiet period and objects more than max/4 over floor.
func Due(prev, cur Sample, floor, max uint64) bool {
	return cur.Free > max || (cur.Cycles == prev.Cycles && cur.Objects > floor+max/4)
}

// Return returns the heap's free memory to the OS if there is more
// than max of it, and reports whether it did.
func Return(max uint64) bool {
	if HeapFree() <= max {
		return false
	}
	collect()
	return true
}

// collect collects what is dead and returns every free page. Two
// collections: the first moves what sync.Pools hold (gVisor keeps freed
// packet buffers and chunks in them) to their victim caches, the second
// (FreeOSMemory's) frees them, and the pages go back.
func collect() {
	runtime.GC()
	debug.FreeOSMemory()
}

// Start checks every period (see above) until the returned
// stop is called; stop waits for the checker to end. The first floor is
// the live heap now: call it once the program has set up. Recheck is the
// quiet time after which dead memory a collection found alive is looked
// for.
func Start(period time.Duration, max uint64) (stop func()) {
	return start(period, Recheck, max, Read().Live, nil)
}

// start is Start from a given floor, with a given recheck; collected, if
// not nil, is called with the sample after each collection it makes.
//
// floor is the live heap after the last collection this checker made
// (lowered by the runtime's), the base for "grown since"; lowest never
// rises, the base for the recheck; quietSince is when a collection was
// last seen.
func start(period, recheck time.Duration, max, floor uint64, collected func(Sample)) (stop func()) {
	prev := Read()
	lowest := floor
	quietSince := time.Now()
	return every(period, func(now time.Time) {
		cur := Read()
		if cur.Cycles != prev.Cycles {
			quietSince = now
		}
		if Due(prev, cur, floor, max) || (now.Sub(quietSince) >= recheck && cur.Objects > lowest+max/4) {
			collect()
			cur = Read()
			floor = cur.Live
			quietSince = now
			if collected != nil {
				collected(cur)
			}
		}
		floor = min(floor, cur.Live)
		lowest = min(lowest, cur.Live)
		prev = cur
	})
}

// every calls tick from a goroutine of its own every period until the
// returned stop is called; stop waits for the goroutine to end, and may be
// called more than once.
func every(period time.Duration, tick func(now time.Time)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				tick(now)
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

// Headroom is the soft limit's headroom for a daemon: the Go memory it may
// grow by over what it holds once set up before the runtime collects
// harder to stay under the limit.
//
// Under a flood that the links admit in part (a SYN flood, payload at a
// listener), what grows is garbage: each admitted frame's buffers, freed
// as soon as the stack is done with them. The runtime collects when the
// heap has doubled since the last collection (GOGC=100), so between
// collections the garbage can reach the live heap's size again, and the
// echo traffic a daemon still serves during the flood adds its own. A
// soft limit makes the runtime collect earlier as the limit nears; it
// never fails an allocation (over the limit the runtime spends at most
// about half the CPU on collection, and then lets the heap grow).
const Headroom = 48 << 20

// goMemMetrics are the runtime's total memory and what of it the heap has
// released to the OS: the difference is what the memory limit counts.
var goMemMetrics = []string{"/memory/classes/total:bytes", "/memory/classes/heap/released:bytes"}

// GoMemory returns the Go runtime's memory that the memory limit counts
// (its total mapped less what the heap released), not memory the program
// maps itself (dmapool's regions).
func GoMemory() uint64 {
	s := []metrics.Sample{{Name: goMemMetrics[0]}, {Name: goMemMetrics[1]}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// PressurePeriod and Calm are LimitUnderPressure's arguments for a daemon:
// how often it reads the links' flood drops, and how long after the last
// one it lifts the limit.
const (
	PressurePeriod = 250 * time.Millisecond
	Calm           = 5 * time.Second
)

// noLimit is the runtime's "no memory limit".
const noLimit = math.MaxInt64

// pressureGate decides when the soft limit is on: from the first rise of
// the pressure count until calm has passed without one. It is the clock-
// free part of LimitUnderPressure, so tests drive it directly.
type pressureGate struct {
	limit    int64 // the limit while on
	calm     time.Duration
	last     uint64    // the pressure count at the last step
	lastRise time.Time // when it last rose
	on       bool
}

// step takes the pressure count p read at now and returns the limit to set
// and whether it changed.
func (g *pressureGate) step(now time.Time, p uint64) (limit int64, changed bool) {
	rose := p > g.last
	g.last = p
	switch {
	case rose:
		g.lastRise = now
		if !g.on {
			g.on = true
			return g.limit, true
		}
	case g.on && now.Sub(g.lastRise) >= g.calm:
		g.on = false
		return noLimit, true
	}
	return 0, false
}

// LimitUnderPressure sets the runtime's soft memory limit to the Go memory
// in use now plus headroom while pressure — a count that only grows, such
// as the frames the links dropped as a flood — keeps rising, read every
// period, and lifts it (no limit) once calm has passed without a rise.
// Under a flood the links admit in part, what grows is garbage (each
// admitted frame's buffers, freed as soon as the stack is done with them),
// and the limit makes the runtime collect it before the heap doubles;
// without a flood, the daemon's memory follows its load (windows,
// connections) with the runtime's usual pacing. A GOMEMLIMIT in the
// environment wins: then nothing is changed. stop ends the watch, restores
// the limit found at the call and waits for the watcher to end.
func LimitUnderPressure(headroom int64, period, calm time.Duration, pressure func() uint64) (stop func()) {
	if os.Getenv("GOMEMLIMIT") != "" || headroom <= 0 || pressure == nil {
		return func() {}
	}
	prev := debug.SetMemoryLimit(-1)
	g := &pressureGate{limit: int64(GoMemory()) + headroom, calm: calm, last: pressure()}
	stopWatch := every(period, func(now time.Time) {
		if limit, changed := g.step(now, pressure()); changed {
			debug.SetMemoryLimit(limit)
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			stopWatch()
			debug.SetMemoryLimit(prev)
		})
	}
}
