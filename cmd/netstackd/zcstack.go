package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/link/pcap"
	"github.com/zcnet/zcnet/stack/link/ring"
	"github.com/zcnet/zcnet/stack/link/xdp"
	"github.com/zcnet/zcnet/tap"
)

// zcStack is one zcnet stack with everything it runs on: its link (a TAP
// device or one end of an in-process pair), an optional capture, the buffer
// pool and the zero-copy socket API. A stack on a shared-memory ring is
// either the ring's stack side (ring, which listens for a peer process) or
// its peer (ringPeer, which dialled one). Close tears them down in the order
// that lets each one finish: sockets, stack and link, capture, pool.
type zcStack struct {
	st      *stack.Stack
	zs      *api.Stack
	pool    *dmapool.Pool
	nic     stack.NICID
	nicName string
	tap     *tap.Link      // the TAP link, or nil
	pair    *pair.Endpoint // the pair end, or nil
	ring    *ring.Link     // the ring's stack side, or nil
	peer    *ring.Peer     // the ring's peer side, or nil
	xdp     *xdp.Link      // the AF_XDP link, or nil
	pcap    *pcap.Writer   // nil without -pcap
	log     *slog.Logger
}

// openTAPStack opens the TAP device of s and builds a stack on it.
func openTAPStack(s stackSetup, log *slog.Logger) (*zcStack, error) {
	link, err := tap.Open(s.tap)
	if err != nil {
		return nil, err
	}
	z, err := buildStack(s, link, link.Name(), log)
	if err != nil {
		return nil, err
	}
	z.tap = link
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
func ringWindow(s stackSetup) stackSetup {
	if s.stack.TCPReceiveBuffer == (stack.BufferSizes{}) {
		s.stack.TCPReceiveBuffer = ringRcvBuf
	}
	return s
}

// openRingStack listens for a ring peer on the unix socket path and builds a
// stack on the ring's stack side; onPeer (may be nil) hears peers come and
// go. The stack serves before any peer connects: it drops what it sends
// until one does, as a NIC without carrier. The ring carries TCP segments
// of up to 64 KiB per frame (ring.Config.GSO), as a TAP device with
// offloads does, in 2×256 frames of 64 KiB: 32 MiB of shared memory.
func openRingStack(s stackSetup, path string, onPeer func(up bool, err error), log *slog.Logger) (*zcStack, error) {
	link, err := ring.Listen(path, ring.Config{MTU: uint32(s.tap.MTU), GSO: true, OnPeer: onPeer})
	if err != nil {
		return nil, err
	}
	z, err := buildStack(ringWindow(s), link, "ring", log)
	if err != nil {
		return nil, err
	}
	z.ring = link
	return z, nil
}

// dialRingStack connects to the ring listening at path and builds a stack
// on the peer's side of it. The stack side dictates the ring's geometry;
// only the MTU must agree.
func dialRingStack(s stackSetup, path string, log *slog.Logger) (*zcStack, error) {
	p, err := ring.Dial(path, ring.Config{MTU: uint32(s.tap.MTU)})
	if err != nil {
		return nil, err
	}
	z, err := buildStack(ringWindow(s), p.Endpoint(), "ring-peer", log)
	if err != nil {
		return nil, err
	}
	z.peer = p
	return z, nil
}

// ringStats returns the ring link's counters, from whichever side this
// stack is, and whether it is on a ring at all.
func (z *zcStack) ringStats() (ring.Stats, bool) {
	switch {
	case z.ring != nil:
		return z.ring.Stats(), true
	case z.peer != nil:
		return z.peer.Stats(), true
	}
	return ring.Stats{}, false
}

// Addresses of the in-process pair the tools' -inproc mode builds: the
// client's stack and the server's.
var (
	inprocClient = netip.MustParsePrefix("192.0.2.1/24")
	inprocServer = netip.MustParsePrefix("192.0.2.2/24")
)

// openPairStacks builds two stacks joined by an in-process link: the
// client at inprocClient, the server at inprocServer. A capture (-pcap)
// records the client's side.
func openPairStacks(s stackSetup, log *slog.Logger) (client, server *zcStack, err error) {
	a, b, err := pair.New(pair.Config{MTU: uint32(s.tap.MTU)})
	if err != nil {
		return nil, nil, err
	}
	cs := s
	cs.addrs = []netip.Prefix{inprocClient}
	cs.routes = nil
	if client, err = buildStack(cs, a, "pair-client", log); err != nil {
		b.Close()
		return nil, nil, err
	}
	client.pair = a
	ss := cs
	ss.addrs = []netip.Prefix{inprocServer}
	ss.pcap = ""
	if server, err = buildStack(ss, b, "pair-server", log); err != nil {
		client.Close()
		return nil, nil, err
	}
	server.pair = b
	return client, server, nil
}

// buildStack makes the stack, NIC, routes, pool and socket API on link; it
// takes ownership of link (closing it on failure).
func buildStack(s stackSetup, link gstack.LinkEndpoint, name string, log *slog.Logger) (z *zcStack, err error) {
	z = &zcStack{nicName: name, log: log}
	attached := false // the stack owns link once AddNIC succeeds
	defer func() {
		if err != nil {
			if !attached {
				link.Close()
			}
			z.Close()
		}
	}()
	if s.pcap != "" {
		if z.pcap, err = pcap.Create(s.pcap, log); err != nil {
			return z, err
		}
		if link, err = pcap.New(link, z.pcap, s.snap); err != nil {
			return z, err
		}
	}
	so := s.stack
	so.Logger = log
	if z.st, err = stack.New(so); err != nil {
		return z, err
	}
	if z.nic, err = z.st.AddNIC(link, stack.NICConfig{Name: name, Addrs: s.addrs}); err != nil {
		return z, err
	}
	attached = true
	for _, r := range s.routes {
		r.NIC = z.nic
		if err = z.st.AddRoute(r); err != nil {
			return z, err
		}
	}
	pc := s.pool
	pc.Logger = log
	if z.pool, err = dmapool.New(pc); err != nil {
		return z, fmt.Errorf("buffer pool: %w", err)
	}
	if z.zs, err = api.New(z.st, api.Options{Pool: z.pool, DefaultAssoc: s.assoc}); err != nil {
		return z, err
	}
	return z, nil
}

// transport returns the zero-copy sockets of the stack as a transport.
func (z *zcStack) transport() transport { return newZCTransport(z.zs, z.st) }

// Close closes the sockets, the stack with its link, the capture and the
// pool, and returns the first error (a pool still lending buffers is one:
// something did not release what it received).
func (z *zcStack) Close() error {
	var errs []error
	if z.zs != nil {
		errs = append(errs, z.zs.Close())
	}
	if z.st != nil {
		errs = append(errs, z.st.Close())
	}
	if z.pcap != nil {
		errs = append(errs, z.pcap.Close())
	}
	if z.pool != nil {
		errs = append(errs, z.pool.Close())
	}
	return errors.Join(errs...)
}
