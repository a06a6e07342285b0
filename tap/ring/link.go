//go:build linux

package ring

import (
	"fmt"
	"net"
	"os"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/dmapool"
)

// Link is the stack side of a ring link: a stack.LinkEndpoint that owns the
// shared pool and serves one peer at a time on a unix socket. When a peer
// goes (socket closed, process killed), its session ends, every frame it held
// returns to the link, and the next peer is accepted.
type Link struct {
	endpoint
	lay    layout
	pool   *dmapool.Pool
	seg    dmapool.Buf // the whole segment, reserved for the link's life
	mem    []byte      // seg's bytes
	region dmapool.RegionInfo
	base   int // seg's offset in its region
	ln     *net.UnixListener
	onPeer func(bool, error)

	mu     sync.Mutex
	conn   *net.UnixConn // +checklocks:mu; the live session's socket
	closed bool          // +checklocks:mu
	wg     sync.WaitGroup
}

var _ stack.LinkEndpoint = (*Link)(nil)

// Listen creates the shared pool, listens on the unix socket path and serves
// peers one at a time until Close. The socket file is removed by Close.
func Listen(path string, cfg Config) (*Link, error) {
	lay, mtu, err := cfg.layout()
	if err != nil {
		return nil, err
	}
	pool, err := dmapool.New(dmapool.Config{Size: lay.size(), SlotSize: 4096, Shared: true, Pin: dmapool.PinPrefer, Name: "zcnet-ring"})
	if err != nil {
		return nil, fmt.Errorf("ring: pool: %w", err)
	}
	seg, err := pool.Reserve(lay.size())
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("ring: reserving segment: %w", err)
	}
	region, base, err := pool.Locate(seg)
	if err != nil {
		seg.Release()
		pool.Close()
		return nil, fmt.Errorf("ring: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		seg.Release()
		pool.Close()
		return nil, fmt.Errorf("ring: listen: %w", err)
	}
	l := &Link{lay: lay, pool: pool, seg: seg, mem: seg.Bytes(), region: pool.Regions()[region], base: base, ln: ln, onPeer: cfg.OnPeer}
	l.init(mtu, lay.frameSize, cfg.LinkAddress)
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Addr returns the socket path.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// serve accepts peers one at a time until the listener closes, then frees
// the pool.
func (l *Link) serve() {
	defer l.wg.Done()
	defer func() {
		l.seg.Release()
		l.pool.Close()
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
//  2. fresh eventfds, the control area zeroed (every frame back with its
//     owner), the reply with the fds;
//  3. the receive loop runs while this goroutine blocks reading the socket,
//     which only ends when the peer closes it or dies (or Close);
//  4. teardown: unpublish the channel, stop the loop, fence transmit.
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
	clear(l.mem[:l.lay.framesOff()])
	word32(l.mem, offMagic).Store(magic)
	word32(l.mem, offVersion).Store(Version)
	ch := newChannel(l.mem, l.lay, &l.ctr, true, myEv, peerEv)
	r := reply{status: statusOK, slots: l.lay.slots, frames: l.lay.frames, frameSize: l.lay.frameSize,
		mtu: l.MTU(), regionSize: uint64(l.region.Size), base: uint64(l.base)}
	// Live before the peer hears so: its first frames find a receiver.
	l.ctr.peersUp.Add(1)
	l.ch.Store(ch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.rxLoop(ch)
	}()
	if err = sendReply(c, r, l.region.FD, rawFD(myEv), rawFD(peerEv)); err != nil {
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
	closeFiles([]*os.File{myEv, peerEv})
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
