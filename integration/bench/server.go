package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/api"
)

// Every server offers the same four services on consecutive ports from its
// base port; the client finds them at server.addr.
const (
	offSink   = 0 // TCP: read each connection to EOF and count (upload)
	offSource = 1 // TCP: write until the window ends, then close (download)
	offEcho   = 2 // TCP: echo every byte back (round trips)
	offUDP    = 3 // UDP: count datagrams (64-byte flood)
)

// I/O sizes, the same for every contender and for the client.
const (
	writeChunk = 256 << 10 // bytes per Write / SendFunc call
	readChunk  = 256 << 10 // bytes per Read
	udpPayload = 64        // bytes of UDP payload per datagram
	udpBatch   = 64        // datagrams per RecvMsg on the zero-copy socket
)

// maxOps bounds the iterations of every load loop, on top of its time
// bound: no loop here can turn faster than 10 ns an iteration, so the count
// never ends a loop before its time does.
func maxOps(d time.Duration) int { return int(d/(10*time.Nanosecond)) + 1 }

// window is the time one measurement runs. begin is closed once start and
// until are set; readers of start and until wait for begin first.
type window struct {
	begin chan struct{}
	start time.Time
	until time.Time
}

func newWindow() *window { return &window{begin: make(chan struct{})} }

// open sets the window to [now, now+d) and lets everyone waiting go.
func (w *window) open(d time.Duration) time.Time {
	w.start = time.Now()
	w.until = w.start.Add(d)
	close(w.begin)
	return w.start
}

// streamResult is what the server reports for one TCP stream.
type streamResult struct {
	bytes int64
	end   time.Time // when the last byte was read (sink) or written (source)
	err   error
}

// server is one contender's serving side: the four services, each served by
// a persistent accept (or receive) loop that runs until close. Connections
// are handled one goroutine each; handlers report on the channels below.
type server struct {
	addr      netip.AddrPort // the sink's address; the others follow it
	maxStream time.Duration  // the longest a connection may live
	lifetime  time.Duration  // the longest the server's loops may run

	sinkDone   chan streamResult // one result per upload stream, as it ends
	sourceDone chan streamResult // one result per download stream, as it ends
	plans      chan *window      // one per download stream to come
	udpRecv    atomic.Uint64     // datagrams received since the server started

	ctx    context.Context // ends when the server closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool                   // +checklocks:mu
	closers map[io.Closer]struct{} // +checklocks:mu; listeners and live connections
}

func newServer(addr netip.AddrPort, maxStream, lifetime time.Duration) *server {
	ctx, cancel := context.WithTimeout(context.Background(), lifetime)
	return &server{
		addr:       addr,
		maxStream:  maxStream,
		lifetime:   lifetime,
		sinkDone:   make(chan streamResult, 64),
		sourceDone: make(chan streamResult, 64),
		plans:      make(chan *window, 64),
		ctx:        ctx,
		cancel:     cancel,
		closers:    map[io.Closer]struct{}{},
	}
}

// port returns the address of the service at offset off.
func (s *server) port(off int) netip.AddrPort {
	return netip.AddrPortFrom(s.addr.Addr(), s.addr.Port()+uint16(off))
}

// track registers c to be closed by close; it returns false (and closes c)
// if the server is already closed.
func (s *server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.closers[c] = struct{}{}
	return true
}

func (s *server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.closers, c)
	s.mu.Unlock()
	c.Close()
}

// close stops every loop, closes every listener and connection, and waits
// for the handlers, at most timeout.
func (s *server) close(timeout time.Duration) error {
	s.mu.Lock()
	s.closed = true
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	s.cancel()
	for c := range cs {
		c.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%w: server %s: handlers still running after %v", errMeasure, s.addr, timeout)
	}
}

// spawn runs fn as a handler the server waits for.
func (s *server) spawn(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// report delivers r without blocking forever: a result nobody waits for
// any more (its measurement gave up) is dropped.
func (s *server) report(ch chan streamResult, r streamResult) {
	select {
	case ch <- r:
	case <-s.ctx.Done():
	}
}

// takePlan waits for the plan of the download stream just accepted and for
// its window to open.
func (s *server) takePlan() (*window, error) {
	t := time.NewTimer(s.maxStream)
	defer t.Stop()
	var w *window
	select {
	case w = <-s.plans:
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	case <-t.C:
		return nil, fmt.Errorf("%w: download stream accepted, but no measurement planned it", errMeasure)
	}
	select {
	case <-w.begin:
		return w, nil
	case <-s.ctx.Done():
		return nil, net.ErrClosed
	case <-t.C:
		return nil, fmt.Errorf("%w: download window never opened", errMeasure)
	}
}

// --- Servers over net.Listener / net.PacketConn: the kernel, gonet, and
// zcnet's net.Conn adapters. Every received byte is copied once, by Read,
// into the handler's buffer; every sent byte once, by Write, out of it.

// netListeners are the listening sockets of a net-shaped server, made by
// the contender (in the right namespace, on the right stack).
type netListeners struct {
	sink, source, echo net.Listener
	udp                net.PacketConn
}

// serveNet starts the four services on ls and takes ownership of them.
func (s *server) serveNet(ls netListeners) {
	for _, svc := range []struct {
		ln net.Listener
		fn func(net.Conn)
	}{{ls.sink, s.sinkNet}, {ls.source, s.sourceNet}, {ls.echo, s.echoNet}} {
		ln, fn := svc.ln, svc.fn
		if !s.track(ln) {
			continue
		}
		s.spawn(func() {
			for i := 0; i < maxOps(s.lifetime); i++ {
				c, err := ln.Accept()
				if err != nil {
					return // closed
				}
				if !s.track(c) {
					return
				}
				s.spawn(func() {
					defer s.untrack(c)
					fn(c)
				})
			}
		})
	}
	if s.track(ls.udp) {
		s.spawn(func() { s.udpNet(ls.udp) })
	}
}

func (s *server) sinkNet(c net.Conn) {
	deadline := time.Now().Add(s.maxStream)
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, readChunk)
	var n int64
	for i := 0; i < maxOps(s.maxStream) && time.Now().Before(deadline); i++ {
		m, err := c.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			s.report(s.sinkDone, streamResult{bytes: n, end: time.Now()})
			return
		}
		if err != nil {
			s.report(s.sinkDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("sink read: %w", err)})
			return
		}
	}
	s.report(s.sinkDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("%w: sink stream outlived %v", errMeasure, s.maxStream)})
}

func (s *server) sourceNet(c net.Conn) {
	w, err := s.takePlan()
	if err != nil {
		s.report(s.sourceDone, streamResult{err: err})
		return
	}
	_ = c.SetWriteDeadline(w.until.Add(s.maxStream))
	buf := make([]byte, writeChunk)
	var n int64
	for i := 0; i < maxOps(s.maxStream) && time.Now().Before(w.until); i++ {
		m, err := c.Write(buf)
		n += int64(m)
		if err != nil {
			s.report(s.sourceDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("source write: %w", err)})
			return
		}
	}
	// Close sends the FIN after the queued data; the client reads to EOF.
	err = c.Close()
	s.report(s.sourceDone, streamResult{bytes: n, end: time.Now(), err: err})
}

func (s *server) echoNet(c net.Conn) {
	deadline := time.Now().Add(s.maxStream)
	_ = c.SetDeadline(deadline)
	buf := make([]byte, 64)
	for i := 0; i < maxOps(s.maxStream) && time.Now().Before(deadline); i++ {
		m, err := c.Read(buf)
		if m > 0 {
			if _, werr := c.Write(buf[:m]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF: the client is done
		}
	}
}

func (s *server) udpNet(pc net.PacketConn) {
	buf := make([]byte, 2048)
	// The loop ends when close closes pc; the deadline bounds it otherwise.
	_ = pc.SetReadDeadline(time.Now().Add(s.lifetime))
	for i := 0; i < maxOps(s.lifetime); i++ {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return
		}
		s.udpRecv.Add(1)
	}
}

// --- The zero-copy server over zcnet's sockets: Recv hands over the
// link's own memory, released unread; SendFunc lets the sender write into
// the stack's buffer (the source writes nothing into it, the way a sender
// of page-cache data does with sendfile).

// serveZC starts the four services on the socket API a and takes ownership
// of the sockets it opens.
func (s *server) serveZC(a *api.Stack) error {
	for _, svc := range []struct {
		off int
		fn  func(*api.Socket)
	}{{offSink, s.sinkZC}, {offSource, s.sourceZC}, {offEcho, s.echoZC}} {
		ln, err := a.ListenTCP(s.port(svc.off))
		if err != nil {
			return fmt.Errorf("%w: listen %s: %v", errSetup, s.port(svc.off), err)
		}
		fn := svc.fn
		if !s.track(ln) {
			return net.ErrClosed
		}
		s.spawn(func() {
			for i := 0; i < maxOps(s.lifetime); i++ {
				c, err := ln.Accept(s.ctx)
				if err != nil {
					return
				}
				if !s.track(c) {
					return
				}
				s.spawn(func() {
					defer s.untrack(c)
					fn(c)
				})
			}
		})
	}
	u, err := a.ListenUDP(s.port(offUDP))
	if err != nil {
		return fmt.Errorf("%w: listen %s: %v", errSetup, s.port(offUDP), err)
	}
	if s.track(u) {
		s.spawn(func() { s.udpZC(u) })
	}
	return nil
}

func (s *server) sinkZC(c *api.Socket) {
	ctx, cancel := context.WithTimeout(s.ctx, s.maxStream)
	defer cancel()
	var n int64
	for i := 0; i < maxOps(s.maxStream); i++ {
		b, err := c.Recv(ctx)
		if errors.Is(err, io.EOF) {
			s.report(s.sinkDone, streamResult{bytes: n, end: time.Now()})
			return
		}
		if err != nil {
			s.report(s.sinkDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("sink recv: %w", err)})
			return
		}
		n += int64(b.Len())
		if err := b.Release(); err != nil {
			s.report(s.sinkDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("sink release: %w", err)})
			return
		}
	}
	s.report(s.sinkDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("%w: sink stream outlived %v", errMeasure, s.maxStream)})
}

// fillNothing is the source's fill function: the bytes are whatever the
// stack's fresh send buffer holds; producing them is the application's
// business, not the stack's.
func fillNothing(p []byte) int { return len(p) }

func (s *server) sourceZC(c *api.Socket) {
	w, err := s.takePlan()
	if err != nil {
		s.report(s.sourceDone, streamResult{err: err})
		return
	}
	ctx, cancel := context.WithDeadline(s.ctx, w.until.Add(s.maxStream))
	defer cancel()
	var n int64
	for i := 0; i < maxOps(s.maxStream) && time.Now().Before(w.until); i++ {
		m, err := c.SendFunc(ctx, writeChunk, fillNothing)
		n += int64(m)
		if err != nil {
			s.report(s.sourceDone, streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("source sendfunc: %w", err)})
			return
		}
	}
	err = c.Close()
	s.report(s.sourceDone, streamResult{bytes: n, end: time.Now(), err: err})
}

func (s *server) echoZC(c *api.Socket) {
	ctx, cancel := context.WithTimeout(s.ctx, s.maxStream)
	defer cancel()
	for i := 0; i < maxOps(s.maxStream); i++ {
		b, err := c.Recv(ctx)
		if err != nil {
			return // EOF: the client is done
		}
		// Send takes the received Buf over: the echo never touches it.
		if _, err := c.Send(ctx, b); err != nil {
			return
		}
	}
}

func (s *server) udpZC(u *api.Socket) {
	bufs := make([]api.Buf, udpBatch)
	for i := 0; i < maxOps(s.lifetime); i++ {
		n, _, err := u.RecvMsg(s.ctx, bufs)
		if err != nil {
			return
		}
		for _, b := range bufs[:n] {
			b.Release()
		}
		s.udpRecv.Add(uint64(n))
	}
}
