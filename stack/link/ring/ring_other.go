//go:build !linux

package ring

import (
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The link needs memfd, eventfd and SCM_RIGHTS: on other systems the
// package builds (layout, validator, the types) but Listen and Dial fail
// with ErrUnsupported.

// ErrUnsupported is Listen's and Dial's answer off Linux.
var ErrUnsupported = errors.New("ring: shared-memory rings need Linux (memfd, eventfd, SCM_RIGHTS)")

// Link is the stack side of a ring link; see the Linux build.
type Link struct{ endpoint }

// Listen fails with ErrUnsupported.
func Listen(string, Config) (*Link, error) { return nil, ErrUnsupported }

// Addr returns "".
func (*Link) Addr() string { return "" }

// Connected reports false.
func (*Link) Connected() bool { return false }

// Attach implements stack.LinkEndpoint.Attach.
func (*Link) Attach(stack.NetworkDispatcher) {}

// Wait implements stack.LinkEndpoint.Wait.
func (*Link) Wait() {}

// Close implements stack.LinkEndpoint.Close.
func (*Link) Close() {}

// Peer is the peer side of a ring link; see the Linux build.
type Peer struct{ endpoint }

// Dial fails with ErrUnsupported.
func Dial(string, Config) (*Peer, error) { return nil, ErrUnsupported }

// Gone returns a closed channel.
func (*Peer) Gone() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Close does nothing.
func (*Peer) Close() error { return nil }

// Endpoint returns the peer as a stack.LinkEndpoint.
func (p *Peer) Endpoint() *PeerEndpoint { return &PeerEndpoint{p} }

// PeerEndpoint is a Peer seen as a stack.LinkEndpoint.
type PeerEndpoint struct{ *Peer }

// Attach implements stack.LinkEndpoint.Attach.
func (*PeerEndpoint) Attach(stack.NetworkDispatcher) {}

// Wait implements stack.LinkEndpoint.Wait.
func (*PeerEndpoint) Wait() {}

// Close implements stack.LinkEndpoint.Close.
func (*PeerEndpoint) Close() {}

var (
	_ stack.LinkEndpoint = (*Link)(nil)
	_ stack.LinkEndpoint = (*PeerEndpoint)(nil)
)
