//go:build !linux

package main

import (
	"fmt"
	"net/netip"
	"time"
)

// The harness needs Linux: network namespaces, TAP devices, veth pairs and
// gVisor's fdbased link. Elsewhere it compiles and says so.

var errUnsupported = fmt.Errorf("%w: the benchmark needs Linux (network namespaces, TAP devices, veth)", errPrivileges)

func platformSupported() error { return errUnsupported }

func ownNSFactory(string) (netns, func() error, error) { return nil, nil, errUnsupported }

func sweepStale() []string { return nil }

func cleanupAll() {}

func processCPU() time.Duration { return 0 }

func pinProcess(int, int) (func(), error) { return nil, errUnsupported }

func firstCPU() int { return 0 }

func newStock(*topology, netns, string, netip.Prefix, netip.Prefix, config) (*server, func() map[string]uint64, error) {
	return nil, nil, errUnsupported
}
