//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time the whole process has used so far: user
// plus system time of all its threads (getrusage RUSAGE_SELF). System time
// includes the kernel's work done in the process's system calls and the
// softirqs that ran in its context — for a TAP or veth write, the receive
// processing of the packet — but not work the kernel deferred to
// ksoftirqd or other threads.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pinProcess confines the whole process to one CPU: the affinity of every
// thread (each task in /proc/self/task) set to cpu, and GOMAXPROCS set to
// procs (0 leaves it as it is).
// Threads created later inherit the affinity of the thread that creates
// them, which is pinned too; the task list is walked twice to catch threads
// created during the first walk. With every thread of the client and the
// server on one CPU, a round trip costs no cross-CPU wake-ups, and the
// kernel's softirq work for it runs on that CPU as well.
//
// The returned function restores the previous GOMAXPROCS and affinity.
func pinProcess(cpu, procs int) (restore func(), err error) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return nil, fmt.Errorf("%w: sched_getaffinity: %v", errSetup, err)
	}
	if cpu < 0 || !orig.IsSet(cpu) {
		return nil, fmt.Errorf("%w: CPU %d is not in this process's affinity mask (%d CPUs allowed)", errSetup, cpu, orig.Count())
	}
	var one unix.CPUSet
	one.Set(cpu)
	prev := runtime.GOMAXPROCS(0)
	if procs > 0 {
		runtime.GOMAXPROCS(procs)
	}
	restore = func() {
		_ = setAllThreads(&orig)
		runtime.GOMAXPROCS(prev)
	}
	if err := setAllThreads(&one); err != nil {
		restore()
		return nil, err
	}
	return restore, nil
}

// setAllThreads sets the affinity of every thread of the process.
func setAllThreads(set *unix.CPUSet) error {
	for pass := 0; pass < 2; pass++ {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("%w: list threads: %v", errSetup, err)
		}
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			// A thread may have exited since the listing: ESRCH is fine.
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("%w: sched_setaffinity(%d): %v", errSetup, tid, err)
			}
		}
	}
	return nil
}

// firstCPU returns the lowest CPU the process may run on.
func firstCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	for i := 0; i < 1024; i++ {
		if set.IsSet(i) {
			return i
		}
	}
	return 0
}
