//go:build !linux

package xdp

import "gvisor.dev/gvisor/pkg/tcpip/stack"

// Link is Linux-only: AF_XDP sockets exist only there. Open fails with
// ErrUnsupported, so no Link is ever made here; the embedded interface
// only lets code that uses the type build.
type Link struct{ stack.LinkEndpoint }

// Open fails: AF_XDP is Linux-only.
func Open(Config) (*Link, error) { return nil, ErrUnsupported }

// Info is never called: no Link exists.
func (*Link) Info() Info { return Info{} }

// Stats is never called: no Link exists.
func (*Link) Stats() Stats { return Stats{} }

// KernelStats is never called: no Link exists.
func (*Link) KernelStats() (KernelStats, error) { return KernelStats{}, ErrUnsupported }
