package main

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpRetransmits returns the kernel's count of retransmitted segments of c
// (tcpi_total_retrans from TCP_INFO, tcp(7)), or -1 if it cannot be read.
func tcpRetransmits(c *net.TCPConn) int64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	var n int64 = -1
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = int64(info.Total_retrans)
		}
	})
	return n
}

// cpuTimes returns the user and system CPU time the process has used
// (getrusage(2), RUSAGE_SELF).
func cpuTimes() (user, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
