// Package nstest gives tests private Linux network namespaces to run real
// peers in. It owns creating and deleting namespaces and running commands and
// functions inside them; it does not know about stacks or links.
//
// Every namespace is named after the test that made it, so tests in packages
// that run in parallel never collide, and it is deleted by t.Cleanup even when
// the test fails. Tests that cannot get a namespace (not root, no CAP_SYS_ADMIN,
// no ip(8)) are skipped with a message that says why; nothing is faked.
//
// A skip must not let CI go green with the root tests unrun: with the
// environment variable ZCNET_REQUIRE_ROOT_TESTS=1 (which .ci/run sets), every
// skip that goes through Skip, RequireRoot or NeedTools fails the test
// instead, with the same message.
package nstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace that lives as long as the test that made it.
type NS struct {
	name  string
	t     testing.TB // New's; nil for Create's
	owned *sync.Once // Create's: deletes once; nil for New's
}

var seq atomic.Uint32

// RequireEnv names the environment variable that turns skips into
// failures: set to 1 (or "true"), Skip fails the test instead of skipping it.
const RequireEnv = "ZCNET_REQUIRE_ROOT_TESTS"

// Required reports whether skips are turned into failures (RequireEnv).
func Required() bool {
	v := os.Getenv(RequireEnv)
	return v == "1" || strings.EqualFold(v, "true")
}

// Skip skips t with the message, or fails it with the same message when
// RequireEnv is set: the way every test that needs root or an outside tool
// gives up.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (and %s=1 forbids skipping)", msg, RequireEnv)
		return
	}
	t.Skip(msg)
}

// RequireRoot skips t (see Skip) unless the process can create network
// namespaces and TAP devices.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "skipping: needs root for network namespaces and TAP devices (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		Skip(t, "skipping: ip(8) from iproute2 is not installed")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		Skip(t, "skipping: /dev/net/tun is not available: %v", err)
	}
}

// NeedTools skips t (see Skip) if one of the named programs is not on the
// PATH, saying which and that .ci/run installs it.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(t, "skipping: %s is not installed (.ci/run installs it)", tool)
		}
	}
}

// UniqueName returns a name of at most 15 bytes (IFNAMSIZ-1) that starts with
// prefix and is unique to this test, process and call, for namespaces and
// interfaces.
func UniqueName(t testing.TB, prefix string) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", t.Name(), os.Getpid(), seq.Add(1)))
	n := prefix + hex.EncodeToString(h[:])
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// New creates a namespace with its loopback up and registers its deletion
// with t.Cleanup. It skips t when the process lacks the privileges.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	name := UniqueName(t, "zcn")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "Operation not permitted") {
			Skip(t, "skipping: cannot create a network namespace: %s", bytes.TrimSpace(out))
		}
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{name: name, t: t}
	t.Cleanup(func() {
		// Deleting the namespace destroys every interface in it; processes
		// started with Cmd are the caller's to stop (CommandContext does).
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// Name is the namespace's name as ip-netns(8) knows it.
func (ns *NS) Name() string { return ns.name }

// Cmd returns a command that runs args inside the namespace. It is not
// started; ctx kills it.
func (ns *NS) Cmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name}, args...)...)
}

// Run runs args inside the namespace, bounded by timeout, and returns its
// combined output.
func (ns *NS) Run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := ns.Cmd(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in netns %s: %s: %w: %s", ns.name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error, with a 30 s bound.
func (ns *NS) MustRun(args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(30*time.Second, args...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}

// Do runs fn on an OS thread switched into the namespace, and switches back
// before returning. Use it to create things that bind to the namespace of the
// calling thread, such as a TAP device (TUNSETIFF); the file descriptors fn
// opens stay usable from any goroutine afterwards.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is locked and never unlocked if switching back fails: the
		// runtime then ends it with the goroutine instead of reusing a thread
		// that sits in the wrong namespace.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns.name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back from %s: %w (after fn: %v)", ns.name, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
