package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/tap"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

const demoHelp = `Usage: netstackd demo [flags]

Runs two zcnet stacks in two processes joined by a shared-memory ring (the
vhost-style link of package stack/link/ring): the client in this process at
192.0.2.1, on the ring's stack side, and the server at 192.0.2.2 in a child
process (this program re-executed as "netstackd ring-peer"), where
netstackd's echo, discard, perf and status services run. Frames cross in
memory both processes map, with no system call per frame under load. It
measures TCP round trips against echo, checks a UDP echo, then streams to
discard for -duration with a progress line each second, and prints a
summary; the server's count of the bytes it discarded must equal the bytes
sent. If the child dies during the run, the demo says so within a second
and exits with status 1. The child dies with this process; the ring's socket lives in a
private temporary directory, removed on exit. It needs no privileges.

Examples:
  netstackd
  netstackd demo -duration 10s -mtu 9000 -rounds 5000
`

// The demo's stacks have the addresses of the tools' in-process pair.
var (
	demoClient = zcstack.PairClient
	demoServer = zcstack.PairServer
)

// demoPin is the demo's -pool-pin, for both processes and the ring: its
// memory is not locked, so it runs with any RLIMIT_MEMLOCK and says nothing
// about it (an ordinary user's 8 MiB limit made each pool warn). Locking
// keeps buffers from being paged out under memory pressure, which a
// demonstration of a few seconds does not meet.
const demoPin = "off"

// demoChildEnv, set in the child's environment, tells a test binary
// re-executed as the demo's child to run the command line it was given
// (see main_test.go's TestMain); the netstackd binary ignores it.
const demoChildEnv = "ZCNET_NETSTACKD_CHILD"

type demoConfig struct {
	duration time.Duration
	mtu      int
	rounds   int
	size     int
	verbose  bool
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	var cfg demoConfig
	fs := newFlagSet("demo", demoHelp, stdout, stderr)
	fs.DurationVar(&cfg.duration, "duration", 3*time.Second, "length of the throughput run (100ms to 1h)")
	fs.IntVar(&cfg.mtu, "mtu", 1500, "MTU of the ring between the two stacks (1280 to 65521)")
	fs.IntVar(&cfg.rounds, "rounds", 1000, "number of echo round trips (1 to 10000000)")
	fs.IntVar(&cfg.size, "size", 64, "bytes per echo round trip (1 to 65536)")
	fs.BoolVar(&cfg.verbose, "v", false, "log the services' start and stop")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, c := range []struct {
		ok   bool
		what string
	}{
		{cfg.duration >= 100*time.Millisecond && cfg.duration <= time.Hour, fmt.Sprintf("-duration %v: want 100ms to 1h", cfg.duration)},
		{cfg.mtu >= 1280 && cfg.mtu <= tap.MaxMTU, fmt.Sprintf("-mtu %d: want 1280 to %d", cfg.mtu, tap.MaxMTU)},
		{cfg.rounds >= 1 && cfg.rounds <= 10_000_000, fmt.Sprintf("-rounds %d: want 1 to 10000000", cfg.rounds)},
		{cfg.size >= 1 && cfg.size <= 65536, fmt.Sprintf("-size %d: want 1 to 65536", cfg.size)},
	} {
		if !c.ok {
			fmt.Fprintf(stderr, "netstackd demo: %s\n", c.what)
			return errUsage
		}
	}
	level := slog.LevelWarn
	if cfg.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return demo(cfg, stdout, stderr, log)
}

// demo runs the demo:
//
//  1. a private temporary directory for the ring's socket;
//  2. the client's stack on the ring's stack side, listening there;
//  3. the child: this program again, as ring-peer with the server's stack
//     and services, until it says "ready";
//  4. echo round trips, a UDP echo, the throughput stream;
//  5. the client's stack closed: the child sees the ring's stack side go,
//     stops and reports how many bytes its discard service received.
func demo(cfg demoConfig, out, errOut io.Writer, log *slog.Logger) (err error) {
	sf := newStackFlags(toolPoolSize)
	sf.mtu = cfg.mtu
	sf.pin = demoPin
	setup, err := sf.resolve(false)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "zcnet-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "ring.sock")
	cs := setup
	cs.addrs = []netip.Prefix{demoClient}
	cs.routes = nil
	clientZ, err := zcstack.ListenRing(cs.config(log), sock, nil, log)
	if err != nil {
		return err
	}
	closeClient := sync.OnceValue(clientZ.Close)
	defer closeClient()
	child, err := startDemoChild(sock, cfg, errOut)
	if err != nil {
		return err
	}
	defer func() {
		closeClient() // the child stops when the ring closes
		child.stop()
	}()
	// SIGINT or SIGTERM closes the client's stack: every call on it fails,
	// the demo returns, and the deferred clean-up (child, temporary
	// directory) runs, which Go's default exit on a signal would skip.
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(interrupted)
	// So does the child's death: it is reaped at once, and the demo says
	// so and stops rather than measure a link with nobody on the far end.
	// leaving marks the end of the run, when the child is meant to exit.
	var stopped, leaving atomic.Bool
	finished := make(chan struct{})
	defer close(finished)
	childDied := func() error {
		return fmt.Errorf("the peer process (pid %d) died: %v", child.cmd.Process.Pid, child.waitErr)
	}
	go func() {
		select {
		case <-interrupted:
			stopped.Store(true)
			closeClient()
		case <-child.exited:
			if !leaving.Load() {
				fmt.Fprintf(out, "demo: %v; stopping\n", childDied())
				closeClient()
			}
		case <-finished:
		}
	}()
	defer func() {
		switch {
		case stopped.Load():
			err = errors.New("interrupted")
		case leaving.Load():
		default:
			select {
			case <-child.exited:
				err = childDied()
			default:
			}
		}
	}()

	fmt.Fprintf(out, "zcnet demo: two gVisor stacks in two processes, %v (pid %d) <-> %v (child, pid %d) over a shared-memory ring, MTU %d\n",
		demoClient.Addr(), os.Getpid(), demoServer.Addr(), child.cmd.Process.Pid, cfg.mtu)
	n := clientZ.API.Net()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+cfg.duration)
	defer cancel()

	rtt, err := echoRounds(ctx, n, cfg.rounds, cfg.size)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	fmt.Fprintf(out, "echo: %d round trips of %d bytes over TCP to %v:7, all verified: mean %v, %.0f round trips/s\n",
		cfg.rounds, cfg.size, demoServer.Addr(), (rtt / time.Duration(cfg.rounds)).Round(100*time.Nanosecond), float64(cfg.rounds)/rtt.Seconds())
	if err := echoUDP(ctx, n); err != nil {
		return fmt.Errorf("udp echo: %w", err)
	}
	fmt.Fprintf(out, "echo: UDP datagram to %v:7 came back intact\n", demoServer.Addr())

	fmt.Fprintf(out, "throughput: one TCP stream to discard at %v:9 for %v\n", demoServer.Addr(), cfg.duration)
	sent, elapsed, err := stream(ctx, n, cfg.duration, out)
	if err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	// Close the client's stack and with it the ring: the child stops its
	// services, so its discard count is final, and reports it.
	leaving.Store(true)
	if err := closeClient(); err != nil {
		return err
	}
	got, err := child.discarded()
	if err != nil {
		return err
	}
	if got != sent {
		return fmt.Errorf("throughput: sent %d bytes but discard received %d", sent, got)
	}
	// What a stall would have cost: frames the ring dropped on the way to
	// the child, and the retransmission timeouts that recovered them.
	fmt.Fprintf(out, "link: %d frames to the child dropped (no free ring frame), %d TCP retransmission timeouts\n",
		clientZ.Ring.Stats().TxDropsNoFrame, clientZ.Stack.Netstack().Stats().TCP.Timeouts.Value())
	fmt.Fprintf(out, "summary: %d echo round trips (%.0f/s); %.1f MiB streamed in %.2f s = %.2f Gbit/s, every byte received\n",
		cfg.rounds, float64(cfg.rounds)/rtt.Seconds(), float64(got)/(1<<20), elapsed.Seconds(), gbits(got, elapsed))
	return nil
}

func gbits(n uint64, d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e9 }

// demoChild is the demo's server: this program re-executed as ring-peer.
type demoChild struct {
	cmd   *exec.Cmd
	lines chan string // its stdout, a line at a time; closed at EOF
	// exited is closed once the child has exited and been reaped; waitErr
	// is then its exit status.
	exited  chan struct{}
	waitErr error
}

// demoChildTimeout bounds each wait for the child: to start, to report.
const demoChildTimeout = 30 * time.Second

// startDemoChild starts the server's process on the ring at sock and waits
// until its services are up. Its log goes to errOut. It dies with this
// process twice over: its parent-death signal is SIGKILL, and it stops by
// itself when the ring's socket closes, as it does when this process ends.
// It is reaped as soon as it exits, whenever that is (exited).
func startDemoChild(sock string, cfg demoConfig, errOut io.Writer) (*demoChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("demo: cannot find this program to start the peer: %w", err)
	}
	level := "warn"
	if cfg.verbose {
		level = "info"
	}
	cmd := exec.Command(exe, "ring-peer", "-ring", sock, "-addr", demoServer.String(), "-mtu", strconv.Itoa(cfg.mtu),
		"-pool-size", formatBytes(toolPoolSize), "-pool-pin", demoPin, "-log-level", level)
	cmd.Env = append(os.Environ(), demoChildEnv+"=1")
	cmd.Stderr = errOut
	cmd.SysProcAttr = childProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demo: starting the peer: %w", err)
	}
	c := &demoChild{cmd: cmd, lines: make(chan string, 4), exited: make(chan struct{})}
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		// EOF: the child has exited (or closed its stdout, and will).
		// Wait after the last read, as os/exec requires.
		c.waitErr = cmd.Wait()
	}()
	if line, err := c.next(); err != nil || line != "ready" {
		c.stop()
		return nil, fmt.Errorf("demo: the peer process did not start (%q, %v)", line, err)
	}
	return c, nil
}

// next returns the child's next line of output.
func (c *demoChild) next() (string, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return "", errors.New("it exited")
		}
		return line, nil
	case <-time.After(demoChildTimeout):
		return "", fmt.Errorf("no word after %v", demoChildTimeout)
	}
}

// discarded waits for the child's final report, after the ring closed, and
// returns the bytes its discard service received over TCP.
func (c *demoChild) discarded() (uint64, error) {
	line, err := c.next()
	if err != nil {
		return 0, fmt.Errorf("demo: the peer process did not report: %w", err)
	}
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "discard_tcp_bytes="); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("demo: the peer process reported %q, without discard_tcp_bytes", line)
}

// stop ends the child (killing it if it has not ended within the timeout)
// and waits until it is reaped.
func (c *demoChild) stop() {
	t := time.AfterFunc(demoChildTimeout, func() { c.cmd.Process.Kill() })
	defer t.Stop()
	for range c.lines { // to EOF: the child has exited or closed its stdout
	}
	<-c.exited
}

// echoRounds makes rounds request/response exchanges of size random bytes
// with the echo server and checks each reply. It returns the total time.
func echoRounds(ctx context.Context, n *api.Net, rounds, size int) (time.Duration, error) {
	c, err := n.DialContext(ctx, "tcp", netip.AddrPortFrom(demoServer.Addr(), 7).String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.(*api.TCPConn).SetNoDelay(true)
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	req, resp := make([]byte, size), make([]byte, size)
	rand.Read(req)
	start := time.Now()
	for i := 0; i < rounds; i++ {
		req[0] = byte(i)
		if _, err := c.Write(req); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return 0, err
		}
		if !bytes.Equal(req, resp) {
			return 0, fmt.Errorf("round %d: reply differs from request", i)
		}
	}
	return time.Since(start), nil
}

// echoUDP sends a datagram to the UDP echo server until it comes back (the
// first may be lost while ARP resolves), at most 20 tries.
func echoUDP(ctx context.Context, n *api.Net) error {
	c, err := n.DialContext(ctx, "udp", netip.AddrPortFrom(demoServer.Addr(), 7).String())
	if err != nil {
		return err
	}
	defer c.Close()
	msg := []byte("zcnet udp echo")
	buf := make([]byte, 100)
	for try := 0; try < 20; try++ {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		m, err := c.Read(buf)
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			continue
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(buf[:m], msg) {
			return fmt.Errorf("reply %q differs from %q", buf[:m], msg)
		}
		return nil
	}
	return errors.New("no reply after 20 datagrams")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stream writes to the discard server for d, printing a progress line each
// second, and returns the bytes written and the time taken.
func stream(ctx context.Context, n *api.Net, d time.Duration, out io.Writer) (uint64, time.Duration, error) {
	c, err := n.DialContext(ctx, "tcp", netip.AddrPortFrom(demoServer.Addr(), 9).String())
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var sent atomic.Uint64
	done := make(chan struct{})
	progress := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(progress)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last uint64
		for sec := 1; ; sec++ {
			select {
			case <-done:
				return
			case <-t.C:
				now := sent.Load()
				fmt.Fprintf(out, "  [%3d s] %9.1f MiB  %6.2f Gbit/s\n", sec, float64(now-last)/(1<<20), gbits(now-last, time.Second))
				last = now
			}
		}
	}()
	buf := make([]byte, 64<<10)
	rand.Read(buf)
	c.SetWriteDeadline(start.Add(d))
	var werr error
	for {
		m, err := c.Write(buf)
		sent.Add(uint64(m))
		if err != nil {
			if !isTimeout(err) {
				werr = err
			}
			break
		}
	}
	close(done)
	<-progress
	if werr != nil {
		return 0, 0, werr
	}
	// Wait for the server to read everything: CloseWrite sends FIN, and the
	// server closes its side when it has drained the stream.
	c.SetDeadline(time.Time{})
	if err := c.(*api.TCPConn).CloseWrite(); err != nil {
		return 0, 0, err
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return 0, 0, err
	}
	return sent.Load(), time.Since(start), nil
}
