//go:build linux

package ring

import (
	"fmt"
	"net"
	"os"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack/link"
)

// Link is the stack side of a ring link: a stack.LinkEndpoint that serves
// one peer at a time on a unix socket, each in a shared segment of its own.
// When a peer goes (socket closed, process killed), its session ends, the
// link unmaps that segment, and the next peer is accepted into a fresh one.
type Link struct {
	endpoint
	lay    layout         // immutable
	segCfg dmapool.Config // immutable: what Config says of the segments' memory
	ln     *net.UnixListener
	onPeer func(bool, error)

	// next is the segment the next session will use: made by Listen (so a
	// pool that cannot be made fails there) and after each session that
	// used one. Only the accept goroutine touches it.
	next *segment

	mu     sync.Mutex
	conn   *net.UnixConn // +checklocks:mu; the live session's socket
	seg    *segment      // +checklocks:mu; the live session's segment, for tests
	closed bool          // +checklocks:mu
	wg     sync.WaitGroup
}

// segment is one session's shared memory: a Shared pool of its own (a fresh
// sealed memfd) with the control area, rings and frames reserved whole.
// Giving every session a new one fences departed peers: a peer that closed
// its socket but lives on still maps its old segment, which no later
// session uses, so it can never touch the frames of the next.
type segment struct {
	pool   *dmapool.Pool
	buf    dmapool.Buf // the whole segment, reserved for the session
	mem    []byte      // buf's bytes; valid until close
	region dmapool.RegionInfo
	base   int // buf's offset in its region
}

func newSegment(lay layout, mem dmapool.Config) (*segment, error) {
	pool, err := dmapool.New(dmapool.Config{Size: lay.size(), SlotSize: 4096, Shared: true, Pin: mem.Pin, Logger: mem.Logger, Name: "zcnet-ring"})
	if err != nil {
		return nil, fmt.Errorf("ring: pool: %w", err)
	}
	buf, err := pool.Reserve(lay.size())
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("ring: reserving segment: %w", err)
	}
	region, base, err := pool.Locate(buf)
	if err != nil {
		buf.Release()
		pool.Close()
		return nil, fmt.Errorf("ring: %w", err)
	}
	return &segment{pool: pool, buf: buf, mem: buf.Bytes(), region: pool.Regions()[region], base: base}, nil
}

// close unmaps the segment and closes its memfd; nothing of this process
// may touch mem afterwards.
func (s *segment) close() {
	s.buf.Release()
	s.pool.Close()
}

var (
	_ stack.LinkEndpoint = (*Link)(nil)
	_ stack.GSOEndpoint  = (*Link)(nil)
	_ link.PayloadHooker = (*Link)(nil)
	_ link.Counted       = (*Link)(nil)
	_ link.Admitter      = (*Link)(nil)
)

// Listen checks cfg, makes the first session's shared segment, listens on
// the unix socket path and serves peers one at a time until Close. The
// socket file is removed by Close.
func Listen(path string, cfg Config) (*Link, error) {
	lay, mtu, err := cfg.layout()
	if err != nil {
		return nil, err
	}
	segCfg := dmapool.Config{Pin: cfg.Pin, Logger: cfg.Logger}
	seg, err := newSegment(lay, segCfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		seg.close()
		return nil, fmt.Errorf("ring: listen: %w", err)
	}
	l := &Link{lay: lay, segCfg: segCfg, next: seg, ln: ln, onPeer: cfg.OnPeer}
	l.init(mtu, lay.frameSize, cfg.GSO, cfg.LinkAddress)
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Addr returns the socket path.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// serve accepts peers one at a time until the listener closes, then frees
// the unused segment.
func (l *Link) serve() {
	defer l.wg.Done()
	defer func() {
		if l.next != nil {
			l.next.close()
		}
	}()
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return
		}
		l.session(c)
	}
}

// session runs one peer from handshake to its end.
//
//  1. hello/version check (refusal counted and reported);
//  2. a segment of its own (a fresh memfd, every frame with its owner) and
//     fresh eventfds, the reply with the fds;
//  3. the receive loop runs while this goroutine blocks reading the socket,
//     which only ends when the peer closes it or dies (or Close);
//  4. teardown: unpublish the channel, stop the loop, fence transmit, unmap
//     the segment (the peer's mapping, if it lives on, is of a memfd no
//     later session uses).
func (l *Link) session(c *net.UnixConn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.conn = c
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.conn = nil
		l.mu.Unlock()
		c.Close()
	}()
	v, err := readHello(c)
	if err == nil && v != Version {
		_ = sendReply(c, reply{status: statusBad})
		err = fmt.Errorf("%w: peer speaks version %d, we speak %d", ErrMismatch, v, Version)
	}
	if err != nil {
		l.ctr.refused.Add(1)
		l.report(false, err)
		return
	}
	seg := l.next
	if seg == nil {
		if seg, err = newSegment(l.lay, l.segCfg); err != nil {
			l.report(false, err)
			return
		}
	}
	l.next = nil
	defer func() {
		l.mu.Lock()
		l.seg = nil
		closed := l.closed
		l.mu.Unlock()
		seg.close() // after the fence below: nothing touches mem any more
		if closed {
			return
		}
		if next, err := newSegment(l.lay, l.segCfg); err == nil {
			l.next = next
		} // else the next session tries again
	}()
	l.mu.Lock()
	l.seg = seg
	l.mu.Unlock()
	myEv, err := newEventfd()
	if err != nil {
		l.report(false, err)
		return
	}
	peerEv, err := newEventfd()
	if err != nil {
		myEv.Close()
		l.report(false, err)
		return
	}
	word32(seg.mem, offMagic).Store(magic)
	word32(seg.mem, offVersion).Store(Version)
	ch := newChannel(seg.mem, l.lay, &l.ctr, true, rawFD(myEv), rawFD(peerEv))
	var features uint32
	if l.gso {
		features |= featureGSO
	}
	r := reply{status: statusOK, slots: l.lay.slots, frames: l.lay.frames, frameSize: l.lay.frameSize,
		mtu: l.MTU(), features: features, regionSize: uint64(seg.region.Size), base: uint64(seg.base)}
	// Live before the peer hears so: its first frames find a receiver.
	l.ctr.peersUp.Add(1)
	l.ch.Store(ch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.rxLoop(ch)
	}()
	if err = sendReply(c, r, seg.region.FD, rawFD(myEv), rawFD(peerEv)); err != nil {
		err = fmt.Errorf("%w: sending reply: %v", ErrHandshake, err)
	} else {
		l.report(true, nil)
		var b [64]byte
		for {
			if _, err = c.Read(b[:]); err != nil {
				break
			}
		}
	}
	l.ch.Store(nil)
	ch.shutdown()
	<-done
	ch.txMu.Lock()
	ch.dead = true
	ch.txMu.Unlock()
	ch.closeEvents([]*os.File{myEv, peerEv})
	l.ctr.peersLost.Add(1)
	l.report(false, fmt.Errorf("%w: %v", ErrPeerGone, err))
}

func (l *Link) report(up bool, err error) {
	if l.onPeer != nil {
		l.onPeer(up, err)
	}
}

// Attach implements stack.LinkEndpoint.Attach. Frames that arrive while no
// dispatcher is attached are dropped and counted.
func (l *Link) Attach(d stack.NetworkDispatcher) {
	l.endpoint.mu.Lock()
	defer l.endpoint.mu.Unlock()
	l.dispatcher = d
}

// Wait implements stack.LinkEndpoint.Wait: it returns when the accept and
// receive goroutines have stopped and the pool is freed, after Close.
func (l *Link) Wait() { l.wg.Wait() }

// Close implements stack.LinkEndpoint.Close: it stops accepting, ends the
// live session and removes the socket file. Safe to call more than once.
func (l *Link) Close() {
	if fn := l.takeOnClose(); fn != nil {
		fn() // removes the NIC, which calls Close again
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	c := l.conn
	l.mu.Unlock()
	l.ln.Close()
	if c != nil {
		c.Close()
	}
}

// Connected reports whether a peer session is live.
func (l *Link) Connected() bool { return l.ch.Load() != nil }
