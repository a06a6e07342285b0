//go:build !linux

package transport

import (
	"net"
)

// tcpRetransmits is unknown off Linux: -1.
func tcpRetransmits(c *net.TCPConn) int64 { return -1 }
