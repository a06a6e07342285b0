//go:build !linux

package iperf3

import "time"

// cpuTimes is unknown off Linux: zero.
func cpuTimes() (user, system time.Duration) { return 0, 0 }
