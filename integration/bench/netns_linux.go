//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// nsPrefix starts the name of every namespace the command makes:
// nsPrefix + PID + "-" + sequence + role. The PID lets a later run delete what a killed
// run left behind (sweepStale) without touching a live run's.
const nsPrefix = "zcbench-"

// ownNS is a namespace made by newOwnNS and deleted by Delete, or by
// cleanupAll when the process is interrupted.
type ownNS struct {
	name string
}

// registry holds the namespaces not yet deleted, so that a signal handler
// can delete them even while the goroutine that made them is stuck.
var registry struct {
	mu    sync.Mutex
	names map[string]bool // +checklocks:mu
}

// nsSeq numbers the namespaces of this process.
var nsSeq atomic.Uint32

// newOwnNS creates the namespace nsPrefix+PID+"-"+sequence+role with its
// loopback up.
func newOwnNS(role string) (*ownNS, error) {
	name := fmt.Sprintf("%s%d-%d%s", nsPrefix, os.Getpid(), nsSeq.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: ip netns add %s: %v: %s", errSetup, name, err, bytes.TrimSpace(out))
	}
	registry.mu.Lock()
	if registry.names == nil {
		registry.names = map[string]bool{}
	}
	registry.names[name] = true
	registry.mu.Unlock()
	ns := &ownNS{name: name}
	if _, err := ns.Run(10*time.Second, "ip", "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// ownNSFactory is the command's nsFactory.
func ownNSFactory(role string) (netns, func() error, error) {
	ns, err := newOwnNS(role)
	if err != nil {
		return nil, nil, err
	}
	return ns, ns.Delete, nil
}

// Name implements netns.
func (ns *ownNS) Name() string { return ns.name }

// Delete deletes the namespace; every interface in it goes with it once the
// sockets and descriptors that still refer to it are closed. Idempotent.
func (ns *ownNS) Delete() error {
	registry.mu.Lock()
	live := registry.names[ns.name]
	delete(registry.names, ns.name)
	registry.mu.Unlock()
	if !live {
		return nil
	}
	return deleteNS(ns.name)
}

func deleteNS(name string) error {
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// cleanupAll kills every process the bench started and deletes every
// namespace not yet deleted; for the signal path.
func cleanupAll() {
	killAllProcs()
	registry.mu.Lock()
	names := registry.names
	registry.names = nil
	registry.mu.Unlock()
	for name := range names {
		if err := deleteNS(name); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}
}

// sweepStale deletes namespaces that earlier runs of this command made and
// could not delete (they were killed): those named nsPrefix+PID-… whose
// PID is no longer running. It returns the names it deleted.
func sweepStale() []string {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return nil
	}
	var gone []string
	for _, e := range entries {
		pid, ok := stalePID(e.Name())
		if !ok {
			continue
		}
		if running(pid) {
			continue // that run is still going
		}
		if deleteNS(e.Name()) == nil {
			gone = append(gone, e.Name())
		}
	}
	return gone
}

// running reports whether pid is a live process: one that exists and is
// not a zombie (a killed run is one until it is reaped).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

// stalePID parses the PID out of a namespace name this command makes.
func stalePID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// Run implements netns.
func (ns *ownNS) Run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%w: in netns %s: %s: %v: %s", errSetup, ns.name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Do implements netns: fn runs on a locked OS thread switched into the
// namespace, which switches back before the thread is reused. If switching
// back fails the thread stays locked and the runtime ends it with the
// goroutine, so no thread in the wrong namespace runs other goroutines.
func (ns *ownNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("%w: open own netns: %v", errSetup, err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("%w: open netns %s: %v", errSetup, ns.name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("%w: setns %s: %v", errSetup, ns.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("%w: setns back from %s: %v (after fn: %v)", errSetup, ns.name, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
