package nstest

import (
	"net"
	"testing"
	"time"
)

// Namespace is what ListenInside needs of a namespace: NS, or a type that
// wraps one.
type Namespace interface {
	Run(timeout time.Duration, args ...string) (string, error)
	Do(fn func() error) error
}

// ListenInside gives ns's loopback 192.0.2.1/24 and listens on TCP
// 192.0.2.1:0 from inside ns (through Do): the listener belongs to ns and
// keeps working after Do has switched the thread back. Cleanup closes it.
func ListenInside(tb testing.TB, ns Namespace) net.Listener {
	tb.Helper()
	if _, err := ns.Run(10*time.Second, "ip", "addr", "add", "192.0.2.1/24", "dev", "lo"); err != nil {
		tb.Fatal(err)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "192.0.2.1:0")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}
