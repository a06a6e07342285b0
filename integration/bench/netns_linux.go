//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/integration/nstest"
)

// nsPrefix starts the name of every namespace the command makes:
// nsPrefix + PID + "-" + sequence + role. The PID lets a later run delete what a killed
// run left behind (sweepStale) without touching a live run's.
const nsPrefix = "zcbench-"

// ownNS is a namespace made by newOwnNS and deleted by Delete, or by
// cleanupAll when the process is interrupted.
type ownNS struct {
	*nstest.NS
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
	registry.mu.Lock()
	if registry.names == nil {
		registry.names = map[string]bool{}
	}
	registry.names[name] = true
	registry.mu.Unlock()
	ns, err := nstest.Create(name)
	if err != nil {
		registry.mu.Lock()
		delete(registry.names, name)
		registry.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", errSetup, err)
	}
	return &ownNS{ns}, nil
}

// ownNSFactory is the command's nsFactory.
func ownNSFactory(role string) (netns, func() error, error) {
	ns, err := newOwnNS(role)
	if err != nil {
		return nil, nil, err
	}
	return ns, ns.Delete, nil
}

// Delete deletes the namespace; every interface in it goes with it once the
// sockets and descriptors that still refer to it are closed. Idempotent.
func (ns *ownNS) Delete() error {
	registry.mu.Lock()
	live := registry.names[ns.Name()]
	delete(registry.names, ns.Name())
	registry.mu.Unlock()
	if !live {
		return nil
	}
	return ns.NS.Delete()
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
		if err := nstest.DeleteNamed(name); err != nil {
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
		if nstest.DeleteNamed(e.Name()) == nil {
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

// Run implements netns; its errors are setup errors.
func (ns *ownNS) Run(timeout time.Duration, args ...string) (string, error) {
	out, err := ns.NS.Run(timeout, args...)
	if err != nil {
		return out, fmt.Errorf("%w: %v", errSetup, err)
	}
	return out, nil
}

// Do implements netns (nstest.NS.Do); its errors are setup errors or fn's.
func (ns *ownNS) Do(fn func() error) error {
	var ferr error
	err := ns.NS.Do(func() error { ferr = fn(); return ferr })
	if err != nil && err != ferr {
		return fmt.Errorf("%w: %v", errSetup, err)
	}
	return err
}
