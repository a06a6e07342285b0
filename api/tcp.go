package api

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/stack"
)

// TCPConn is a TCP connection on a zcnet stack; it implements net.Conn with
// package net's semantics: Read returns io.EOF at the peer's FIN, deadlines
// fail operations with os.ErrDeadlineExceeded, and operations after Close
// fail with net.ErrClosed. Read copies from the stack's buffers into the
// caller's slice, the one copy of this interface.
type TCPConn struct {
	ep      tcpip.Endpoint
	wq      *waiter.Queue
	network string
	laddr   *net.TCPAddr // immutable
	raddr   *net.TCPAddr // immutable

	rdl, wdl *deadline

	// closed is closed by Close; blocked Read and Write wake on it.
	closed    chan struct{}
	closeOnce sync.Once

	readMu  sync.Mutex // serialises readers, as a stream has one order
	writeMu sync.Mutex // serialises writers, so writes do not interleave
}

var _ net.Conn = (*TCPConn)(nil)

func newTCPConn(network string, ep tcpip.Endpoint, wq *waiter.Queue) *TCPConn {
	c := &TCPConn{ep: ep, wq: wq, network: network, rdl: newDeadline(), wdl: newDeadline(), closed: make(chan struct{})}
	if a, err := ep.GetLocalAddress(); err == nil {
		c.laddr = net.TCPAddrFromAddrPort(stack.AddrPort(a))
	}
	if a, err := ep.GetRemoteAddress(); err == nil {
		c.raddr = net.TCPAddrFromAddrPort(stack.AddrPort(a))
	}
	return c
}

func (c *TCPConn) opErr(op string, err error) error {
	return opError(op, c.network, c.laddr, c.raddr, err)
}

// wait blocks until ch fires or the deadline or Close intervenes, returning
// the error the operation should fail with.
func (c *TCPConn) wait(ch <-chan struct{}, dl <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-dl:
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

// Read implements net.Conn.Read.
func (c *TCPConn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	var (
		entry waiter.Entry
		ch    chan struct{}
	)
	for {
		select {
		case <-c.closed:
			return 0, c.opErr("read", net.ErrClosed)
		case <-c.rdl.done():
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		default:
		}
		if len(b) == 0 {
			return 0, nil
		}
		w := tcpip.SliceWriter(b)
		res, terr := c.ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			if res.Count > 0 {
				// Tell receive-buffer auto-tuning what the application
				// consumed; without it the window never grows.
				c.ep.ModerateRecvBuf(res.Count)
			}
			return res.Count, nil
		}
		switch terr.(type) {
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrClosedForReceive:
			return 0, io.EOF
		default:
			return 0, c.opErr("read", errnoError("read", terr))
		}
		if ch == nil {
			entry, ch = waiter.NewChannelEntry(waiter.ReadableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue // re-check: data may have arrived before registering
		}
		if err := c.wait(ch, c.rdl.done()); err != nil {
			return 0, c.opErr("read", err)
		}
	}
}

// Write implements net.Conn.Write. It returns when all of b is in the
// stack's send buffer, or with the count written before an error.
func (c *TCPConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	var (
		entry waiter.Entry
		ch    chan struct{}
		r     bytes.Reader
		n     int
	)
	for {
		select {
		case <-c.closed:
			return n, c.opErr("write", net.ErrClosed)
		case <-c.wdl.done():
			return n, c.opErr("write", os.ErrDeadlineExceeded)
		default:
		}
		if n == len(b) {
			return n, nil
		}
		r.Reset(b[n:])
		m, terr := c.ep.Write(&r, tcpip.WriteOptions{})
		n += int(m)
		if terr == nil {
			continue
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return n, c.opErr("write", errnoError("write", terr))
		}
		if ch == nil {
			entry, ch = waiter.NewChannelEntry(waiter.WritableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue
		}
		if err := c.wait(ch, c.wdl.done()); err != nil {
			return n, c.opErr("write", err)
		}
	}
}

// Close implements net.Conn.Close: it closes the endpoint (a FIN, or a RST if
// unread data remains, as Linux does) and wakes blocked Read and Write calls
// with net.ErrClosed.
func (c *TCPConn) Close() error {
	err := c.opErr("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		close(c.closed)
		c.rdl.stop()
		c.wdl.stop()
		c.ep.Close()
		err = nil
	})
	return err
}

// CloseRead shuts down the reading side.
func (c *TCPConn) CloseRead() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownRead); terr != nil {
		return c.opErr("close", errnoError("shutdown", terr))
	}
	return nil
}

// CloseWrite shuts down the writing side: the peer reads EOF once it has
// everything written before.
func (c *TCPConn) CloseWrite() error {
	if terr := c.ep.Shutdown(tcpip.ShutdownWrite); terr != nil {
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
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.SetReadDeadline.
func (c *TCPConn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline implements net.Conn.SetWriteDeadline.
func (c *TCPConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// SetNoDelay controls Nagle's algorithm; on by default, as in package net.
func (c *TCPConn) SetNoDelay(noDelay bool) error {
	c.ep.SocketOptions().SetDelayOption(!noDelay)
	return nil
}

// DialTCP connects from laddr (zero: chosen by the stack) to raddr. ctx
// bounds the handshake.
func (n *Net) DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (*TCPConn, error) {
	if network == "" {
		network = "tcp"
	}
	_, f, err := parseNetwork(network)
	if err != nil {
		return nil, opError("dial", network, nil, nil, err)
	}
	dst := net.TCPAddrFromAddrPort(raddr)
	var wq waiter.Queue
	ep, terr := n.st.Netstack().NewEndpoint(tcp.ProtocolNumber, netProto(f, raddr.Addr()), &wq)
	if terr != nil {
		return nil, opError("dial", network, nil, dst, errnoError("socket", terr))
	}
	if laddr.IsValid() {
		if terr := ep.Bind(stack.FullAddress(laddr, 0)); terr != nil {
			ep.Close()
			return nil, opError("dial", network, net.TCPAddrFromAddrPort(laddr), dst, errnoError("bind", terr))
		}
	}
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(stack.FullAddress(raddr, 0))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ch:
			terr = ep.LastError()
		case <-ctx.Done():
			ep.Close()
			return nil, opError("dial", network, nil, dst, ctxErr(ctx))
		}
	}
	if terr != nil {
		ep.Close()
		return nil, opError("dial", network, nil, dst, errnoError("connect", terr))
	}
	return newTCPConn(network, ep, &wq), nil
}

// ctxErr maps a finished context to the error package net reports.
func ctxErr(ctx context.Context) error {
	if ctx.Err() == context.DeadlineExceeded {
		return os.ErrDeadlineExceeded
	}
	return ctx.Err()
}

// TCPListener accepts TCP connections on a zcnet stack; it implements
// net.Listener.
type TCPListener struct {
	ep      tcpip.Endpoint
	wq      *waiter.Queue
	network string
	addr    *net.TCPAddr
	dl      *deadline

	closed    chan struct{}
	closeOnce sync.Once
}

var _ net.Listener = (*TCPListener)(nil)

// ListenBacklog is the accept queue length of listeners: Linux's default
// somaxconn.
const ListenBacklog = 4096

// ListenTCP listens on laddr; the zero address listens on every address of
// the stack, port 0 picks a free port.
func (n *Net) ListenTCP(network string, laddr netip.AddrPort) (*TCPListener, error) {
	if network == "" {
		network = "tcp"
	}
	_, f, err := parseNetwork(network)
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	la := net.TCPAddrFromAddrPort(laddr)
	var wq waiter.Queue
	ep, terr := n.st.Netstack().NewEndpoint(tcp.ProtocolNumber, netProto(f, laddr.Addr()), &wq)
	if terr != nil {
		return nil, opError("listen", network, nil, la, errnoError("socket", terr))
	}
	if f == fam6 {
		ep.SocketOptions().SetV6Only(true)
	}
	if terr := ep.Bind(stack.FullAddress(laddr, 0)); terr != nil {
		ep.Close()
		return nil, opError("listen", network, nil, la, errnoError("bind", terr))
	}
	if terr := ep.Listen(ListenBacklog); terr != nil {
		ep.Close()
		return nil, opError("listen", network, nil, la, errnoError("listen", terr))
	}
	l := &TCPListener{ep: ep, wq: &wq, network: network, addr: la, dl: newDeadline(), closed: make(chan struct{})}
	if a, terr := ep.GetLocalAddress(); terr == nil {
		l.addr = net.TCPAddrFromAddrPort(stack.AddrPort(a))
	}
	return l, nil
}

// Accept implements net.Listener.Accept.
func (l *TCPListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err // not a typed nil in a non-nil interface
	}
	return c, nil
}

// AcceptTCP waits for and returns the next connection.
func (l *TCPListener) AcceptTCP() (*TCPConn, error) {
	var (
		entry waiter.Entry
		ch    chan struct{}
	)
	for {
		select {
		case <-l.closed:
			return nil, opError("accept", l.network, nil, l.addr, net.ErrClosed)
		case <-l.dl.done():
			return nil, opError("accept", l.network, nil, l.addr, os.ErrDeadlineExceeded)
		default:
		}
		ep, wq, terr := l.ep.Accept(nil)
		if terr == nil {
			return newTCPConn(l.network, ep, wq), nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return nil, opError("accept", l.network, nil, l.addr, errnoError("accept", terr))
		}
		if ch == nil {
			entry, ch = waiter.NewChannelEntry(waiter.ReadableEvents)
			l.wq.EventRegister(&entry)
			defer l.wq.EventUnregister(&entry)
			continue
		}
		select {
		case <-ch:
		case <-l.dl.done():
		case <-l.closed:
		}
	}
}

// SetDeadline bounds Accept, as net.TCPListener.SetDeadline does.
func (l *TCPListener) SetDeadline(t time.Time) error { l.dl.set(t); return nil }

// Close implements net.Listener.Close: pending Accept calls fail with
// net.ErrClosed and connections not yet accepted are reset.
func (l *TCPListener) Close() error {
	err := opError("close", l.network, nil, l.addr, net.ErrClosed)
	l.closeOnce.Do(func() {
		close(l.closed)
		l.dl.stop()
		l.ep.Close()
		err = nil
	})
	return err
}

// Addr implements net.Listener.Addr.
func (l *TCPListener) Addr() net.Addr { return l.addr }
