//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/stack/link/linktest"
)

// The root tests' topology: a veth pair between two namespaces. On one end
// (in zns) the stack, through the link, holds 192.0.2.2 and 2001:db8::2,
// and the host's own kernel holds 192.0.2.9 on the same interface (for
// the frames the program must pass). The other end (in kns) is the kernel
// peer, 192.0.2.1 and 2001:db8::1.
const (
	stackAddr4  = "192.0.2.2"
	stackAddr6  = "2001:db8::2"
	hostAddr4   = "192.0.2.9"
	kernelAddr4 = "192.0.2.1"
	kernelAddr6 = "2001:db8::1"
	testNIC     = 1
)

type xdpEnv struct {
	zns, kns *nstest.NS
	zdev     string // the link's end, in zns
	kdev     string // the kernel peer's end, in kns
	link     *Link
	stack    *stack.Stack
}

// requireXDP skips (or, under CI=true, fails) when the kernel has no
// AF_XDP sockets.
func requireXDP(t *testing.T) {
	t.Helper()
	nstest.RequireRoot(t)
	fd, err := socketXDP()
	if err != nil {
		skipOrFail(t, fmt.Sprintf("no AF_XDP sockets here: %v", err))
	}
	closeFD(fd)
}

func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", why)
	}
	t.Skip("skipping: " + why)
}

// newVeth makes the two namespaces and the veth pair, addressed and up.
func newVeth(t *testing.T) *xdpEnv {
	t.Helper()
	requireXDP(t)
	e := &xdpEnv{zns: nstest.New(t), kns: nstest.New(t), zdev: nstest.UniqueName(t, "xz"), kdev: nstest.UniqueName(t, "xk")}
	e.zns.MustRun("ip", "link", "add", e.zdev, "type", "veth", "peer", "name", e.kdev, "netns", e.kns.Name())
	e.zns.MustRun("ip", "addr", "add", hostAddr4+"/24", "dev", e.zdev)
	e.zns.MustRun("ip", "link", "set", e.zdev, "up")
	e.kns.MustRun("ip", "addr", "add", kernelAddr4+"/24", "dev", e.kdev)
	e.kns.MustRun("ip", "-6", "addr", "add", kernelAddr6+"/64", "dev", e.kdev, "nodad")
	// The kernel peer sends complete checksums, as frames from a real
	// wire have: with the veth's checksum offload on, its TCP segments
	// would arrive partial, which no receiver off this host ever sees.
	e.kns.MustRun("ethtool", "-K", e.kdev, "tx", "off")
	e.kns.MustRun("ip", "link", "set", e.kdev, "up")
	return e
}

// open attaches the link in zns and puts a stack on it.
func (e *xdpEnv) open(t *testing.T, cfg Config) {
	t.Helper()
	cfg.Interface = e.zdev
	cfg.Addresses = []netip.Addr{netip.MustParseAddr(stackAddr4), netip.MustParseAddr(stackAddr6)}
	err := e.zns.Do(func() (err error) {
		e.link, err = Open(cfg)
		return err
	})
	if errors.Is(err, ErrUnsupported) {
		skipOrFail(t, err.Error())
	}
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	e.stack = newStack(t, e.link, stackAddr4+"/24", stackAddr6+"/64")
}

func newStack(t *testing.T, link stack.LinkEndpoint, addrs ...string) *stack.Stack {
	t.Helper()
	s := linktest.NewStack(t, testNIC, link, addrs...)
	// Every destination goes out on the link, not only the on-link prefixes.
	s.SetRouteTable([]tcpip.Route{
		{Destination: header4Subnet(), NIC: testNIC},
		{Destination: header6Subnet(), NIC: testNIC},
	})
	return s
}

func header4Subnet() tcpip.Subnet {
	s, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(make([]byte, 4)))
	return s
}

func header6Subnet() tcpip.Subnet {
	s, _ := tcpip.NewSubnet(tcpip.AddrFrom16([16]byte{}), tcpip.MaskFromBytes(make([]byte, 16)))
	return s
}

// fullAddr turns "ip:port" into gVisor's address.
func fullAddr(t *testing.T, hostport string) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	t.Helper()
	ap := netip.MustParseAddrPort(hostport)
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: testNIC, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

// kernelDo runs fn in the kernel peer's namespace.
func (e *xdpEnv) kernelDo(t *testing.T, fn func() error) {
	t.Helper()
	if err := e.kns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// ping pings dst from the kernel peer.
func (e *xdpEnv) ping(t *testing.T, dst string) {
	t.Helper()
	if out, err := e.kns.Run(30*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "5", dst); err != nil {
		t.Fatalf("ping %s: %v\n%s", dst, err, out)
	}
}

// stackListenTCP listens on the stack; the accepted conn arrives on the channel.
func stackListenTCP(t *testing.T, s *stack.Stack, hostport string) (*gonet.TCPListener, <-chan net.Conn) {
	t.Helper()
	fa, proto := fullAddr(t, hostport)
	l, err := gonet.ListenTCP(s, fa, proto)
	if err != nil {
		t.Fatalf("stack listen %s: %v", hostport, err)
	}
	ch := make(chan net.Conn, 1)
	go func() {
		defer close(ch)
		if c, err := l.Accept(); err == nil {
			ch <- c
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l, ch
}

// transfer sends n pseudo-random bytes from src to dst and checks dst got
// exactly them (SHA-256 of both sides).
func transfer(t *testing.T, src, dst net.Conn, n int64, deadline time.Time) {
	t.Helper()
	_ = src.SetDeadline(deadline)
	_ = dst.SetDeadline(deadline)
	sum := make(chan [32]byte, 1)
	errc := make(chan error, 1)
	go func() {
		h, err := hashReader(dst, n)
		if err != nil {
			errc <- err
			return
		}
		sum <- h
	}()
	want, err := hashWriter(src, n)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case got := <-sum:
		if got != want {
			t.Fatalf("hash mismatch after %d bytes", n)
		}
	case err := <-errc:
		t.Fatalf("receive: %v", err)
	}
}
