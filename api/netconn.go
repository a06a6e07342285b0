package api

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/api/internal/deadline"
	"github.com/zcnet/zcnet/stack"
)

// TCPConn is a TCP connection on a zcnet Stack; it implements net.Conn with
// package net's semantics: Read returns io.EOF at the peer's FIN, deadlines
// fail operations with os.ErrDeadlineExceeded, and operations after Close
// fail with net.ErrClosed.
//
// It is a Socket underneath, one without a zero-copy flow: Read copies the
// bytes the stack received straight into the caller's slice, the one
// receive copy of this interface (a hand-off copied at once would add the
// flow's bookkeeping to the same copy); Write copies the caller's slice
// into the stack's send buffer, the one send copy. Both are counted
// (Stats, Stack.Counters).
type TCPConn struct {
	sock    *Socket
	network string
	laddr   *net.TCPAddr // immutable
	raddr   *net.TCPAddr // immutable

	rdl, wdl *deadline.Deadline // immutable pointers

	closing   atomic.Bool // set by the first Close
	closeOnce sync.Once

	readMu sync.Mutex // serialises readers, as a stream has one order
	rw     copyWriter // +checklocks:readMu; Read's writer, reused

	writeMu sync.Mutex // serialises writers, so writes do not interleave
	// wr is Write's reader over b, reused; allocated on its own because
	// gVisor's TCP endpoint keeps the last reader it was given (in a
	// reused io.LimitedReader) for as long as the endpoint lives, 60 s of
	// TIME-WAIT after a close included: embedded, it kept the whole conn,
	// its socket and deadlines alive with it.
	wr *bytes.Reader // +checklocks:writeMu
}

var _ net.Conn = (*TCPConn)(nil)

func newTCPConn(network string, sock *Socket) *TCPConn {
	c := &TCPConn{sock: sock, network: network, rdl: deadline.New(), wdl: deadline.New(), wr: new(bytes.Reader)}
	c.laddr = net.TCPAddrFromAddrPort(sock.LocalAddr())
	if ra := sock.RemoteAddr(); ra.IsValid() {
		c.raddr = net.TCPAddrFromAddrPort(ra)
	}
	return c
}

func (c *TCPConn) opErr(op string, err error) error {
	return opError(op, c.network, c.laddr, c.raddr, err)
}

// closed reports whether the conn, or the Stack under it, is closed.
func (c *TCPConn) closed() bool { return c.closing.Load() || c.sock.isClosed() }

// ready is what Read and Write check first: the conn is open and op's
// deadline dl has not passed.
func (c *TCPConn) ready(op string, dl *deadline.Deadline) error {
	if c.closed() {
		return c.opErr(op, net.ErrClosed)
	}
	if dl.Expired() {
		return c.opErr(op, errDeadline)
	}
	return nil
}

// Read implements net.Conn.Read. It waits for the first bytes (until the
// read deadline), then copies what is ready, up to len(b), without waiting
// again.
func (c *TCPConn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if err := c.ready("read", c.rdl); err != nil || len(b) == 0 {
		return 0, err
	}
	n, err := c.sock.recvCopy(c.rdl.Ctx(), b, &c.rw)
	if err != nil {
		return 0, c.readErr(err)
	}
	return n, nil
}

// readErr is the error Read returns for a socket error: net.ErrClosed once
// the conn is closed (a Read that raced with Close can find the endpoint
// already shut), else io.EOF bare, as package net returns it, and anything
// else in a *net.OpError.
func (c *TCPConn) readErr(err error) error {
	if c.closed() {
		return c.opErr("read", net.ErrClosed)
	}
	if err == io.EOF {
		return io.EOF
	}
	return c.opErr("read", err)
}

// Write implements net.Conn.Write. It returns when all of b is in the
// stack's send buffer, or with the count written before an error.
func (c *TCPConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ready("write", c.wdl); err != nil || len(b) == 0 {
		return 0, err
	}
	// The endpoint reads b through an interface, which would move a
	// reader of its own to the heap on every Write: the conn's is reused.
	c.wr.Reset(b)
	n, err := c.sock.write(c.wdl.Ctx(), c.wr, len(b), netip.AddrPort{})
	c.wr.Reset(nil) // forget b: the endpoint keeps c.wr
	c.sock.countWriteCopy(n)
	if err != nil {
		if c.closed() {
			err = net.ErrClosed // not the EPIPE of an endpoint closed under the write
		}
		return n, c.opErr("write", err)
	}
	return n, nil
}

// Close implements net.Conn.Close: it closes the socket (a FIN, or a reset
// when received bytes are left unread) and wakes blocked Read and Write
// calls with net.ErrClosed.
func (c *TCPConn) Close() error {
	err := c.opErr("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.rdl.Stop()
		c.wdl.Stop()
		c.sock.Close() // wakes a blocked Read
		err = nil
	})
	return err
}

// CloseRead shuts down the reading side.
func (c *TCPConn) CloseRead() error { return c.shutdown(tcpip.ShutdownRead) }

// CloseWrite shuts down the writing side: the peer reads EOF once it has
// everything written before.
func (c *TCPConn) CloseWrite() error { return c.shutdown(tcpip.ShutdownWrite) }

func (c *TCPConn) shutdown(how tcpip.ShutdownFlags) error {
	if c.closed() {
		return c.opErr("close", net.ErrClosed)
	}
	if terr := c.sock.ep.Shutdown(how); terr != nil {
		return c.opErr("close", errnoError("shutdown", terr))
	}
	return nil
}

// LocalAddr implements net.Conn.LocalAddr.
func (c *TCPConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn.RemoteAddr.
func (c *TCPConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.SetDeadline.
func (c *TCPConn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.wdl.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.SetReadDeadline.
func (c *TCPConn) SetReadDeadline(t time.Time) error { c.rdl.Set(t); return nil }

// SetWriteDeadline implements net.Conn.SetWriteDeadline.
func (c *TCPConn) SetWriteDeadline(t time.Time) error { c.wdl.Set(t); return nil }

// SetNoDelay controls Nagle's algorithm; on by default, as in package net.
func (c *TCPConn) SetNoDelay(noDelay bool) error {
	c.sock.ep.SocketOptions().SetDelayOption(!noDelay)
	return nil
}

// Stats returns the copy budget and memory of the socket under c.
func (c *TCPConn) Stats() SocketStats { return c.sock.Stats() }

// DialTCP connects from laddr (zero: chosen by the stack) to raddr. ctx
// bounds the handshake.
func (n *Net) DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (*TCPConn, error) {
	if network == "" {
		network = "tcp"
	}
	_, f, err := parseNetwork(network)
	if err == nil {
		err = n.ready()
	}
	if err != nil {
		return nil, opError("dial", network, nil, nil, err)
	}
	sock, err := n.s.dialTCPFrom(ctx, f, laddr, raddr, false)
	if err != nil {
		var src net.Addr
		if laddr.IsValid() {
			src = net.TCPAddrFromAddrPort(laddr)
		}
		return nil, opError("dial", network, src, net.TCPAddrFromAddrPort(raddr), err)
	}
	return newTCPConn(network, sock), nil
}

// TCPListener accepts TCP connections on a zcnet Stack; it implements
// net.Listener. It is a listening Socket underneath.
type TCPListener struct {
	sock    *Socket
	network string
	addr    *net.TCPAddr       // immutable
	dl      *deadline.Deadline // immutable pointer

	closing   atomic.Bool
	closeOnce sync.Once
}

var _ net.Listener = (*TCPListener)(nil)

// ListenTCP listens on laddr; the zero address listens on every address of
// the stack, port 0 picks a free port.
func (n *Net) ListenTCP(network string, laddr netip.AddrPort) (*TCPListener, error) {
	if network == "" {
		network = "tcp"
	}
	_, f, err := parseNetwork(network)
	if err == nil {
		err = n.ready()
	}
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	sock, err := n.s.listenTCPFam(f, laddr, false)
	if err != nil {
		return nil, opError("listen", network, nil, net.TCPAddrFromAddrPort(laddr), err)
	}
	return &TCPListener{sock: sock, network: network, addr: net.TCPAddrFromAddrPort(sock.LocalAddr()), dl: deadline.New()}, nil
}

// Accept implements net.Listener.Accept.
func (l *TCPListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err // not a typed nil in a non-nil interface
	}
	return c, nil
}

// AcceptTCP waits for and returns the next connection, until the deadline
// (SetDeadline) or Close.
func (l *TCPListener) AcceptTCP() (*TCPConn, error) {
	if l.closing.Load() || l.sock.isClosed() {
		return nil, l.opErr(net.ErrClosed)
	}
	if l.dl.Expired() {
		return nil, l.opErr(errDeadline)
	}
	sock, err := l.sock.Accept(l.dl.Ctx())
	if err != nil {
		if l.closing.Load() || l.sock.isClosed() {
			err = net.ErrClosed
		}
		return nil, l.opErr(err)
	}
	return newTCPConn(l.network, sock), nil
}

func (l *TCPListener) opErr(err error) error {
	return opError("accept", l.network, nil, l.addr, err)
}

// SetDeadline bounds Accept, as net.TCPListener.SetDeadline does.
func (l *TCPListener) SetDeadline(t time.Time) error { l.dl.Set(t); return nil }

// Close implements net.Listener.Close: pending Accept calls fail with
// net.ErrClosed and connections not yet accepted are reset.
func (l *TCPListener) Close() error {
	err := opError("close", l.network, nil, l.addr, net.ErrClosed)
	l.closeOnce.Do(func() {
		l.closing.Store(true)
		l.dl.Stop()
		l.sock.Close()
		err = nil
	})
	return err
}

// Addr implements net.Listener.Addr.
func (l *TCPListener) Addr() net.Addr { return l.addr }

// errDeadline is the error a passed deadline gives, as in package net.
var errDeadline = os.ErrDeadlineExceeded

// netEndpoint makes a gVisor endpoint for the net adapters: of the family
// the network name asks for, or the address's, and IPv6-only for "tcp6" and
// "udp6".
func (s *Stack) netEndpoint(proto tcpip.TransportProtocolNumber, f family, a netip.Addr) (tcpip.Endpoint, *waiter.Queue, error) {
	wq := new(waiter.Queue)
	ep, terr := s.st.Netstack().NewEndpoint(proto, netProto(f, a), wq)
	if terr != nil {
		return nil, nil, errnoError("socket", terr)
	}
	if f == fam6 {
		ep.SocketOptions().SetV6Only(true)
	}
	return ep, wq, nil
}

// dialTCPFrom connects a TCP socket of the given family from laddr (the
// zero AddrPort: any), for DialTCP and the TCPConn adapters: the
// socket is bound (to laddr, or an ephemeral port) and, with zeroCopy, its
// zero-copy flow registered before the handshake, so no data can arrive
// unregistered. The adapters' sockets, which copy what they read, have no
// flow (recvCopy).
func (s *Stack) dialTCPFrom(ctx context.Context, f family, laddr, raddr netip.AddrPort, zeroCopy bool) (*Socket, error) {
	ep, wq, err := s.netEndpoint(tcp.ProtocolNumber, f, raddr.Addr())
	if err != nil {
		return nil, err
	}
	sock, err := s.newSocket(tcp.ProtocolNumber, ep, wq)
	if err != nil {
		return nil, err
	}
	if terr := ep.Bind(stack.FullAddress(laddr, 0)); terr != nil {
		sock.Close()
		return nil, errnoError("bind", terr)
	}
	if zeroCopy {
		port := localAddr(ep).Port()
		if sock.flow, err = s.st.RegisterFlow(tcp.ProtocolNumber, netip.AddrPortFrom(laddr.Addr(), port), raddr, s.opts.MaxShadowBytes); err != nil {
			sock.Close()
			return nil, err
		}
	}
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr := ep.Connect(stack.FullAddress(raddr, 0))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ch:
			terr = ep.LastError()
		case <-ctx.Done():
			sock.Close()
			return nil, ctxErr(ctx)
		case <-sock.closed: // the Stack closed under the dial
			return nil, net.ErrClosed
		}
	}
	if terr != nil {
		sock.Close()
		return nil, errnoError("connect", terr)
	}
	sock.laddr, sock.raddr = localAddr(ep), raddr
	if err := sock.watchAcks(); err != nil {
		sock.Close()
		return nil, err
	}
	return sock, nil
}

// listenTCPFam opens a listening TCP socket of the given family (see
// netEndpoint), for ListenTCP (zeroCopy) and the TCPListener adapter (no
// flow, as dialTCPFrom).
func (s *Stack) listenTCPFam(f family, laddr netip.AddrPort, zeroCopy bool) (*Socket, error) {
	ep, wq, err := s.netEndpoint(tcp.ProtocolNumber, f, laddr.Addr())
	if err != nil {
		return nil, err
	}
	if terr := ep.Bind(stack.FullAddress(laddr, 0)); terr != nil {
		ep.Close()
		return nil, errnoError("bind", terr)
	}
	if terr := ep.Listen(ListenBacklog); terr != nil {
		ep.Close()
		return nil, errnoError("listen", terr)
	}
	sock, err := s.newSocket(tcp.ProtocolNumber, ep, wq)
	if err != nil {
		return nil, err
	}
	sock.listening = true
	sock.laddr = localAddr(ep)
	if !zeroCopy {
		return sock, nil
	}
	// A connection's first data can arrive before Accept: the listener's
	// flow keeps its shadows until the accepted socket takes them.
	if sock.flow, err = s.st.RegisterFlow(tcp.ProtocolNumber, netip.AddrPortFrom(laddr.Addr(), sock.laddr.Port()), netip.AddrPort{}, s.opts.MaxShadowBytes); err != nil {
		sock.Close()
		return nil, err
	}
	return sock, nil
}

// countReadCopy books n received bytes that a net adapter's Read copied
// into the caller's slice. Bytes the socket handed over move from the
// handed-over column to the copied one; bytes the socket had already
// copied into the pool are copied a second time, and counted again.
func (sock *Socket) countReadCopy(n int, alreadyCopied bool) {
	if n == 0 {
		return
	}
	if alreadyCopied {
		sock.count(0, n)
		return
	}
	sock.count(-n, n)
}

// countWriteCopy books n bytes a net adapter's Write copied from the
// caller's slice into the stack's send buffer.
func (sock *Socket) countWriteCopy(n int) {
	if n <= 0 {
		return
	}
	sock.c.txCopied.Add(uint64(n))
	sock.s.c.txCopied.Add(uint64(n))
}
