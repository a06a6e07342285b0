package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/integration/nstest"
)

// How netstackd serve ends, as an operator drives it: a signal in the middle
// of a transfer, a second signal during the teardown, the TAP device
// deleted under it, and the ways it refuses to start. Each daemon runs in a
// namespace of its own on a TAP device it creates (startDaemon).

// stopWith sends sig to the daemon and waits up to 15 s for it to exit,
// returning its exit status; the cleanup then leaves it alone.
func (d *daemon) stopWith(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal netstackd: %v", err)
	}
	return d.waitExit(t, 15*time.Second)
}

// waitExit waits up to limit for the daemon to exit and returns its exit
// status (-1 if a signal killed it).
func (d *daemon) waitExit(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err // for the cleanup's look
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("waiting for netstackd: %v", err)
		}
		return ee.ExitCode()
	case <-time.After(limit):
		d.cmd.Process.Kill()
		t.Fatalf("netstackd still running %v after it was told to stop:\n%s", limit, d.log())
	}
	return -1
}

// noCrash fails t if the daemon's output shows a panic, a race or a
// goroutine dump.
func noCrash(t *testing.T, out string) {
	t.Helper()
	for _, bad := range []string{"panic:", "goroutine ", "DATA RACE", "fatal error:"} {
		if strings.Contains(out, bad) {
			t.Errorf("netstackd's output has %q:\n%s", bad, out)
		}
	}
}

// deviceGone fails t unless the namespace has no device named name.
func deviceGone(t *testing.T, ns *nstest.NS, name string) {
	t.Helper()
	if out, err := ns.Run(5*time.Second, "ip", "link", "show", name); err == nil {
		t.Errorf("device %s still exists after netstackd exited:\n%s", name, out)
	}
}

// streamToDiscard dials the daemon's discard service from the kernel side
// and writes until the connection fails or ctx ends; it reports on
// flowing once 4 MiB have been written, and returns the bytes written.
func streamToDiscard(ctx context.Context, d *daemon, flowing chan<- struct{}) (int64, error) {
	var c net.Conn
	if err := d.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", stack4+":9", 10*time.Second)
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	go func() {
		<-ctx.Done()
		c.SetDeadline(time.Now())
	}()
	buf := make([]byte, 64<<10)
	var n int64
	for ctx.Err() == nil {
		k, err := c.Write(buf)
		n += int64(k)
		if n >= 4<<20 && flowing != nil {
			close(flowing)
			flowing = nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, ctx.Err()
}

// TestDaemonSignalMidTransfer: SIGINT, SIGTERM and SIGHUP in the middle of
// a TCP stream each stop the daemon cleanly: exit status 0 within the
// bound, the summary logged last, the stream's connection ended (not left
// hanging), the TAP device the daemon made removed, and no panic.
func TestDaemonSignalMidTransfer(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			d := startDaemon(t, "-queues", "1")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			flowing := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				_, err := streamToDiscard(ctx, d, flowing)
				done <- err
			}()
			select {
			case <-flowing:
			case err := <-done:
				t.Fatalf("stream to discard ended before 4 MiB: %v\n%s", err, d.log())
			case <-ctx.Done():
				t.Fatalf("stream to discard did not reach 4 MiB:\n%s", d.log())
			}
			if code := d.stopWith(t, sig); code != 0 {
				t.Errorf("exit status %d after %v, want 0:\n%s", code, sig, d.log())
			}
			// The stream's writes now fail (the stack is gone with its
			// device) rather than block until ctx's bound.
			select {
			case err := <-done:
				if errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("the stream was still writing 30 s on")
				}
			case <-time.After(20 * time.Second):
				t.Errorf("the stream to discard still blocks 20 s after the daemon exited")
			}
			log := d.log()
			noCrash(t, log)
			lines := strings.Split(strings.TrimSpace(log), "\n")
			last := lines[len(lines)-1]
			if !strings.Contains(last, "msg=stopped") || !strings.Contains(last, "exit_status=0") || !strings.Contains(log, "signal="+sigName(sig)) {
				t.Errorf("the log does not end with the summary after %s:\n%s", sigName(sig), log)
			}
			if !strings.Contains(last, "discard_tcp_bytes=") || strings.Contains(last, "discard_tcp_bytes=0 ") {
				t.Errorf("the summary does not count the stream's bytes: %s", last)
			}
			deviceGone(t, d.ns, d.tap)
		})
	}
}

// sigName is the name slog gives a syscall.Signal.
func sigName(sig syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGINT: "interrupt", syscall.SIGTERM: "terminated", syscall.SIGHUP: "hangup"}[sig]
}

// TestDaemonSecondSignal: two SIGTERMs back to back, as timeout(1) and a
// kill of the process group deliver one stop request (to the process,
// then to its group). That is one request: the daemon tears down cleanly,
// exit status 0 with its summary, not the forced exit (128+15) a second,
// later signal means (cmd/netstackd TestSecondSignalForcesExit holds that
// one). No panic, and the device goes.
func TestDaemonSecondSignal(t *testing.T) {
	d := startDaemon(t, "-queues", "1")
	echoThrough(t, d)
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	for range 2 {
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	code := d.waitExit(t, 15*time.Second)
	log := d.log()
	if code != 0 || !strings.Contains(log, "exit_status=0") || strings.Contains(log, "second signal") {
		t.Errorf("exit status %d after two SIGTERMs at once, want 0 with the summary:\n%s", code, log)
	}
	noCrash(t, log)
	deviceGone(t, d.ns, d.tap)
}

// TestDaemonDeviceDeleted: deleting the TAP device under a running
// daemon stops it with an error that says what happened, exit status 1,
// instead of leaving it running with no link.
func TestDaemonDeviceDeleted(t *testing.T) {
	d := startDaemon(t, "-queues", "1")
	echoThrough(t, d)
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	d.ns.MustRun("ip", "link", "del", d.tap)
	if code := d.waitExit(t, 10*time.Second); code != 1 {
		t.Errorf("exit status %d after the device was deleted, want 1:\n%s", code, d.log())
	}
	log := d.log()
	if !strings.Contains(log, "was the device deleted?") || !strings.Contains(log, "exit_status=1") {
		t.Errorf("the daemon does not say its link failed:\n%s", log)
	}
	noCrash(t, log)
}

// TestDaemonRefusesToStart: the ways serve cannot start each give a clear
// error naming the cause, a non-zero exit status, no stack trace and no
// device left behind: the TAP device held by another daemon, the metrics
// address in use, no CAP_NET_ADMIN (root with every capability dropped, as
// setpriv(1) runs it: what an unprivileged user meets), and a mistyped flag.
func TestDaemonRefusesToStart(t *testing.T) {
	d := startDaemonOnMadeDevice(t, false, "-queues", "1")
	// A kernel listener on the namespace's loopback holds the address
	// -metrics asks for.
	d.ns.MustRun("ip", "link", "set", "lo", "up")
	var ln net.Listener
	if err := d.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inUse := ln.Addr().String()
	other := nstest.UniqueName(t, "zt")
	for _, tc := range []struct {
		name   string
		args   []string
		noCaps bool
		want   string
		code   int
	}{
		{"device in use", []string{"-tap", d.tap, "-addr", "192.0.2.3/24"}, false, "is in use", 1},
		{"metrics address in use", []string{"-tap", other, "-addr", "192.0.2.3/24", "-metrics", inUse}, false, "-metrics " + inUse + ": listen tcp " + inUse + ": bind: address already in use", 1},
		{"not root", []string{"-tap", other, "-addr", "192.0.2.3/24"}, true, "needs CAP_NET_ADMIN", 1},
		{"bad flag", []string{"-tap", other, "-adr", "192.0.2.3/24"}, false, "flag provided but not defined: -adr", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{netstackd, "serve"}, tc.args...)
			if tc.noCaps {
				need(t, "setpriv")
				args = append([]string{"setpriv", "--bounding-set=-all", "--inh-caps=-all"}, args...)
			}
			cmd := d.ns.Cmd(ctx, args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("netstackd serve %q: %v, want exit status %d\n%s", tc.args, err, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr.String())
			}
			if n := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; n > 4 || stdout.Len() != 0 {
				t.Errorf("want a short error on stderr, got %d lines and %d bytes on stdout:\n%s%s", n, stdout.Len(), stderr.String(), stdout.String())
			}
			noCrash(t, stderr.String())
			deviceGone(t, d.ns, other)
		})
	}
	// The daemon that holds the device still serves.
	echoThrough(t, d)
}

// TestDaemonNoStrayOutput: a clean run writes nothing on stdout (the log
// goes to stderr), so a supervisor that captures both sees one stream of
// log lines.
func TestDaemonNoStrayOutput(t *testing.T) {
	needDaemon(t)
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zt")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := ns.Cmd(ctx, netstackd, "serve", "-tap", name, "-addr", stack4+"/24", "-services", "none")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var log strings.Builder
	for !strings.Contains(log.String(), "msg=attached") {
		n, err := stderr.Read(buf)
		log.Write(buf[:n])
		if err != nil {
			t.Fatalf("netstackd ended before attaching: %v\n%s", err, log.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	rest, _ := io.ReadAll(stderr)
	log.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Errorf("netstackd after SIGINT: %v\n%s", err, log.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("netstackd serve wrote to stdout:\n%s", stdout.String())
	}
	if !strings.Contains(log.String(), "msg=stopped") {
		t.Errorf("no summary in the log:\n%s", log.String())
	}
}

// TestDaemonXDPInterfaceDeleted: the interface an AF_XDP daemon serves
// deleted under it stops the daemon with an error, exit status 1; before,
// an idle daemon went on running with nothing to serve.
func TestDaemonXDPInterfaceDeleted(t *testing.T) {
	needDaemon(t)
	ns := nstest.New(t)
	if fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		nstest.Skip(t, "no AF_XDP sockets here: %v", err)
	} else {
		unix.Close(fd)
	}
	dev, peerDev := nstest.UniqueName(t, "xz"), nstest.UniqueName(t, "xk")
	ns.MustRun("ip", "link", "add", dev, "type", "veth", "peer", "name", peerDev)
	ns.MustRun("ip", "link", "set", dev, "up")
	ns.MustRun("ip", "link", "set", peerDev, "up")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := ns.Cmd(ctx, netstackd, "serve", "-xdp", dev, "-addr", stack4+"/24", "-services", "none")
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(log.String(), "msg=attached") {
		n, err := stderr.Read(buf)
		log.Write(buf[:n])
		if err != nil {
			cmd.Wait()
			t.Fatalf("netstackd ended before attaching: %v\n%s", err, log.String())
		}
	}
	ns.MustRun("ip", "link", "del", dev)
	rest, _ := io.ReadAll(stderr) // until the daemon exits (or ctx kills it)
	log.Write(rest)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("netstackd after its interface was deleted: %v, want exit status 1\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "is gone") || !strings.Contains(log.String(), "exit_status=1") {
		t.Errorf("the daemon does not say its interface went:\n%s", log.String())
	}
	noCrash(t, log.String())
}
