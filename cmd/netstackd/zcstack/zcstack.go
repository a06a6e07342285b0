// Package zcstack builds netstackd's zcnet stacks: a stack with its NIC,
// addresses, routes, buffer pool and zero-copy socket API on one link (a
// TAP device, either side of a shared-memory ring, one end of an
// in-process pair, or an AF_XDP link the caller opened), and closes them
// in order. It owns that assembly and the ring's window; it does not own
// flags, the links' own configuration beyond the MTU, or the capture,
// which the caller supplies as Config.Capture.
package zcstack

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/link/ring"
	"github.com/zcnet/zcnet/stack/link/xdp"
	"github.com/zcnet/zcnet/tap"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// Stack is one zcnet stack with everything it runs on: its link (a TAP
// device or one end of an in-process pair), an optional capture, the buffer
// pool and the zero-copy socket API. A stack on a shared-memory ring is
// either the ring's stack side (ring, which listens for a peer process) or
// its peer (ringPeer, which dialled one). Close tears them down in the order
// that lets each one finish: sockets, stack and link, capture, pool.
type Stack struct {
	Stack   *stack.Stack
	API     *api.Stack
	Pool    *dmapool.Pool
	NIC     stack.NICID
	NICName string
	TAP     *tap.Link      // the TAP link, or nil
	Pair    *pair.Endpoint // the pair end, or nil
	Ring    *ring.Link     // the ring's stack side, or nil
	Peer    *ring.Peer     // the ring's peer side, or nil
	XDP     *xdp.Link      // the AF_XDP link, or nil
	// Capture is what Config.Capture returned to close, or nil.
	Capture io.Closer
	log     *slog.Logger
}

// Config is how to build a stack.
type Config struct {
	// TAP is the TAP device OpenTAP opens; its MTU is every link's.
	TAP    tap.Config
	Addrs  []netip.Prefix
	Routes []stack.Route // NIC filled in by Build
	Stack  stack.Options
	Pool   dmapool.Config
	Assoc  int // api.Options.DefaultAssoc
	// Capture, if set, wraps the link (a packet capture) for OpenPair's
	// client and every other stack, and returns what Close closes after
	// the stack.
	Capture func(link gstack.LinkEndpoint) (gstack.LinkEndpoint, io.Closer, error)
}

// OpenTAP opens the TAP device of s and builds a stack on it.
func OpenTAP(s Config, log *slog.Logger) (*Stack, error) {
	link, err := tap.Open(s.TAP)
	if err != nil {
		return nil, err
	}
	z, err := Build(s, link, link.Name(), log)
	if err != nil {
		return nil, err
	}
	z.TAP = link
	return z, nil
}

// ringRcvBuf is the TCP receive buffer range (tcp_rmem) of a stack on a
// ring, unless -tcp-rmem gives one. The ring drops a frame when all of the
// sender's frames are lent to a receiver that has not returned them, as a
// full NIC ring does; a receiver descheduled on a loaded machine returns
// none, so the sender must not be allowed more segments in flight than the
// ring has frames. The stacks' default window (up to 16 MiB) allowed a
// stream's segments to outnumber the ring's 256 frames, a drop of the tail
// of a burst, and a retransmission timeout (with no tail-loss probe,
// stack.Options.RACK) of 200 ms or more, backing off while retransmissions
// were dropped too: the demo's stream stalled for up to seconds. A window
// of at most 2 MiB overflows the frames only if its segments average under
// 8 KiB, which a bulk stream's do not.
var ringRcvBuf = stack.BufferSizes{Min: 4 << 10, Default: 1 << 20, Max: 2 << 20}

// ringWindow returns s with ringRcvBuf as its TCP receive buffer range if
// it has none of its own.
func ringWindow(s Config) Config {
	if s.Stack.TCPReceiveBuffer == (stack.BufferSizes{}) {
		s.Stack.TCPReceiveBuffer = ringRcvBuf
	}
	return s
}

// ListenRing listens for a ring peer on the unix socket path and builds a
// stack on the ring's stack side; onPeer (may be nil) hears peers come and
// go. The stack serves before any peer connects: it drops what it sends
// until one does, as a NIC without carrier. The ring carries TCP segments
// of up to 64 KiB per frame (ring.Config.GSO), as a TAP device with
// offloads does, in 2×256 frames of 64 KiB: 32 MiB of shared memory.
func ListenRing(s Config, path string, onPeer func(up bool, err error), log *slog.Logger) (*Stack, error) {
	link, err := ring.Listen(path, ring.Config{MTU: uint32(s.TAP.MTU), GSO: true, OnPeer: onPeer, Pin: s.Pool.Pin, Logger: log})
	if err != nil {
		return nil, err
	}
	z, err := Build(ringWindow(s), link, "ring", log)
	if err != nil {
		return nil, err
	}
	z.Ring = link
	return z, nil
}

// DialRing connects to the ring listening at path and builds a stack
// on the peer's side of it. The stack side dictates the ring's geometry;
// only the MTU must agree.
func DialRing(s Config, path string, log *slog.Logger) (*Stack, error) {
	p, err := ring.Dial(path, ring.Config{MTU: uint32(s.TAP.MTU)})
	if err != nil {
		return nil, err
	}
	z, err := Build(ringWindow(s), p.Endpoint(), "ring-peer", log)
	if err != nil {
		return nil, err
	}
	z.Peer = p
	return z, nil
}

// OpenXDP attaches an AF_XDP link to queue 0 of the interface dev for the
// stack's addresses and builds the stack on it (partialCsum: see
// xdp.Config.PartialChecksums). The link takes the interface's MAC address
// and MTU (the frames the program redirects are addressed to that MAC).
func OpenXDP(s Config, dev string, partialCsum bool, log *slog.Logger) (*Stack, error) {
	addrs := make([]netip.Addr, 0, len(s.Addrs))
	for _, p := range s.Addrs {
		addrs = append(addrs, p.Addr())
	}
	link, err := xdp.Open(xdp.Config{Interface: dev, Addresses: addrs, PartialChecksums: partialCsum})
	if err != nil {
		return nil, err
	}
	z, err := Build(s, link, dev, log)
	if err != nil {
		return nil, err
	}
	z.XDP = link
	return z, nil
}

// RingStats returns the ring link's counters, from whichever side this
// stack is, and whether it is on a ring at all.
func (z *Stack) RingStats() (ring.Stats, bool) {
	switch {
	case z.Ring != nil:
		return z.Ring.Stats(), true
	case z.Peer != nil:
		return z.Peer.Stats(), true
	}
	return ring.Stats{}, false
}

// LinkStats returns the link's stats struct (TAP, pair or ring), or nil.
func (z *Stack) LinkStats() any {
	switch {
	case z.TAP != nil:
		return z.TAP.Stats()
	case z.Pair != nil:
		return z.Pair.Stats()
	}
	if rs, ok := z.RingStats(); ok {
		return rs
	}
	return nil
}

// Addresses of the in-process pair OpenPair builds: the client's stack
// and the server's.
var (
	PairClient = netip.MustParsePrefix("192.0.2.1/24")
	PairServer = netip.MustParsePrefix("192.0.2.2/24")
)

// OpenPair builds two stacks joined by an in-process link: the
// client at PairClient, the server at PairServer. A capture (Capture)
// records the client's side.
func OpenPair(s Config, log *slog.Logger) (client, server *Stack, err error) {
	a, b, err := pair.New(pair.Config{MTU: uint32(s.TAP.MTU)})
	if err != nil {
		return nil, nil, err
	}
	cs := s
	cs.Addrs = []netip.Prefix{PairClient}
	cs.Routes = nil
	if client, err = Build(cs, a, "pair-client", log); err != nil {
		b.Close()
		return nil, nil, err
	}
	client.Pair = a
	ss := cs
	ss.Addrs = []netip.Prefix{PairServer}
	ss.Capture = nil
	if server, err = Build(ss, b, "pair-server", log); err != nil {
		client.Close()
		return nil, nil, err
	}
	server.Pair = b
	return client, server, nil
}

// Build makes the stack, NIC, routes, pool and socket API on link; it
// takes ownership of link (closing it on failure).
func Build(s Config, link gstack.LinkEndpoint, name string, log *slog.Logger) (z *Stack, err error) {
	z = &Stack{NICName: name, log: log}
	attached := false // the stack owns link once AddNIC succeeds
	defer func() {
		if err != nil {
			if !attached {
				link.Close()
			}
			z.Close()
		}
	}()
	if s.Capture != nil {
		wrapped, c, err := s.Capture(link)
		if err != nil {
			return z, err
		}
		link, z.Capture = wrapped, c
	}
	so := s.Stack
	so.Logger = log
	if z.Stack, err = stack.New(so); err != nil {
		return z, err
	}
	if z.NIC, err = z.Stack.AddNIC(link, stack.NICConfig{Name: name, Addrs: s.Addrs}); err != nil {
		return z, err
	}
	attached = true
	for _, r := range s.Routes {
		r.NIC = z.NIC
		if err = z.Stack.AddRoute(r); err != nil {
			return z, err
		}
	}
	pc := s.Pool
	pc.Logger = log
	if z.Pool, err = dmapool.New(pc); err != nil {
		return z, fmt.Errorf("buffer pool: %w", err)
	}
	if z.API, err = api.New(z.Stack, api.Options{Pool: z.Pool, DefaultAssoc: s.Assoc}); err != nil {
		return z, err
	}
	return z, nil
}

// Transport returns the zero-copy sockets of the stack as a transport.
func (z *Stack) Transport() transport.Transport { return transport.NewZC(z.API, z.Stack) }

// Close closes the sockets, the stack with its link, the capture and the
// pool, and returns the first error (a pool still lending buffers is one:
// something did not release what it received).
func (z *Stack) Close() error {
	var errs []error
	if z.API != nil {
		errs = append(errs, z.API.Close())
	}
	if z.Stack != nil {
		errs = append(errs, z.Stack.Close())
	}
	if z.Capture != nil {
		errs = append(errs, z.Capture.Close())
	}
	if z.Pool != nil {
		errs = append(errs, z.Pool.Close())
	}
	return errors.Join(errs...)
}

// LinkErr returns the error that stopped the stack's device link, or nil
// while it runs: a TAP whose reader failed (the device was deleted under
// it, say) or an AF_XDP socket whose interface went away. Rings report
// their peers through their own callbacks instead.
func (z *Stack) LinkErr() error {
	switch {
	case z.TAP != nil:
		return z.TAP.Err()
	case z.XDP != nil:
		if err := z.XDP.Err(); err != nil {
			return err
		}
		// The socket reports nothing when its interface goes unless it
		// sends; ask the kernel.
		info := z.XDP.Info()
		if _, err := net.InterfaceByIndex(info.Ifindex); err != nil {
			return fmt.Errorf("xdp: interface %s (index %d) is gone: %w", info.Interface, info.Ifindex, err)
		}
	}
	return nil
}

// FloodDrops returns the frames the link has dropped as a flood so far
// (its admission's SYN and control drops), whichever link it is; 0 for a
// link without admission (the in-process pair).
func (z *Stack) FloodDrops() uint64 {
	var n uint64
	if z.TAP != nil {
		s := z.TAP.Stats()
		n += s.RxDropFloodSYN + s.RxDropFloodCtl
	}
	if s, ok := z.RingStats(); ok {
		n += s.RxDropsFloodSYN + s.RxDropsFloodCtl
	}
	if z.XDP != nil {
		s := z.XDP.Stats()
		n += s.RxDropFloodSYN + s.RxDropFloodCtl
	}
	return n
}
