package linktest

import "net"

// ServeConns accepts on ln until Accept fails (ln is closed) and runs
// handle on each connection on a goroutine of its own, closing the
// connection when handle returns.
func ServeConns(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}
