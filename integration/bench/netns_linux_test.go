//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/zcnet/zcnet/integration/nstest"
)

func TestStalePID(t *testing.T) {
	for name, want := range map[string]int{
		"zcbench-1234-1cli": 1234,
		"zcbench-7-12srv":   7,
		"zcbench--1cli":     0,
		"zcbench-x-1cli":    0,
		"zcbench-1234":      0,
		"zcn0123456789abc":  0,
		"other-1234-1cli":   0,
	} {
		pid, ok := stalePID(name)
		if ok != (want > 0) || pid != want {
			t.Errorf("stalePID(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}

func TestRunning(t *testing.T) {
	if !running(os.Getpid()) {
		t.Error("running(own PID) = false")
	}
	// PIDs above pid_max (at most 2^22) never exist.
	if running(1 << 23) {
		t.Error("running(2^23) = true")
	}
}

// TestOwnNS makes a namespace the way the command does, checks that a
// socket created in Do belongs to it, and that Delete removes it.
func TestOwnNS(t *testing.T) {
	requireRoot(t)
	ns, err := newOwnNS("t")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Delete()
	if !strings.HasPrefix(ns.Name(), fmt.Sprintf("%s%d-", nsPrefix, os.Getpid())) {
		t.Errorf("name %q", ns.Name())
	}
	// 192.0.2.1 exists only inside the namespace: binding it works there
	// and the socket keeps working once Do has switched the thread back.
	ln := nstest.ListenInside(t, ns)
	defer ln.Close() // closed before the deferred Delete
	if _, err := net.Listen("tcp", "192.0.2.1:0"); err == nil {
		t.Error("192.0.2.1 bound outside the namespace too")
	}
	if got := sweepStale(); len(got) != 0 {
		t.Errorf("sweepStale deleted live namespaces %v", got)
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + ns.Name()); !os.IsNotExist(err) {
		t.Errorf("namespace still there after Delete: %v", err)
	}
	if err := ns.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}
