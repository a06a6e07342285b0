package iperf3

import (
	"syscall"
	"time"
)

// cpuTimes returns the user and system CPU time the process has used
// (getrusage(2), RUSAGE_SELF).
func cpuTimes() (user, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
