//go:build !linux

package main

import (
	"net"
	"time"
)

// tcpRetransmits is unknown off Linux: -1.
func tcpRetransmits(c *net.TCPConn) int64 { return -1 }

// cpuTimes is unknown off Linux: zero.
func cpuTimes() (user, system time.Duration) { return 0, 0 }
