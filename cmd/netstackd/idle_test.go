package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"

	"github.com/zcnet/zcnet/cmd/netstackd/internal/nodetest"
	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
	"github.com/zcnet/zcnet/integration/procstat"
)

// daemonProc is "netstackd serve" in a child process (this test binary
// re-executed, see TestMain), with its log and its -metrics address.
type daemonProc struct {
	cmd     *exec.Cmd
	metrics string // host:port of -metrics
	exited  chan error
	mu      sync.Mutex
	log     strings.Builder // +checklocks:mu
}

// startServeProc runs serve with args (plus -metrics on a free port) and
// waits until every service listens. The process is stopped with SIGTERM
// in t.Cleanup, and must exit cleanly.
func startServeProc(t *testing.T, args ...string) *daemonProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{exited: make(chan error, 1)}
	d.cmd = exec.Command(exe, append([]string{"serve", "-metrics", "127.0.0.1:0"}, args...)...)
	d.cmd.Env = append(os.Environ(), demoChildEnv+"=1")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		metricsRe := regexp.MustCompile(`service=metrics addr=(\S+)`)
		addr := ""
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.log.WriteString(line + "\n")
			d.mu.Unlock()
			if m := metricsRe.FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
			if strings.Contains(line, "service=http") && addr != "" {
				ready <- addr
			}
		}
	}()
	go func() {
		<-logDone
		d.exited <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.exited:
			if err != nil {
				t.Errorf("serve after SIGTERM: %v\n%s", err, d.logText())
			}
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
			t.Errorf("serve still running 30 s after SIGTERM:\n%s", d.logText())
		}
	})
	select {
	case d.metrics = <-ready:
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("serve exited before it was ready: %v\n%s", err, d.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not ready after 30 s:\n%s", d.logText())
	}
	return d
}

func (d *daemonProc) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// statusOf fetches the daemon's /status.json from its -metrics address.
func statusOf(t *testing.T, addr string) status {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// rssBytes returns a process's resident memory (VmRSS).
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	v, err := procstat.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Targets of the event-loop services: with 10 000 idle TCP
// connections, at most this many goroutines in the daemon and this much
// resident memory per connection.
const (
	idleConns         = 10000
	idleMaxGoroutines = 64
	idleMaxRSSPerConn = 12 << 10
)

// TestIdleConnectionsOnEventLoops runs "netstackd serve -ring" in its own
// process, puts a second stack on the ring's peer side in this one, opens
// 10 000 TCP connections to the daemon's echo service and leaves them
// idle; the daemon must hold them all with a fixed set of goroutines and a
// bounded resident memory each, and still echo on every one of a sample.
// Without root.
func TestIdleConnectionsOnEventLoops(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: 10 000 connections")
	}
	sock := filepath.Join(t.TempDir(), "ring.sock")
	d := startServeProc(t, "-ring", sock, "-addr", demoServer.String(), "-log-level", "info")
	sf := newStackFlags(toolPoolSize)
	peer, err := sf.resolve(false)
	if err != nil {
		t.Fatal(err)
	}
	peer.addrs = []netip.Prefix{demoClient}
	z, err := zcstack.DialRing(peer.config(nil), sock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Warm up (ARP, the loops' first accepts), then take the baseline.
	if _, err := echoRounds(ctx, z.API.Net(), 10, 100); err != nil {
		t.Fatal(err)
	}
	before := rssBytes(t, d.cmd.Process.Pid)
	st0 := statusOf(t, d.metrics)

	conns := dialMany(ctx, t, z.API, netip.AddrPortFrom(demoServer.Addr(), 7), idleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// The daemon counts a connection once its loop has taken the accept.
	var st status
	deadline := time.Now().Add(time.Minute)
	for st = statusOf(t, d.metrics); st.Connections["echo/tcp"] < idleConns && time.Now().Before(deadline); st = statusOf(t, d.metrics) {
		time.Sleep(50 * time.Millisecond) // polling the daemon's count, bounded by deadline
	}
	if got := st.Connections["echo/tcp"]; got != idleConns {
		t.Fatalf("daemon holds %d echo connections, want %d", got, idleConns)
	}
	after := rssBytes(t, d.cmd.Process.Pid)
	perConn := (after - before) / idleConns
	t.Logf("%d idle connections: daemon goroutines %d (before %d), RSS %.1f MiB -> %.1f MiB, %.1f KiB per connection (race %v)",
		idleConns, st.Goroutines, st0.Goroutines, float64(before)/(1<<20), float64(after)/(1<<20), float64(perConn)/1024, raceEnabled)
	if st.Goroutines > idleMaxGoroutines {
		t.Errorf("daemon runs %d goroutines with %d connections, want at most %d", st.Goroutines, idleConns, idleMaxGoroutines)
	}
	if raceEnabled {
		t.Log("not checking resident memory: the race detector's shadow memory inflates it")
	} else if perConn > idleMaxRSSPerConn {
		t.Errorf("daemon's resident memory grew %d bytes per connection, want at most %d", perConn, idleMaxRSSPerConn)
	}
	// Idle is not dead: a sample of them still echoes.
	for i := 0; i < len(conns); i += idleConns / 20 {
		if err := nodetest.EchoOnce(ctx, conns[i], fmt.Sprintf("conn %d", i)); err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
	// The peers close: the daemon lets every connection go.
	for _, c := range conns {
		c.Close()
	}
	deadline = time.Now().Add(2 * time.Minute)
	for st = statusOf(t, d.metrics); st.Connections["echo/tcp"] > 0 && time.Now().Before(deadline); st = statusOf(t, d.metrics) {
		time.Sleep(50 * time.Millisecond) // polling the daemon's count, bounded by deadline
	}
	if got := st.Connections["echo/tcp"]; got != 0 {
		t.Errorf("daemon still holds %d echo connections after the peers closed them", got)
	}
}

// dialMany opens n TCP connections to to, a few dials at a time.
func dialMany(ctx context.Context, t *testing.T, zs *api.Stack, to netip.AddrPort, n int) []*api.Socket {
	t.Helper()
	conns := make([]*api.Socket, n)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	const parallel = 16
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += parallel {
				c, err := zs.DialTCP(ctx, to)
				if err != nil {
					select {
					case errs <- fmt.Errorf("dial %d: %w", i, err):
					default:
					}
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatal(err)
	default:
	}
	return conns
}

// TestToolsOnRing runs "netstackd serve -ring" in its own process and the
// tools, perf and echo, as its ring peer: the ring measured with the
// provided tools, without root.
func TestToolsOnRing(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ring.sock")
	d := startServeProc(t, "-ring", sock, "-addr", demoServer.String())
	peer := []string{"-ring", sock, "-addr", demoClient.String()}

	var out, errb strings.Builder
	if code := run(append([]string{"perf", "-c", demoServer.Addr().String(), "-t", "1", "-json"}, peer...), &out, &errb); code != 0 {
		t.Fatalf("perf -ring: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	var rep struct {
		End struct {
			SumReceived struct {
				Bytes uint64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("perf -json: %v\n%s", err, out.String())
	}
	if rep.End.SumReceived.Bytes == 0 {
		t.Errorf("perf over the ring moved no bytes:\n%s", out.String())
	}
	st := statusOf(t, d.metrics)
	if st.Perf == nil || st.Perf.Tests != 1 || st.Perf.BytesReceived != rep.End.SumReceived.Bytes {
		t.Errorf("serve's perf service saw %+v, the client reported %d bytes received", st.Perf, rep.End.SumReceived.Bytes)
	}

	out.Reset()
	errb.Reset()
	if code := run(append([]string{"echo", "-c", demoServer.Addr().String(), "-n", "200", "-size", "500"}, peer...), &out, &errb); code != 0 {
		t.Fatalf("echo -ring: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !regexp.MustCompile(`200 round trips`).MatchString(out.String()) {
		t.Errorf("echo over the ring:\n%s", out.String())
	}
	if st := statusOf(t, d.metrics); st.Services["echo_tcp_bytes"] != 200*500 {
		t.Errorf("serve's echo sent back %d bytes, want %d", st.Services["echo_tcp_bytes"], 200*500)
	}
}
