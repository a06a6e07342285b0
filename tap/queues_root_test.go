//go:build linux

package tap

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/integration/nstest"
)

// Attaching to devices made with ip(8), as the README makes them: the link
// matches the device's multi-queue setting, says what it chose (Info), and
// explains what it cannot do.

// madeDevice makes a TAP device with `ip tuntap add dev NAME mode MODE
// [multi_queue]` in a fresh namespace and returns the namespace and name.
func madeDevice(t *testing.T, mode string, multiQueue bool) (*nstest.NS, string) {
	t.Helper()
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zq")
	args := []string{"ip", "tuntap", "add", "dev", name, "mode", mode}
	if multiQueue {
		args = append(args, "multi_queue")
	}
	ns.MustRun(args...)
	return ns, name
}

// openIn opens cfg on the device name inside ns.
func openIn(ns *nstest.NS, name string, cfg Config) (*Link, error) {
	cfg.Name = name
	var l *Link
	err := ns.Do(func() (err error) {
		l, err = Open(cfg)
		return err
	})
	return l, err
}

// serveOn builds a stack on link, addresses the kernel side, and checks
// that ping and a TCP transfer each way pass.
func serveOn(t *testing.T, ns *nstest.NS, name string, link *Link) {
	t.Helper()
	e := &tapEnv{ns: ns, name: name, link: link}
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", name)
	ns.MustRun("ip", "link", "set", name, "up")
	e.stack = newStack(t, link, "192.0.2.2/24")
	if out, err := ns.Run(20*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "5", "192.0.2.2"); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	e.kernelToStack(t, "192.0.2.2:5001", 4<<20, deadline)
	e.stackToKernel(t, "192.0.2.1:0", 4<<20, deadline)
}

// TestAttachSingleQueueDevice: the README's device (`ip tuntap add dev NAME
// mode tap`, no multi_queue) with the default Queues attaches one queue
// without IFF_MULTI_QUEUE, says why, and carries traffic.
func TestAttachSingleQueueDevice(t *testing.T) {
	ns, name := madeDevice(t, "tap", false)
	link, err := openIn(ns, name, Config{})
	if err != nil {
		t.Fatalf("Open with default queues on a single-queue device: %v", err)
	}
	info := link.Info()
	t.Logf("info: %v", info)
	if info.Queues != 1 || link.NumQueues() != 1 || info.MultiQueue || info.Created || info.Name != name {
		t.Errorf("Info %+v, want 1 queue, not multi-queue, not created, named %q", info, name)
	}
	if runtime.GOMAXPROCS(0) > 1 && !strings.Contains(info.Reason, "without multi_queue") {
		t.Errorf("Reason %q does not say the device was made without multi_queue", info.Reason)
	}
	if !strings.Contains(info.String(), "1 queue") {
		t.Errorf("String %q", info.String())
	}
	serveOn(t, ns, name, link)
}

// TestAttachSingleQueueDeviceExplicit: asking such a device for two queues
// fails with ErrQueues (and the kernel's EINVAL), saying what to do.
func TestAttachSingleQueueDeviceExplicit(t *testing.T) {
	ns, name := madeDevice(t, "tap", false)
	link, err := openIn(ns, name, Config{Queues: 2})
	if err == nil {
		link.Close()
		t.Fatal("Open of 2 queues on a device made without multi_queue succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrQueues) || !errors.Is(err, unix.EINVAL) {
		t.Errorf("error %v: want ErrQueues wrapping EINVAL", err)
	}
	for _, want := range []string{name, "without multi_queue", "-queues 1", "ip tuntap add dev " + name + " mode tap multi_queue"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The refused attempt left the device usable.
	link, err = openIn(ns, name, Config{Queues: 1})
	if err != nil {
		t.Fatalf("Open of 1 queue after the refusal: %v", err)
	}
	link.Close()
}

// TestAttachMultiQueueDevice: a device made with multi_queue takes one
// queue (with IFF_MULTI_QUEUE) and the default, one per CPU.
func TestAttachMultiQueueDevice(t *testing.T) {
	for _, queues := range []int{1, 0} {
		t.Run(map[int]string{1: "queues=1", 0: "default"}[queues], func(t *testing.T) {
			ns, name := madeDevice(t, "tap", true)
			link, err := openIn(ns, name, Config{Queues: queues})
			if err != nil {
				t.Fatalf("Open with Queues %d on a multi-queue device: %v", queues, err)
			}
			info := link.Info()
			t.Logf("info: %v", info)
			want := queues
			if want == 0 {
				want = runtime.GOMAXPROCS(0)
			}
			if info.Queues != want || link.NumQueues() != want || !info.MultiQueue || info.Created {
				t.Errorf("Info %+v, want %d queues, multi-queue, not created", info, want)
			}
			if want == 1 && !strings.Contains(info.Reason, "with multi_queue") {
				t.Errorf("Reason %q does not say the device was made with multi_queue", info.Reason)
			}
			serveOn(t, ns, name, link)
		})
	}
}

// TestAttachNewDevice: a device Open creates gets one queue per CPU, with
// IFF_MULTI_QUEUE when that is more than one, and no Reason.
func TestAttachNewDevice(t *testing.T) {
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zq")
	link, err := openIn(ns, name, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	info := link.Info()
	n := runtime.GOMAXPROCS(0)
	if !info.Created || info.Queues != n || info.MultiQueue != (n > 1) || info.Reason != "" {
		t.Errorf("Info %+v, want created, %d queues, multi-queue %v, no reason", info, n, n > 1)
	}
}

// TestAttachRefusals: a name that belongs to a TUN device, and a
// single-queue device whose queue another link holds, fail with ErrQueues
// saying so.
func TestAttachRefusals(t *testing.T) {
	t.Run("tun", func(t *testing.T) {
		ns, name := madeDevice(t, "tun", false)
		link, err := openIn(ns, name, Config{})
		if err == nil {
			link.Close()
			t.Fatal("Open on a TUN device succeeded")
		}
		if !errors.Is(err, ErrQueues) || !strings.Contains(err.Error(), "not a TAP device") {
			t.Errorf("error %v: want ErrQueues saying it is not a TAP device", err)
		}
	})
	t.Run("busy", func(t *testing.T) {
		ns, name := madeDevice(t, "tap", false)
		first, err := openIn(ns, name, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		second, err := openIn(ns, name, Config{})
		if err == nil {
			second.Close()
			t.Fatal("a second link attached to a single-queue device in use")
		}
		if !errors.Is(err, ErrQueues) || !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("error %v: want ErrQueues wrapping EBUSY, saying the device is in use", err)
		}
	})
	// A multi-queue device takes a second process's queues without
	// complaint from the kernel, which then spreads the device's frames
	// over both readers: Open refuses while another file has a queue
	// attached, whoever made the device, and attaches once it is let go.
	for _, tc := range []struct {
		name   string
		made   bool // by ip(8), persistent; else by the first Open
		queues int
	}{{"busy multi_queue", true, 1}, {"busy multi_queue default queues", true, 0}, {"busy created by the first", false, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var ns *nstest.NS
			var name string
			if tc.made {
				ns, name = madeDevice(t, "tap", true)
			} else {
				ns, name = nstest.New(t), nstest.UniqueName(t, "zq")
			}
			first, err := openIn(ns, name, Config{Queues: 2})
			if err != nil {
				t.Fatal(err)
			}
			second, err := openIn(ns, name, Config{Queues: tc.queues})
			if err == nil {
				second.Close()
				first.Close()
				t.Fatal("a second link attached to a multi-queue device in use")
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, ErrQueues) || !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "in use") ||
				!strings.Contains(err.Error(), name) {
				t.Errorf("error %v: want ErrQueues wrapping EBUSY, naming the device and saying it is in use", err)
			}
			// The refusal took nothing from the first link, and once it
			// lets go the device's carrier goes off and Open attaches.
			held := false
			if err := ns.Do(func() (err error) { held, err = carrierOn(name); return err }); err != nil || !held {
				t.Errorf("carrier with the first link attached: %v, %v; want on", held, err)
			}
			if n := first.NumQueues(); n != 2 {
				t.Errorf("first link has %d queues after the refusal, want 2", n)
			}
			first.Close()
			if !tc.made {
				return // the device went with the first link
			}
			if err := ns.Do(func() (err error) { held, err = carrierOn(name); return err }); err != nil || held {
				t.Errorf("carrier after the first link closed: %v, %v; want off", held, err)
			}
			second, err = openIn(ns, name, Config{Queues: tc.queues})
			if err != nil {
				t.Fatalf("Open after the first link closed: %v", err)
			}
			second.Close()
		})
	}
}
