package api_test

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time (user and system, all threads) the test
// process has used, for benchmarks that report CPU per operation: on a
// machine shared with other work that figure moves far less than the
// operations per second do.
func processCPU() (time.Duration, bool) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
