//go:build linux

package ring

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/zcnet/zcnet/stack/link/linktest"
)

var (
	stackAddr = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	peerAddr  = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
)

const (
	echoTCPPort = 7000
	echoUDPPort = 7001
	sinkTCPPort = 7002
)

// newTestStack puts a gVisor stack with addr/24 on ep.
func newTestStack(tb testing.TB, ep stack.LinkEndpoint, addr tcpip.Address) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		return nil, fmt.Errorf("CreateNIC: %v", err)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		return nil, fmt.Errorf("AddProtocolAddress: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})
	return s, nil
}

// runHelper is the peer process. In mode "echo" it dials the link at path,
// puts a stack on it and echoes TCP and UDP until the stack side goes. In
// modes "tap-offload" and "tap" (bench_root_test.go) it opens the TAP
// device named path instead, with and without offloads, and serves the
// same until killed.
func runHelper(mode, path string) int {
	if mode != "echo" {
		return runTAPHelper(mode, path)
	}
	p, err := Dial(path, Config{LinkAddress: "\x02\x00\x00\x00\x00\x02"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	s, err := newTestStack(nil, p.Endpoint(), peerAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	if _, err := serveEcho(s, peerAddr); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	fmt.Println("ready")
	<-p.Gone()
	return 0
}

// startHelper re-executes the test binary as the peer process on path.
func startHelper(tb testing.TB, path string) *exec.Cmd {
	tb.Helper()
	return startHelperCmd(tb, exec.Command(os.Args[0], "-test.run=^$"), "echo", path)
}

// startHelperCmd starts cmd, which runs this test binary, as the helper in
// mode on path, and waits until it is ready.
func startHelperCmd(tb testing.TB, cmd *exec.Cmd, mode, path string) *exec.Cmd {
	tb.Helper()
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_PATH="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	// The helper prints "ready" once its listeners are up.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		tb.Fatalf("helper did not start: %q, %v", line, err)
	}
	return cmd
}

// stackSide is the test process's end: a Link with a stack on it.
type stackSide struct {
	link *Link
	s    *stack.Stack
	up   chan error // OnPeer reports: nil when a peer connects, the error when it goes
}

func newStackSide(tb testing.TB, cfg Config) *stackSide {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ring.sock")
	ss := &stackSide{up: make(chan error, 16)}
	cfg.OnPeer = func(up bool, err error) {
		if up {
			ss.up <- nil
		} else {
			ss.up <- err
		}
	}
	l, err := Listen(path, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ss.link = l
	s, err := newTestStack(tb, l, stackAddr)
	if err != nil {
		tb.Fatal(err)
	}
	ss.s = s
	tb.Cleanup(func() {
		// gVisor's Stack.Close does not close link endpoints, and
		// Stack.Wait waits for them holding the stack's lock, which a
		// receive loop delivering a last frame needs: close the link and
		// wait for it in between.
		ss.s.Close()
		ss.link.Close()
		ss.link.Wait()
		ss.s.Wait()
	})
	return ss
}

func (ss *stackSide) dialTCP(ctx context.Context) (net.Conn, error) {
	return gonet.DialContextTCP(ctx, ss.s, tcpip.FullAddress{NIC: 1, Addr: peerAddr, Port: echoTCPPort}, ipv4.ProtocolNumber)
}

// serveEcho runs, on s at addr, a TCP echo (echoTCPPort), a TCP sink that
// reads to EOF and answers with the 8-byte count (sinkTCPPort) and a UDP
// echo (echoUDPPort). The returned func stops them.
func serveEcho(s *stack.Stack, addr tcpip.Address) (func(), error) {
	var closers []func() error
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, port := range []uint16{echoTCPPort, sinkTCPPort} {
		ln, err := gonet.ListenTCP(s, tcpip.FullAddress{NIC: 1, Addr: addr, Port: port}, ipv4.ProtocolNumber)
		if err != nil {
			stop()
			return nil, err
		}
		closers = append(closers, ln.Close)
		sink := port == sinkTCPPort
		go linktest.ServeConns(ln, func(c net.Conn) {
			if !sink {
				io.Copy(c, c)
				return
			}
			n, _ := io.Copy(io.Discard, c)
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(n))
			c.Write(b[:])
		})
	}
	uc, err := gonet.DialUDP(s, &tcpip.FullAddress{NIC: 1, Addr: addr, Port: echoUDPPort}, nil, ipv4.ProtocolNumber)
	if err != nil {
		stop()
		return nil, err
	}
	closers = append(closers, uc.Close)
	go func() {
		b := make([]byte, 65536)
		for {
			n, a, err := uc.ReadFrom(b)
			if err != nil {
				return
			}
			uc.WriteTo(b[:n], a)
		}
	}()
	return stop, nil
}

// listenDial listens on a fresh socket path with cfg and dials it with the
// peer's zero Config. Cleanup closes the peer, then the link, and waits
// for the link.
func listenDial(t *testing.T, cfg Config) (*Link, *Peer) {
	t.Helper()
	l, err := Listen(filepath.Join(t.TempDir(), "ring.sock"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Wait)
	t.Cleanup(l.Close)
	p, err := Dial(l.Addr(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return l, p
}
