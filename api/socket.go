package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
)

// Socket is a TCP or UDP socket whose received data is handed to the
// application as Bufs it owns (the paper's sio_recv, Figure 5) instead of
// being copied into the caller's memory. Its methods are safe for
// concurrent use; receives are served in order, one caller at a time.
type Socket struct {
	s     *Stack
	proto tcpip.TransportProtocolNumber
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	flow  *stack.Flow // zero-copy shadows of this socket's packets
	// rx is a UDP socket's own receive queue in the stack's demuxer
	// (udprx.go); nil for TCP, and for a UDP socket whose endpoint it
	// could not replace (that one receives through flow).
	rx    *stack.UDPReceiver
	assoc *assoc // the pool memory the socket may hold (dma_assoc)
	c     counters
	laddr netip.AddrPort // immutable after creation
	raddr netip.AddrPort // immutable; zero unless connected

	listening bool

	closed    chan struct{}
	closeOnce sync.Once

	// Asynchronous operations (async.go). Lock order: opMu, then recvMu.
	opMu   sync.Mutex
	async  asyncState  // +checklocks:opMu
	queued atomic.Bool // queued for a stack worker

	latestWins atomic.Bool // UDP: a full queue drops the oldest datagram

	// ack tracks the peer's acknowledgements of a connected TCP socket on
	// a stack with stack.Options.TCPAckEvents (ack.go); nil otherwise.
	// Set once, when the connection is established, before any write.
	ack atomic.Pointer[stack.AckWatch]
	// ackWaiting mirrors len(async.ackWaits) for the watch's notify, which
	// cannot take opMu.
	ackWaiting atomic.Int32

	recvMu sync.Mutex // serialises receivers
	// pending[pendingHead:] are hand-offs read from the stack and not yet
	// returned; both are reset to empty when the last is taken, so
	// len(pending) > 0 means something is queued.
	pending     []received // +checklocks:recvMu
	pendingHead int        // +checklocks:recvMu
	recvWriter  zcWriter   // +checklocks:recvMu; fillLocked's writer, reused
	// rxBatch is fillRxLocked's scratch, reused; rxOld is set once the
	// datagrams gVisor's endpoint queued before rx was attached are read.
	rxBatch []stack.UDPDatagram // +checklocks:recvMu
	rxOld   bool                // +checklocks:recvMu
	// rwait and rwch are recv's wait entry and its channel, made at the
	// first wait and reused by every later one (recvMu serialises them), so
	// a receive that has to wait allocates nothing. A token left in rwch
	// by an event after the last wait only makes the next wait look once
	// more: recv re-checks before waiting again.
	rwait waiter.Entry  // +checklocks:recvMu
	rwch  chan struct{} // +checklocks:recvMu
}

// received is one hand-off waiting in a socket: a Buf and, for UDP, its
// sender.
type received struct {
	b    Buf
	from netip.AddrPort
}

var errNoRoom = errors.New("no association room")

// errFilesOnly is what making a socket on a FilesOnly API returns.
var errFilesOnly = fmt.Errorf("%w: this API was made with Options.FilesOnly, without a pool to receive into: no sockets", ErrAssoc)

func (s *Stack) newSocket(proto tcpip.TransportProtocolNumber, ep tcpip.Endpoint, wq *waiter.Queue) (*Socket, error) {
	sock := &Socket{s: s, proto: proto, ep: ep, wq: wq, assoc: newAssoc(), closed: make(chan struct{})}
	if s.opts.Pool != nil && s.opts.DefaultAssoc > 0 {
		sock.assoc.add(s.opts.Pool, s.opts.DefaultAssoc)
	}
	if s.opts.FilesOnly {
		ep.Close()
		return nil, errFilesOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ep.Close()
		return nil, net.ErrClosed
	}
	s.socks[sock] = struct{}{}
	return sock, nil
}

// familyOf is the family a socket API call implies: IPv4 for an IPv4
// address, else dual-stack (an IPv6 endpoint that also takes IPv4).
func familyOf(a netip.Addr) family {
	if a.IsValid() && a.Unmap().Is4() {
		return fam4
	}
	return famAny
}

// ListenTCP returns a listening TCP socket on laddr (zero address: every
// address; port 0: a free port). Accept takes its connections.
func (s *Stack) ListenTCP(laddr netip.AddrPort) (*Socket, error) {
	return s.listenTCPFam(familyOf(laddr.Addr()), laddr, true)
}

func localAddr(ep tcpip.Endpoint) netip.AddrPort {
	a, _ := ep.GetLocalAddress()
	return stack.AddrPort(a)
}

// Accept waits for a connection on a listening socket.
func (sock *Socket) Accept(ctx context.Context) (*Socket, error) {
	if !sock.listening {
		return nil, fmt.Errorf("accept: %w", sockErr(syscall.EINVAL))
	}
	for {
		child, err := sock.acceptOne()
		if !errors.Is(err, ErrWouldBlock) {
			return child, err
		}
		if err := sock.waitFor(ctx, waiter.ReadableEvents, nil); err != nil {
			return nil, err
		}
	}
}

// acceptOne accepts a queued connection, or returns ErrWouldBlock.
func (sock *Socket) acceptOne() (*Socket, error) {
	if sock.isClosed() {
		return nil, net.ErrClosed
	}
	ep, wq, terr := sock.ep.Accept(nil)
	if terr != nil {
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			return nil, ErrWouldBlock
		}
		return nil, errnoError("accept", terr)
	}
	child, err := sock.s.newSocket(tcp.ProtocolNumber, ep, wq)
	if err != nil {
		return nil, err
	}
	child.laddr = localAddr(ep)
	if ra, terr := ep.GetRemoteAddress(); terr == nil {
		child.raddr = stack.AddrPort(ra)
	}
	if sock.flow != nil { // a listener of the net adapters has none
		flow, err := sock.flow.RegisterChild(sock.s.st, child.laddr, child.raddr)
		if err != nil {
			child.Close()
			return nil, err
		}
		child.flow = flow
	}
	if err := child.watchAcks(); err != nil {
		child.Close()
		return nil, err
	}
	return child, nil
}

func (sock *Socket) isClosed() bool {
	select {
	case <-sock.closed:
		return true
	default:
		return false
	}
}

// DialTCP connects to raddr; ctx bounds the handshake.
func (s *Stack) DialTCP(ctx context.Context, raddr netip.AddrPort) (*Socket, error) {
	return s.dialTCPFrom(ctx, familyOf(raddr.Addr()), netip.AddrPort{}, raddr, true)
}

// ListenUDP returns a UDP socket bound to laddr; RecvFrom tells senders
// apart and SendTo addresses them.
func (s *Stack) ListenUDP(laddr netip.AddrPort) (*Socket, error) {
	return s.udp(laddr, netip.AddrPort{})
}

// DialUDP returns a UDP socket connected to raddr.
func (s *Stack) DialUDP(raddr netip.AddrPort) (*Socket, error) {
	return s.udp(netip.AddrPort{}, raddr)
}

func (s *Stack) udp(laddr, raddr netip.AddrPort) (*Socket, error) {
	a := laddr.Addr()
	if raddr.IsValid() {
		a = raddr.Addr()
	}
	return s.udpFam(familyOf(a), laddr, raddr)
}

// LocalAddr returns the socket's address.
func (sock *Socket) LocalAddr() netip.AddrPort { return sock.laddr }

// RemoteAddr returns the peer's address; zero unless connected.
func (sock *Socket) RemoteAddr() netip.AddrPort { return sock.raddr }

// Assoc associates n more bytes of p with the socket (the paper's
// dma_assoc): the socket may then hold n more received bytes unreleased, and
// copies what it cannot hand over in place into p. It widens a closed window
// at once.
func (sock *Socket) Assoc(p *dmapool.Pool, n int) error { return sock.assoc.add(p, n) }

// Disassoc undoes Assoc for n bytes of p (dma_disassoc). Buffers already
// handed out stay valid.
func (sock *Socket) Disassoc(p *dmapool.Pool, n int) error { return sock.assoc.remove(p, n) }

// waitFor blocks until the endpoint reports mask, room returns (room may be
// nil), ctx ends or the socket closes.
func (sock *Socket) waitFor(ctx context.Context, mask waiter.EventMask, room <-chan struct{}) error {
	entry, ch := waiter.NewChannelEntry(mask)
	sock.wq.EventRegister(&entry)
	defer sock.wq.EventUnregister(&entry)
	// Re-check after registering: the event may have fired in between.
	if sock.ep.Readiness(mask) != 0 && room == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-room:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-sock.closed:
		return net.ErrClosed
	}
}

// WaitReadable blocks until the socket has something to receive (data, an
// end of stream or an error), ctx ends, or the socket closes.
func (sock *Socket) WaitReadable(ctx context.Context) error {
	sock.recvMu.Lock()
	queued := len(sock.pending) > 0
	sock.recvMu.Unlock()
	if queued || sock.readable() {
		return nil
	}
	return sock.waitFor(ctx, waiter.ReadableEvents, nil)
}

// Recv returns the next received bytes as a Buf the caller owns and must
// Release. For TCP, io.EOF after the peer's FIN; for UDP, one datagram.
// It waits for data (and, when the application holds its association's
// worth, for a Release) until ctx ends.
func (sock *Socket) Recv(ctx context.Context) (Buf, error) {
	b, _, err := sock.RecvFrom(ctx)
	return b, err
}

// TryRecv is Recv that never waits: ErrWouldBlock when nothing is queued.
func (sock *Socket) TryRecv() (Buf, error) {
	b, _, err := sock.recv(nil)
	return b, err
}

// RecvFrom is Recv that also returns the sender (for UDP; the peer for TCP).
func (sock *Socket) RecvFrom(ctx context.Context) (Buf, netip.AddrPort, error) {
	return sock.recv(ctx)
}

// RecvMsg fills bufs with as many received Bufs as are ready (at least one,
// waiting as Recv does) and returns how many, with the sender of the first.
// For UDP each Buf is one datagram, and its From gives its own sender:
// datagrams of one batch may come from several.
func (sock *Socket) RecvMsg(ctx context.Context, bufs []Buf) (int, netip.AddrPort, error) {
	if len(bufs) == 0 {
		return 0, netip.AddrPort{}, nil
	}
	b, from, err := sock.recv(ctx)
	if err != nil {
		return 0, from, err
	}
	bufs[0] = b
	n := 1
	for n < len(bufs) {
		b, _, err := sock.recv(nil)
		if err != nil {
			break
		}
		bufs[n] = b
		n++
	}
	return n, from, nil
}

// recv returns the next hand-off; a nil ctx means do not wait.
func (sock *Socket) recv(ctx context.Context) (Buf, netip.AddrPort, error) {
	if sock.listening {
		return Buf{}, netip.AddrPort{}, sockErr(syscall.EINVAL)
	}
	sock.recvMu.Lock()
	defer sock.recvMu.Unlock()
	for {
		select {
		case <-sock.closed:
			return Buf{}, netip.AddrPort{}, net.ErrClosed
		default:
		}
		if len(sock.pending) > 0 {
			r := sock.popPendingLocked()
			if r.b.valid() {
				r.b.h.from = r.from
			}
			return r.b, r.from, nil
		}
		err := sock.fillLocked()
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrWouldBlock) && !errors.Is(err, errNoRoom) {
			return Buf{}, netip.AddrPort{}, err
		}
		if ctx == nil {
			return Buf{}, netip.AddrPort{}, ErrWouldBlock
		}
		var room <-chan struct{}
		if errors.Is(err, errNoRoom) {
			room = sock.assoc.room
		}
		if err := sock.waitReadableLocked(ctx, room); err != nil {
			return Buf{}, netip.AddrPort{}, err
		}
	}
}

// waitReadableLocked is waitFor(ctx, waiter.ReadableEvents, room) for
// recv, on the socket's reused wait entry.
//
// +checklocks:sock.recvMu
func (sock *Socket) waitReadableLocked(ctx context.Context, room <-chan struct{}) error {
	if sock.rwch == nil {
		mask := waiter.ReadableEvents
		if sock.proto == udp.ProtocolNumber {
			// An ICMP error for a connected UDP socket comes as an
			// error event alone; the receive reports it.
			mask |= waiter.EventErr
		}
		sock.rwait, sock.rwch = waiter.NewChannelEntry(mask)
	}
	sock.wq.EventRegister(&sock.rwait)
	defer sock.wq.EventUnregister(&sock.rwait)
	// Re-check after registering: the event may have fired in between.
	if room == nil && sock.readable() {
		return nil
	}
	select {
	case <-sock.rwch:
		return nil
	case <-room:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	case <-sock.closed:
		return net.ErrClosed
	}
}

// popPendingLocked removes and returns the oldest pending hand-off. The
// queue is pending[pendingHead:]; once it is empty both go back to the front of
// the same backing array, so a socket drained as fast as it fills appends
// into one array for its whole life instead of walking off its end (as
// pending = pending[1:] would) and reallocating.
//
// +checklocks:sock.recvMu
func (sock *Socket) popPendingLocked() received {
	r := sock.pending[sock.pendingHead]
	sock.pending[sock.pendingHead] = received{}
	sock.pendingHead++
	if sock.pendingHead == len(sock.pending) {
		sock.pending = sock.pending[:0]
		sock.pendingHead = 0
	}
	return r
}

// fillLocked reads what the stack has for the socket, up to its association
// room, into pending hand-offs.
//
// +checklocks:sock.recvMu
func (sock *Socket) fillLocked() error {
	room := sock.assoc.avail()
	latest := sock.latestWins.Load()
	if room == 0 && !latest {
		return errNoRoom
	}
	// The writer and its Buf slice are the socket's, reused by every
	// fill (recvMu is held), so a fill allocates nothing of its own.
	if sock.rx != nil && sock.rxOld {
		// An error the endpoint holds (an ICMP error) comes first, as
		// the endpoint's Read reports it.
		if terr := sock.ep.LastError(); terr != nil {
			return errnoError("recv", terr)
		}
		if err := sock.fillRxLocked(room, latest); !errors.Is(err, ErrWouldBlock) {
			return err
		}
		// Nothing queued: the endpoint's Read below reports the end
		// of receiving, or ErrWouldBlock.
	}
	w := &sock.recvWriter
	*w = zcWriter{sock: sock, limit: room, bufs: w.bufs[:0]}
	defer w.reset()
	if sock.proto == udp.ProtocolNumber {
		// A datagram is read whole: the socket may go over its association
		// by at most one datagram.
		w.limit = header.UDPMaximumSize
	}
	res, terr := sock.ep.Read(w, tcpip.ReadOptions{NeedRemoteAddr: sock.proto == udp.ProtocolNumber})
	if terr != nil {
		w.discard()
		switch terr.(type) {
		case *tcpip.ErrWouldBlock:
			if sock.rx != nil && !sock.rxOld {
				// The endpoint's own queue is empty: from now on
				// datagrams come from rx alone.
				sock.rxOld = true
				return sock.fillRxLocked(room, latest)
			}
			return ErrWouldBlock
		case *tcpip.ErrClosedForReceive:
			return io.EOF
		case *tcpip.ErrBadBuffer:
			// The writer failed before taking anything: the pool is out
			// of memory to copy into. TCP keeps the bytes queued; UDP has
			// already dequeued the datagram, which is lost: count it.
			if w.err != nil {
				if sock.proto == udp.ProtocolNumber {
					sock.c.dropsNoPool.Add(1)
					sock.s.c.dropsNoPool.Add(1)
				}
				return w.err
			}
		}
		return errnoError("recv", terr)
	}
	from := sock.raddr
	if sock.proto == udp.ProtocolNumber {
		from = stack.AddrPort(res.RemoteAddr)
		if err := w.joinDatagram(); err != nil {
			return err
		}
		if len(w.bufs) == 0 {
			// An empty datagram is a datagram (as in package net): hand
			// over a Buf of no bytes rather than swallowing it.
			w.bufs = append(w.bufs, newBuf(kindEmpty, []byte{}, nil, dmapool.Buf{}, sock.assoc))
		}
	} else if res.Count > 0 {
		sock.ep.ModerateRecvBuf(res.Count)
	}
	if sock.pendingHead > 0 && len(sock.pending)+len(w.bufs) > cap(sock.pending) {
		// Full with taken slots at the front (a latest-wins socket
		// that is never drained empty): move the queue down rather
		// than grow the array.
		n := copy(sock.pending, sock.pending[sock.pendingHead:])
		clear(sock.pending[n:])
		sock.pending, sock.pendingHead = sock.pending[:n], 0
	}
	for _, b := range w.bufs {
		sock.assoc.take(b.Len())
		sock.pending = append(sock.pending, received{b: b, from: from})
	}
	if latest {
		sock.dropOldestLocked()
	}
	sock.c.rxHandoffs.Add(uint64(len(w.bufs)))
	sock.s.c.rxHandoffs.Add(uint64(len(w.bufs)))
	return nil
}

// dropOldestLocked makes room for the newest datagram of a latest-wins
// socket: while the socket holds more than its association, the oldest
// datagrams not yet handed to the application are dropped and counted. The
// newest is always kept, so the socket may exceed its association by one
// datagram when the application holds everything else.
//
// +checklocks:sock.recvMu
func (sock *Socket) dropOldestLocked() {
	for len(sock.pending)-sock.pendingHead > 1 && sock.assoc.avail() == 0 && sock.assoc.over() {
		r := sock.popPendingLocked()
		r.b.Release()
		sock.c.dropsOldest.Add(1)
		sock.s.c.dropsOldest.Add(1)
	}
}

// SetLatestWins turns on (or off) the paper's "always receive the last
// arriving data" for a UDP socket: when the socket is full (the datagrams
// it holds for the application reach its association), the oldest queued
// datagram is dropped to make room for the newest, instead of the newest
// being refused. A stack worker drains the socket's datagrams as they
// arrive so that the stack's own queue never fills. Drops are counted
// (Counters.DropsOldest).
func (sock *Socket) SetLatestWins(on bool) error {
	if sock.proto != udp.ProtocolNumber {
		return fmt.Errorf("latest-wins: %w (UDP sockets only)", sockErr(syscall.EINVAL))
	}
	sock.latestWins.Store(on)
	if on {
		sock.opMu.Lock()
		sock.watchLocked()
		sock.opMu.Unlock()
		sock.s.workers.kick(sock)
	}
	return nil
}

// zcWriter is the io.Writer a socket passes to the endpoint's Read. Each
// slice the endpoint writes is the stack's own receive memory: it becomes a
// Buf referencing that memory when a shadow holds it, else a copy in pool
// memory (counted as copied).
type zcWriter struct {
	sock  *Socket
	limit int
	bufs  []Buf
	err   error // why the writer stopped early
}

// errLimit stops the endpoint's Read at the association's room; the rest
// stays queued in the stack.
var errLimit = errors.New("association room reached")

func (w *zcWriter) Write(p []byte) (int, error) {
	stop := error(nil)
	if len(p) > w.limit {
		p, stop = p[:w.limit], errLimit
	}
	if len(p) == 0 {
		return 0, stop
	}
	if v := w.sock.flow.Take(p); v != nil {
		w.bufs = append(w.bufs, newBuf(kindView, v.AsSlice(), v, dmapool.Buf{}, w.sock.assoc))
		w.limit -= len(p)
		w.sock.count(len(p), 0)
		return len(p), stop
	}
	n := 0
	for n < len(p) {
		chunk := p[n:min(len(p), n+maxCopyChunk)]
		pb, err := w.sock.assoc.reserve(len(chunk))
		if err != nil {
			w.err = err
			return n, err
		}
		copy(pb.Bytes(), chunk)
		w.bufs = append(w.bufs, newBuf(kindCopied, pb.Bytes()[:len(chunk)], nil, pb, w.sock.assoc))
		n += len(chunk)
	}
	w.limit -= n
	w.sock.count(0, n)
	return n, stop
}

// maxCopyChunk is the largest contiguous pool reservation a copy takes.
const maxCopyChunk = 64 << 10

// joinDatagram makes a datagram that arrived in several pieces one Buf, so
// one RecvFrom returns one datagram: it copies the pieces into one pool
// buffer and counts them as copied.
func (w *zcWriter) joinDatagram() error {
	if len(w.bufs) <= 1 {
		return nil
	}
	total := 0
	for _, b := range w.bufs {
		total += b.Len()
	}
	pb, err := w.sock.assoc.reserve(total)
	if err != nil {
		w.discard()
		return err
	}
	off := 0
	for _, b := range w.bufs {
		off += copy(pb.Bytes()[off:], b.Bytes())
		if !b.Copied() {
			w.sock.count(-b.Len(), b.Len())
		}
		h, _ := b.claim()
		h.free()
	}
	w.bufs = append(w.bufs[:0], newBuf(kindCopied, pb.Bytes()[:total], nil, pb, w.sock.assoc))
	return nil
}

// reset forgets the Bufs of the last fill (they now belong to the socket's
// queue or were freed) and keeps the slice for the next.
func (w *zcWriter) reset() {
	clear(w.bufs)
	w.bufs = w.bufs[:0]
	w.sock, w.err = nil, nil
}

// discard frees Bufs made by a Read that failed.
func (w *zcWriter) discard() {
	for _, b := range w.bufs {
		if h, ok := b.claim(); ok {
			h.free()
		}
	}
	w.bufs = w.bufs[:0]
}

// count books handed-over and copied bytes (negative to move bytes from one
// column to the other).
func (sock *Socket) count(handed, copied int) {
	for _, c := range []*counters{&sock.c, &sock.s.c} {
		c.rxHanded.Add(uint64(handed))
		c.rxCopied.Add(uint64(copied))
	}
}

// Send sends b's bytes and takes ownership of b: it is released once the
// stack has them (or on error), and invalid afterwards. b must come from
// Stack.Reserve or a receive; anything else is ErrInvalidBuffer. The bytes
// are copied once, into the stack's send buffer (counted); SendFunc avoids
// even that.
func (sock *Socket) Send(ctx context.Context, b Buf) (int, error) {
	return sock.SendTo(ctx, b, netip.AddrPort{})
}

// SendTo is Send to a destination (UDP; zero: the connected peer).
func (sock *Socket) SendTo(ctx context.Context, b Buf, to netip.AddrPort) (int, error) {
	h, ok := b.claim()
	if !ok {
		return 0, b.Valid()
	}
	n := len(h.data)
	defer h.release()
	var r bytes.Reader
	r.Reset(h.data)
	written, err := sock.write(ctx, &r, n, to)
	r.Reset(nil) // the endpoint keeps its last reader (see TCPConn.wr)
	for _, c := range []*counters{&sock.c, &sock.s.c} {
		c.txCopied.Add(uint64(written))
	}
	return written, err
}

// SendFunc sends n bytes that fill writes straight into the stack's send
// buffer: no copy in user space. fill is called with consecutive parts of
// the n bytes (each at most 64 KiB, in order) and returns how many bytes it
// wrote into each; returning less than the part's length ends the send
// there. SendFunc returns the bytes sent. On a stack with
// stack.Options.TCPAckEvents, fill runs while the stack holds the
// connection's lock (see stack.AckWatch.Write): it must not call the
// socket.
func (sock *Socket) SendFunc(ctx context.Context, n int, fill func(p []byte) int) (int, error) {
	if n <= 0 || fill == nil {
		return 0, fmt.Errorf("sendfunc: %w", sockErr(syscall.EINVAL))
	}
	r := &fillReader{fill: fill, left: n}
	written, err := sock.write(ctx, r, n, netip.AddrPort{})
	r.detach()
	for _, c := range []*counters{&sock.c, &sock.s.c} {
		c.txInPlace.Add(uint64(written))
	}
	return written, err
}

// fillReader is the tcpip.Payloader SendFunc hands the endpoint: its Read
// gets slices of the stack's new send buffer, and fill writes into them.
type fillReader struct {
	fill func([]byte) int
	left int
	done bool
}

func (r *fillReader) Read(p []byte) (int, error) {
	if r.done || r.left == 0 || r.fill == nil {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.left)]
	if len(p) == 0 {
		// The stack may offer an empty slice; fill is only ever shown
		// room to write into.
		return 0, nil
	}
	n := r.fill(p)
	if n < 0 || n > len(p) {
		n = 0
	}
	if n < len(p) {
		r.done = true
	}
	r.left -= n
	return n, nil
}

// detach lets go of fill once the send is over: gVisor's TCP endpoint keeps
// the last reader it was given for as long as it lives (see TCPConn.wr),
// and fill may hold much of the caller's memory.
func (r *fillReader) detach() { r.fill, r.done = nil, true }

func (r *fillReader) Len() int {
	if r.done {
		return 0
	}
	return r.left
}

// payloader is what the endpoint's Write reads from.
type payloader interface {
	io.Reader
	Len() int
}

// write writes n bytes from r, waiting for room in the send buffer.
func (sock *Socket) write(ctx context.Context, r payloader, n int, to netip.AddrPort) (int, error) {
	if sock.listening {
		return 0, sockErr(syscall.EINVAL)
	}
	var opts tcpip.WriteOptions
	if to.IsValid() {
		fa := stack.FullAddress(to, 0)
		opts.To = &fa
	}
	written := 0
	for written < n && r.Len() > 0 {
		select {
		case <-sock.closed:
			return written, net.ErrClosed
		default:
		}
		m, terr := sock.epWrite(r, opts)
		written += int(m)
		if terr == nil {
			if sock.proto == udp.ProtocolNumber {
				break
			}
			continue
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return written, errnoError("send", terr)
		}
		if err := sock.waitFor(ctx, waiter.WritableEvents, nil); err != nil {
			return written, err
		}
	}
	return written, nil
}

// Close closes the socket: received Bufs not yet returned are released, the
// zero-copy flow is unregistered, queued asynchronous operations complete
// with EBADF, and blocked calls fail with net.ErrClosed. Bufs the
// application holds stay valid until it releases them.
func (sock *Socket) Close() error {
	first := false
	sock.closeOnce.Do(func() {
		first = true
		close(sock.closed)
		if sock.rx != nil {
			// Out of the demuxer first, queued datagrams released,
			// then gVisor's endpoint (its port) closes.
			sock.rx.Close()
		}
		sock.ep.Close()
	})
	if !first {
		return net.ErrClosed
	}
	sock.opMu.Lock()
	sock.failAllLocked(net.ErrClosed)
	sock.opMu.Unlock()
	if w := sock.ack.Load(); w != nil {
		w.Close()
	}
	sock.recvMu.Lock()
	for _, r := range sock.pending[sock.pendingHead:] {
		r.b.Release()
	}
	sock.pending, sock.pendingHead = nil, 0
	if sock.flow != nil {
		sock.flow.Close()
	}
	sock.recvMu.Unlock()
	sock.s.mu.Lock()
	delete(sock.s.socks, sock)
	sock.s.mu.Unlock()
	return nil
}

// SocketStats describes a socket's copy budget and memory.
type SocketStats struct {
	Counters
	AssocBytes int // associated bytes: the most it may hold unreleased
	HeldBytes  int // received bytes handed out or queued, not yet released
	Flow       stack.FlowStats
	// UDP counts the receive queue of a UDP socket that receives through
	// its own endpoint in the stack's demuxer (stack.UDPReceiver).
	UDP stack.UDPReceiverStats
}

// Stats returns the socket's counters.
func (sock *Socket) Stats() SocketStats {
	limit, held := sock.assoc.usage()
	st := SocketStats{Counters: sock.c.snapshot(), AssocBytes: limit, HeldBytes: held}
	if es, ok := sock.ep.Stats().(*tcpip.TransportEndpointStats); ok && sock.proto == udp.ProtocolNumber {
		st.DropsNoRoom = es.ReceiveErrors.ReceiveBufferOverflow.Value()
	}
	if sock.rx != nil {
		st.UDP = sock.rx.Stats()
		st.DropsNoRoom += st.UDP.DropsFull
	}
	if sock.flow != nil {
		st.Flow = sock.flow.Stats()
	}
	return st
}
