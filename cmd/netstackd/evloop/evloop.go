// Package evloop is netstackd's event-loop service engine: TCP echo and
// discard services on zcnet's event channels, run as the API means programs
// to (the paper's §4, §7): a fixed set of loops, each a
// goroutine consuming one channel, serves every connection. No goroutine
// and no blocked call per connection: an idle connection costs its socket,
// one queued multishot receive and one reserved slot on a channel.
//
// The flow of one connection, all on the loop that accepted it:
//
//  1. accept: each loop keeps one OpAccept queued on each listener with its
//     own channel, so accepted sockets spread over the loops and each is
//     owned by one goroutine from its first event;
//  2. receive: one OpRecvMulti per connection posts a completion per
//     hand-off (the Buf the stack filled, not a copy);
//  3. echo: each received Buf is sent back with OpSend, which takes it over
//     and releases it once the stack has copied its bytes. At most
//     evMaxSends are in flight per connection; the rest wait in order in
//     the connection's queue. Received Bufs count against the socket's
//     association until they are sent, so a peer that does not read fills
//     its window, then our queue, then the association, and the multishot
//     receive stops taking data: TCP's window closes towards the sender.
//     Discard releases each Buf at once;
//  4. end: the multishot's last completion (FlagEOF, or an error) ends the
//     receiving; echo closes once its queue is sent, discard at once.
//
// It owns the loops, their channels and the connections they accept; it
// does not own the stack or the socket API (the caller's), nor UDP services,
// status pages or metrics (netstackd's main package reads Listeners and
// ChannelStats for those).
package evloop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/evchan"
)

// evMaxSends bounds one connection's sends in flight: enough to keep the
// stack's send buffer fed while the loop serves others.
const evMaxSends = 8

// evChannelCap is each loop's default channel capacity; every connection
// reserves one slot for its multishot receive, and sends one each while in
// flight.
const evChannelCap = 1 << 15

// Headroom is the room a loop keeps free on its channel for sends and
// accepts: a connection accepted when less is free is closed at once
// (counted as refused), so idle connections can never take the slots the
// busy ones need to make progress.
const Headroom = 256

// Server is the loops and the listeners they serve.
type Server struct {
	zs    *api.Stack
	log   *slog.Logger
	loops []*evLoop

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners []*Listener // +checklocks:mu
	started   bool        // +checklocks:mu
	closed    bool        // +checklocks:mu
}

// Listener is one TCP service: its listening socket and what it does
// with a connection's bytes.
type Listener struct {
	name  string
	sock  *api.Socket
	echo  bool           // send back (echo) or release (discard)
	bytes *atomic.Uint64 // echo: bytes sent back; discard: bytes received
	conns atomic.Int64   // open connections
	// refused counts connections closed at accept because their loop's
	// channel had less than Headroom free.
	refused atomic.Uint64
}

// evLoop is one goroutine and its channel. Every field but ec is owned by
// the loop's goroutine (and by Close once that goroutine has ended).
type evLoop struct {
	srv    *Server
	ec     *evchan.Channel
	conns  map[*evConn]struct{}
	retry  []*evConn         // connections whose send found the channel full
	accept map[*Listener]int // listener -> 1 while an OpAccept of this loop is queued; -1 once it closed
}

// evConn is one connection, owned by one loop.
type evConn struct {
	ln       *Listener
	sock     *api.Socket
	pending  []api.Buf // received, waiting to be sent back, in order
	inflight int       // OpSends submitted and not completed
	eof      bool      // the multishot receive has ended at the peer's FIN
	closed   bool
	retrying bool // in the loop's retry list
}

// New makes n loops (0: one per CPU, at most 4) on zs, each with a
// channel of capacity events (0: evChannelCap).
func New(zs *api.Stack, n, capacity int, log *slog.Logger) (*Server, error) {
	if capacity <= 0 {
		capacity = evChannelCap
	}
	if n <= 0 {
		n = min(runtime.GOMAXPROCS(0), 4)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{zs: zs, log: log, ctx: ctx, cancel: cancel}
	for i := 0; i < n; i++ {
		ec, err := evchan.New(evchan.Config{Capacity: capacity})
		if err != nil {
			for _, l := range s.loops {
				l.ec.Close()
			}
			cancel()
			return nil, err
		}
		s.loops = append(s.loops, &evLoop{srv: s, ec: ec, conns: map[*evConn]struct{}{}, accept: map[*Listener]int{}})
	}
	return s, nil
}

// Listen adds a TCP service on port. Call it before Start.
func (s *Server) Listen(name string, port uint16, echo bool, counter *atomic.Uint64) (*Listener, error) {
	sock, err := s.zs.ListenTCP(netip.AddrPortFrom(netip.Addr{}, port))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ln := &Listener{name: name, sock: sock, echo: echo, bytes: counter}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		sock.Close()
		return nil, fmt.Errorf("%s: the event loops have started", name)
	}
	s.listeners = append(s.listeners, ln)
	return ln, nil
}

// Start starts the loops; each queues its accepts first.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	lns := append([]*Listener(nil), s.listeners...)
	for _, l := range s.loops {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.run(s.ctx, lns)
		}()
	}
}

// Close stops the loops, closes the listeners and every connection, and
// gives back what the channels still hold.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	lns := s.listeners
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	for _, ln := range lns {
		ln.sock.Close()
	}
	for _, l := range s.loops {
		for c := range l.conns {
			l.closeConn(c)
		}
		l.ec.CloseFunc(releaseEvent)
	}
	return nil
}

// releaseEvent gives back what an event nobody will handle carries.
func releaseEvent(ev evchan.Event) {
	if b, ok := api.BufOf(ev); ok {
		b.Release()
	}
	if sock, ok := api.SocketOf(ev); ok {
		sock.Close()
	}
}

// ChannelStats returns each loop's channel counters, for the status page.
func (s *Server) ChannelStats() []evchan.Stats {
	st := make([]evchan.Stats, len(s.loops))
	for i, l := range s.loops {
		st[i] = l.ec.Stats()
	}
	return st
}

// evBatch is how many events a loop takes at once.
const evBatch = 64

func (l *evLoop) run(ctx context.Context, lns []*Listener) {
	for _, ln := range lns {
		l.queueAccept(ln)
	}
	evs := make([]evchan.Event, evBatch)
	for {
		n, err := l.ec.Next(ctx, evs)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, evchan.ErrClosed) {
				l.srv.log.Warn("event loop stopped", "err", err)
			}
			return
		}
		for i := range evs[:n] {
			l.handle(evs[i])
			evs[i] = evchan.Event{} // drop the references
		}
		l.retryBlocked()
		for ln, st := range l.accept {
			if st == 0 {
				l.queueAccept(ln)
			}
		}
	}
}

// queueAccept submits this loop's accept on ln. If the channel is full, the
// loop tries again after its next batch.
func (l *evLoop) queueAccept(ln *Listener) {
	l.accept[ln] = 0
	err := l.srv.zs.Submit(context.Background(), false, &api.Op{Kind: api.OpAccept, Sock: ln.sock, EC: l.ec, Data: ln})
	switch {
	case err == nil:
		l.accept[ln] = 1
	case errors.Is(err, evchan.ErrFull):
	default:
		// The listener is closed: this service stops accepting.
		l.accept[ln] = -1
	}
}

func (l *evLoop) handle(ev evchan.Event) {
	if ev.Source != evchan.SourceNetOp {
		return
	}
	switch api.OpKind(ev.Op) {
	case api.OpAccept:
		ln := ev.Data.(*Listener)
		l.accept[ln] = 0 // queued again after this batch
		if sock, ok := api.SocketOf(ev); ok {
			l.adopt(ln, sock)
			return
		}
		if ev.Errno == syscall.EBADF || ev.Errno == syscall.ECANCELED {
			l.accept[ln] = -1
			return
		}
		l.srv.log.Debug("accept failed", "service", ln.name, "errno", ev.Errno)
	case api.OpRecvMulti:
		c := ev.Data.(*evConn)
		if b, ok := api.BufOf(ev); ok {
			switch {
			case c.closed:
				b.Release()
			case c.ln.echo:
				c.pending = append(c.pending, b)
				l.pump(c)
			default:
				c.ln.bytes.Add(uint64(len(b.Bytes())))
				b.Release()
			}
		}
		if ev.Flags&evchan.FlagMore != 0 || c.closed {
			return
		}
		if ev.Flags&api.FlagEOF == 0 {
			// Reset, or the socket failed: nothing more to send.
			l.srv.log.Debug("connection ended", "service", c.ln.name, "peer", c.sock.RemoteAddr(), "errno", ev.Errno)
			l.closeConn(c)
			return
		}
		c.eof = true
		l.finishIfDone(c)
	case api.OpSend:
		c := ev.Data.(*evConn)
		c.inflight--
		if c.closed {
			return
		}
		c.ln.bytes.Add(uint64(ev.Result))
		if ev.Errno != 0 {
			l.srv.log.Debug("echo send failed", "service", c.ln.name, "peer", c.sock.RemoteAddr(), "errno", ev.Errno)
			l.closeConn(c)
			return
		}
		l.pump(c)
		l.finishIfDone(c)
	}
}

// adopt starts serving a new connection: one multishot receive.
func (l *evLoop) adopt(ln *Listener, sock *api.Socket) {
	if l.ec.Stats().Free < Headroom {
		ln.refused.Add(1)
		l.srv.log.Warn("connection refused: event channel full", "service", ln.name, "peer", sock.RemoteAddr(), "capacity", l.ec.Cap())
		sock.Close()
		return
	}
	c := &evConn{ln: ln, sock: sock}
	if err := l.srv.zs.Submit(context.Background(), false, &api.Op{Kind: api.OpRecvMulti, Sock: sock, EC: l.ec, Data: c}); err != nil {
		l.srv.log.Debug("receive not queued", "service", ln.name, "peer", sock.RemoteAddr(), "err", err)
		sock.Close()
		return
	}
	l.conns[c] = struct{}{}
	ln.conns.Add(1)
}

// pump submits c's queued Bufs, in order, up to evMaxSends in flight.
func (l *evLoop) pump(c *evConn) {
	for len(c.pending) > 0 && c.inflight < evMaxSends && !c.closed {
		err := l.srv.zs.Submit(context.Background(), false, &api.Op{Kind: api.OpSend, Sock: c.sock, EC: l.ec, Buf: c.pending[0], Data: c})
		if errors.Is(err, evchan.ErrFull) {
			// Sends complete and free slots: try again after the batch.
			if !c.retrying {
				c.retrying = true
				l.retry = append(l.retry, c)
			}
			return
		}
		if err != nil {
			l.srv.log.Debug("echo send not queued", "service", c.ln.name, "err", err)
			l.closeConn(c)
			return
		}
		c.pending[0] = api.Buf{}
		c.pending = c.pending[1:]
		c.inflight++
	}
	if len(c.pending) == 0 {
		c.pending = nil // let a burst's backing array go
	}
}

// retryBlocked pumps the connections whose sends found the channel full.
func (l *evLoop) retryBlocked() {
	if len(l.retry) == 0 {
		return
	}
	rs := l.retry
	l.retry = nil
	for _, c := range rs {
		c.retrying = false
		l.pump(c)
		l.finishIfDone(c)
	}
}

// finishIfDone closes c once the peer has finished sending and everything
// received has been sent back.
func (l *evLoop) finishIfDone(c *evConn) {
	if c.eof && len(c.pending) == 0 && c.inflight == 0 && !c.closed {
		l.closeConn(c)
	}
}

// closeConn closes c's socket (which completes its queued ops on the
// channel) and releases what it had received and not sent.
func (l *evLoop) closeConn(c *evConn) {
	if c.closed {
		return
	}
	c.closed = true
	for _, b := range c.pending {
		b.Release()
	}
	c.pending = nil
	c.sock.Close()
	delete(l.conns, c)
	c.ln.conns.Add(-1)
}

// Listeners returns the services added with Listen.
func (s *Server) Listeners() []*Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Listener(nil), s.listeners...)
}

// Loops returns the number of event loops.
func (s *Server) Loops() int { return len(s.loops) }

// Name returns the service's name, as Listen got it.
func (l *Listener) Name() string { return l.name }

// Addr returns the listening address.
func (l *Listener) Addr() netip.AddrPort { return l.sock.LocalAddr() }

// Conns returns the connections open now.
func (l *Listener) Conns() int64 { return l.conns.Load() }

// Refused returns the connections closed at accept because their loop's
// channel had less than Headroom events free.
func (l *Listener) Refused() uint64 { return l.refused.Load() }
