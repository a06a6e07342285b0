package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zcnet/zcnet/integration/nstest"
)

// The README's "Serve on a TAP device", as written: the device is made with
// `ip tuntap add dev NAME mode tap` (no multi_queue), then `netstackd serve
// -tap NAME` runs on it with the default queues. And the reverse: a device
// made with multi_queue served with -queues 1.

// TestServeOnReadmeDevice starts netstackd on devices made with ip(8) and
// echoes through its echo service.
func TestServeOnReadmeDevice(t *testing.T) {
	for _, tc := range []struct {
		name       string
		multiQueue bool
		extra      []string
		want       string // in the "attached" log line
	}{
		{"single-queue device, default queues", false, nil, "queues=1"},
		{"multi_queue device, -queues 1", true, []string{"-queues", "1"}, "multi-queue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDaemonOnMadeDevice(t, tc.multiQueue, tc.extra...)
			attached := ""
			for _, line := range strings.Split(d.log(), "\n") {
				if strings.Contains(line, "msg=attached") {
					attached = line
				}
			}
			if !strings.Contains(attached, tc.want) || !strings.Contains(attached, "existing device") {
				t.Errorf("attached log line %q does not say %q and existing device", attached, tc.want)
			}
			echoThrough(t, d)
		})
	}
}

// TestServeOnReadmeDeviceTooManyQueues: -queues 2 on a device made without
// multi_queue stops netstackd with an error that says what to do.
func TestServeOnReadmeDeviceTooManyQueues(t *testing.T) {
	needDaemon(t)
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zt")
	ns.MustRun("ip", "tuntap", "add", "dev", name, "mode", "tap")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.Cmd(ctx, netstackd, "serve", "-tap", name, "-addr", stack4+"/24", "-queues", "2").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("netstackd -queues 2 on a single-queue device: %v, want a non-zero exit\n%s", err, out)
	}
	for _, want := range []string{"without multi_queue", "-queues 1", "multi_queue`"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}

// startDaemonOnMadeDevice makes the TAP device with ip(8) in a fresh
// namespace, then starts netstackd on it as startDaemon does.
func startDaemonOnMadeDevice(t *testing.T, multiQueue bool, extra ...string) *daemon {
	t.Helper()
	needDaemon(t)
	ns := nstest.New(t)
	d := &daemon{ns: ns, tap: nstest.UniqueName(t, "zt"), exited: make(chan error, 1)}
	mk := []string{"ip", "tuntap", "add", "dev", d.tap, "mode", "tap"}
	if multiQueue {
		mk = append(mk, "multi_queue")
	}
	ns.MustRun(mk...)
	d.launch(t, append([]string{"-tap", d.tap, "-addr", stack4 + "/24"}, extra...), false)
	return d
}

// echoThrough sends 1 MiB to the daemon's TCP echo service from the kernel
// side and checks it all comes back.
func echoThrough(t *testing.T, d *daemon) {
	t.Helper()
	var c net.Conn
	if err := d.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", stack4+":7", 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial echo: %v\n%s", err, d.log())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := []byte(strings.Repeat("zcnet over the README's TAP. ", 1<<15))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo returned %d bytes, want the %d sent", len(got), len(msg))
	}
}
