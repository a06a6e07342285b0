package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/integration/nstest"
)

// Addresses of the kernel side (peer) and the stack inside each test's
// namespace.
const (
	peer4  = "192.0.2.1"
	stack4 = "192.0.2.2"
	peer6  = "2001:db8::1"
	stack6 = "2001:db8::2"
)

// daemon is a netstackd serve process attached to a TAP device in a private
// namespace, with the kernel side of the device addressed and up.
type daemon struct {
	ns     *nstest.NS
	tap    string
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   strings.Builder
	exited chan error
	ended  bool // +checklocks:mu; a test ended the daemon itself (stopWith)
}

// startDaemon makes a namespace, runs `netstackd serve` in it on a new TAP
// device, waits until its services listen, then addresses the kernel side.
// It stops the daemon (SIGTERM, then checks a clean exit) in t.Cleanup.
func startDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	needDaemon(t)
	ns := nstest.New(t)
	d := &daemon{ns: ns, tap: nstest.UniqueName(t, "zt"), exited: make(chan error, 1)}
	d.launch(t, append([]string{"-tap", d.tap, "-addr", stack4 + "/24", "-addr6", stack6 + "/64"}, extra...), true)
	return d
}

// launch runs `netstackd serve args...` in d's namespace, waits until its
// services listen, then addresses the kernel side of d.tap (IPv6 too if
// v6) and brings it up. It stops the daemon (SIGTERM, then checks a clean
// exit) in t.Cleanup.
func (d *daemon) launch(t *testing.T, args []string, v6 bool) {
	t.Helper()
	ns := d.ns
	ctx, cancel := context.WithCancel(context.Background())
	d.cmd = ns.Cmd(ctx, append([]string{netstackd, "serve"}, args...)...)
	d.cmd.Cancel = func() error { return d.cmd.Process.Kill() }
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go d.readLogs(stderr, ready)
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		defer cancel()
		d.stop(t)
	})
	select {
	case <-ready:
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("netstackd exited before it was ready: %v\n%s", err, d.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("netstackd not ready after 30 s:\n%s", d.log())
	}
	ns.MustRun("ip", "addr", "add", peer4+"/24", "dev", d.tap)
	if v6 {
		ns.MustRun("ip", "-6", "addr", "add", peer6+"/64", "dev", d.tap, "nodad")
	}
	ns.MustRun("ip", "link", "set", d.tap, "up")
}

// readLogs copies the daemon's log and closes ready once the HTTP service,
// the last one started, is listening.
func (d *daemon) readLogs(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	once := sync.Once{}
	for sc.Scan() {
		line := sc.Text()
		d.mu.Lock()
		d.logs.WriteString(line + "\n")
		d.mu.Unlock()
		if strings.Contains(line, "msg=listening") && strings.Contains(line, "service=http") {
			once.Do(func() { close(ready) })
		}
	}
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// stop asks the daemon to shut down as an operator would and checks that it
// exits cleanly and promptly.
func (d *daemon) stop(t *testing.T) {
	d.mu.Lock()
	ended := d.ended
	d.mu.Unlock()
	if ended {
		return
	}
	select {
	case err := <-d.exited:
		t.Errorf("netstackd exited early: %v\n%s", err, d.log())
		return
	default:
	}
	// The daemon runs under `ip netns exec`, which execs it: the process
	// we started is the daemon.
	if err := d.cmd.Process.Signal(syscallSIGTERM); err != nil {
		t.Errorf("signal netstackd: %v", err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("netstackd after SIGTERM: %v\n%s", err, d.log())
		}
		if !strings.Contains(d.log(), "shutting down") {
			t.Errorf("netstackd did not log its shutdown:\n%s", d.log())
		}
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		t.Errorf("netstackd still running 20 s after SIGTERM:\n%s", d.log())
	}
}

// run runs a command in the daemon's namespace with a time bound.
func (d *daemon) run(t *testing.T, timeout time.Duration, stdin io.Reader, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := d.ns.Cmd(ctx, args...)
	cmd.Stdin = stdin
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// need skips t if a peer tool is missing (fails it under
// nstest.RequireEnv); .ci/run installs them all.
func need(t *testing.T, tools ...string) {
	t.Helper()
	nstest.NeedTools(t, tools...)
}
