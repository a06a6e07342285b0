package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/integration/nstest"
)

// One TAP name, two daemons: what an operator meets starting netstackd a
// second time by mistake, or again right after the first was killed.

// TestDaemonSameTAPRefused: a second `netstackd serve` on the TAP device a
// running one created (and so made with multi_queue, one queue per CPU)
// stops at once with exit status 1 and one short message saying the device
// is in use; the first keeps serving. Before, the kernel let the second
// attach queues of its own (a multi-queue device takes them from anyone)
// and split the device's frames between two stacks with one address.
func TestDaemonSameTAPRefused(t *testing.T) {
	d := startDaemon(t)
	for _, args := range [][]string{
		{"-tap", d.tap, "-addr", "192.0.2.3/24"},
		{"-tap", d.tap, "-addr", "192.0.2.3/24", "-queues", "1"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := d.ns.Cmd(ctx, append([]string{netstackd, "serve"}, args...)...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("second netstackd serve %q: %v, want exit status 1\n%s", args, err, stderr.String())
		}
		if msg := stderr.String(); !strings.Contains(msg, fmt.Sprintf("device %q is in use", d.tap)) {
			t.Errorf("second netstackd %q: stderr does not say the device is in use:\n%s", args, msg)
		}
		if n := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; n > 4 || stdout.Len() != 0 {
			t.Errorf("want a short error on stderr, got %d lines and %d bytes on stdout:\n%s%s", n, stdout.Len(), stderr.String(), stdout.String())
		}
		noCrash(t, stderr.String())
	}
	// Every frame still reaches the first daemon: a 1 MiB echo and a run
	// of fresh connections, none of which would survive half the frames
	// going to another stack.
	echoThrough(t, d)
	for i := range 20 {
		echoOnce(t, d, i)
	}
}

// echoOnce makes a fresh TCP connection to the daemon's echo and checks one
// short message comes back.
func echoOnce(t *testing.T, d *daemon, i int) {
	t.Helper()
	var c net.Conn
	if err := d.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", stack4+":7", 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connection %d: dial echo: %v\n%s", i, err, d.log())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := fmt.Sprintf("hello %d\n", i)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("connection %d: %v", i, err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != msg {
		t.Fatalf("connection %d: echo %q, %v; want %q", i, got, err, msg)
	}
}

// TestDaemonRestartAfterKill: netstackd killed with SIGKILL in the middle
// of a transfer, with a client connected to its -metrics port, and
// started again at once on the same TAP name and the same -metrics
// address, serves: the kernel removes the device the first made once its
// queues go, and nothing holds the port.
func TestDaemonRestartAfterKill(t *testing.T) {
	need(t, "curl")
	const metrics = "127.0.0.1:9100"
	d := startDaemon(t, "-metrics", metrics)
	// A keep-alive client of the metrics endpoint, and a stream to discard.
	var mc net.Conn
	if err := d.ns.Do(func() (err error) {
		mc, err = net.DialTimeout("tcp", metrics, 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, err := fmt.Fprintf(mc, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flowing := make(chan struct{}, 1)
	streamed := make(chan error, 1)
	go func() {
		_, err := streamToDiscard(ctx, d, flowing)
		streamed <- err
	}()
	select {
	case <-flowing:
	case err := <-streamed:
		t.Fatalf("stream to discard ended before it flowed: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("stream to discard not flowing after 15 s")
	}
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Started at once, not after the killed one is reaped: the kernel may
	// still be tearing it down, its queues attached (the new daemon waits
	// for them to go, up to a second).
	again := &daemon{ns: d.ns, tap: d.tap, exited: make(chan error, 1)}
	again.launch(t, []string{"-tap", d.tap, "-addr", stack4 + "/24", "-addr6", stack6 + "/64", "-metrics", metrics}, true)
	if code := d.waitExit(t, 10*time.Second); code != -1 {
		t.Fatalf("after SIGKILL: exit status %d, want killed", code)
	}
	cancel()
	<-streamed
	if !strings.Contains(again.log(), "new device") {
		t.Errorf("the restarted daemon did not make a new device (the killed one's was left behind?):\n%s", again.log())
	}
	out, err := again.ns.Run(10*time.Second, "curl", "-sf", "http://"+metrics+"/metrics")
	if err != nil || !strings.Contains(out, "zcnet_link_rx_frames_total") {
		t.Fatalf("metrics of the restarted daemon: %v\n%.300s", err, out)
	}
	echoThrough(t, again)
}

// TestDaemonSameXDPRefused: a second `netstackd serve -xdp` on the
// interface a running one serves stops with exit status 1 and a message
// that says the queue is in use (the kernel's EBUSY from the bind, before
// only "bind to ifindex 2 queue 0 (flags 0x8): device or resource busy");
// the first keeps serving.
func TestDaemonSameXDPRefused(t *testing.T) {
	needDaemon(t)
	zns, kns := nstest.New(t), nstest.New(t)
	if fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		nstest.Skip(t, "skipping: no AF_XDP sockets here: %v", err)
	} else {
		unix.Close(fd)
	}
	zdev, kdev := nstest.UniqueName(t, "xz"), nstest.UniqueName(t, "xk")
	zns.MustRun("ip", "link", "add", zdev, "type", "veth", "peer", "name", kdev, "netns", kns.Name())
	zns.MustRun("ip", "link", "set", zdev, "up")
	kns.MustRun("ip", "addr", "add", peer4+"/24", "dev", kdev)
	kns.MustRun("ip", "link", "set", kdev, "up")
	first := &daemon{ns: zns, tap: zdev, exited: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // after stop (cleanups run last first)
	first.cmd = zns.Cmd(ctx, netstackd, "serve", "-xdp", zdev, "-addr", stack4+"/24", "-services", "echo,http")
	first.cmd.Cancel = func() error { return first.cmd.Process.Kill() }
	stderr, err := first.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go first.readLogs(stderr, ready)
	go func() { first.exited <- first.cmd.Wait() }()
	t.Cleanup(func() { first.stop(t) })
	select {
	case <-ready:
	case err := <-first.exited:
		first.exited <- err
		t.Fatalf("first netstackd exited before it was ready: %v\n%s", err, first.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("first netstackd not ready after 30 s:\n%s", first.log())
	}

	out, err := zns.Run(30*time.Second, netstackd, "serve", "-xdp", zdev, "-addr", "192.0.2.3/24", "-services", "none")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("second netstackd serve -xdp: %v, want exit status 1\n%s", err, out)
	}
	if want := fmt.Sprintf("-xdp %s: queue 0 of %s is in use", zdev, zdev); !strings.Contains(out, want) {
		t.Errorf("second netstackd does not say %q:\n%s", want, out)
	}
	noCrash(t, out)
	if out, err := kns.Run(20*time.Second, "ping", "-c", "2", "-W", "5", stack4); err != nil {
		t.Errorf("the first daemon no longer answers: %v\n%s", err, out)
	}
}
