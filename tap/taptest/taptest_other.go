//go:build !linux

package taptest

import (
	"errors"
	"time"
)

// The stand-ins need Linux (SOCK_SEQPACKET with SOCK_NONBLOCK); elsewhere
// they fail with errUnsupported, and the package still builds.

var errUnsupported = errors.New("taptest: needs Linux")

// Socketpair fails: see the Linux version.
func Socketpair() (a, b int, err error) { return -1, -1, errUnsupported }

// Peer is the far end of a Socketpair.
type Peer struct{}

// NewPeer returns a Peer over fd.
func NewPeer(fd int) *Peer { return &Peer{} }

// Write fails.
func (p *Peer) Write(b []byte) error { return errUnsupported }

// Read fails.
func (p *Peer) Read(b []byte, timeout time.Duration) (int, error) { return 0, errUnsupported }

// Drain reads nothing.
func (p *Peer) Drain(quiet time.Duration) int { return 0 }

// Close does nothing.
func (p *Peer) Close() error { return nil }
