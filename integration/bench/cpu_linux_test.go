//go:build linux

package main

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestProcessCPUGrows(t *testing.T) {
	before := processCPU()
	if before <= 0 {
		t.Fatalf("processCPU() = %v at start", before)
	}
	// Spin for a bounded while: 20 ms of wall time, at most 1e9 turns.
	x := 0
	for i, end := 0, time.Now().Add(20*time.Millisecond); i < 1e9 && time.Now().Before(end); i++ {
		x += i
	}
	_ = x
	if after := processCPU(); after <= before {
		t.Errorf("processCPU() went from %v to %v over 20 ms of spinning", before, after)
	}
}

func TestPinProcess(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	procs := runtime.GOMAXPROCS(0)
	cpu := firstCPU()
	if !orig.IsSet(cpu) {
		t.Fatalf("firstCPU() = %d, not in the affinity mask", cpu)
	}
	restore, err := pinProcess(cpu, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Check from a fresh, locked thread too: threads created after pinning
	// inherit the affinity.
	got := make(chan unix.CPUSet, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var set unix.CPUSet
		unix.SchedGetaffinity(0, &set)
		got <- set
	}()
	set := <-got
	gmp := runtime.GOMAXPROCS(0)
	restore()
	if set.Count() != 1 || !set.IsSet(cpu) {
		t.Errorf("pinned thread may run on %d CPUs (CPU %d: %v)", set.Count(), cpu, set.IsSet(cpu))
	}
	if gmp != 1 {
		t.Errorf("GOMAXPROCS %d while pinned, want 1", gmp)
	}
	var now unix.CPUSet
	if err := unix.SchedGetaffinity(0, &now); err != nil {
		t.Fatal(err)
	}
	if now != orig || runtime.GOMAXPROCS(0) != procs {
		t.Errorf("after restore: %d CPUs, GOMAXPROCS %d; want %d, %d", now.Count(), runtime.GOMAXPROCS(0), orig.Count(), procs)
	}

	if _, err := pinProcess(-1, 1); err == nil {
		t.Error("pinProcess(-1) succeeded")
	}
	if _, err := pinProcess(1023, 1); err == nil {
		t.Error("pinProcess(1023) succeeded on a machine that lacks CPU 1023")
	}
}
