package transport

import (
	"net"

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
