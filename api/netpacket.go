package api

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/api/internal/deadline"
	"github.com/zcnet/zcnet/stack"
)

// UDPConn is a UDP socket on a zcnet Stack. It implements net.PacketConn,
// and net.Conn when connected (DialUDP). Each read returns one datagram; a
// datagram longer than the caller's buffer is truncated, as with package
// net.
//
// It is a Socket underneath: a read takes one datagram as a zero-copy
// hand-off, copies it into the caller's slice and releases it; a write
// copies the caller's slice into the stack once. Both copies are counted
// (Stats, Stack.Counters); the truncated tail of a datagram is released
// uncopied and stays counted as handed over.
type UDPConn struct {
	sock    *Socket
	network string
	laddr   *net.UDPAddr // immutable
	raddr   *net.UDPAddr // immutable; nil unless connected

	rdl, wdl *deadline.Deadline // immutable pointers

	closing   atomic.Bool // set by the first Close
	closeOnce sync.Once
}

var (
	_ net.PacketConn = (*UDPConn)(nil)
	_ net.Conn       = (*UDPConn)(nil)
)

func (n *Net) newUDP(network string, laddr, raddr netip.AddrPort) (*UDPConn, error) {
	if network == "" {
		network = "udp"
	}
	op := "listen"
	if raddr.IsValid() {
		op = "dial"
	}
	_, f, err := parseNetwork(network)
	if err == nil {
		err = n.ready()
	}
	if err != nil {
		return nil, opError(op, network, nil, nil, err)
	}
	sock, err := n.s.udpFam(f, laddr, raddr)
	if err != nil {
		var dst net.Addr
		if raddr.IsValid() {
			dst = net.UDPAddrFromAddrPort(raddr)
		}
		return nil, opError(op, network, net.UDPAddrFromAddrPort(laddr), dst, err)
	}
	c := &UDPConn{sock: sock, network: network, laddr: net.UDPAddrFromAddrPort(sock.LocalAddr()), rdl: deadline.New(), wdl: deadline.New()}
	if raddr.IsValid() {
		c.raddr = net.UDPAddrFromAddrPort(raddr)
	}
	return c, nil
}

// ListenUDP opens a UDP socket bound to laddr (zero address: all; port 0:
// any free port).
func (n *Net) ListenUDP(network string, laddr netip.AddrPort) (*UDPConn, error) {
	if !laddr.IsValid() {
		laddr = netip.AddrPortFrom(netip.Addr{}, laddr.Port())
	}
	return n.newUDP(network, laddr, netip.AddrPort{})
}

// DialUDP opens a UDP socket connected to raddr, from laddr if it is valid.
func (n *Net) DialUDP(network string, laddr, raddr netip.AddrPort) (*UDPConn, error) {
	return n.newUDP(network, laddr, raddr)
}

func (c *UDPConn) opErr(op string, dst net.Addr, err error) error {
	if dst == nil && c.raddr != nil {
		dst = c.raddr
	}
	return opError(op, c.network, c.laddr, dst, err)
}

// closed reports whether the conn, or the Stack under it, is closed.
func (c *UDPConn) closed() bool { return c.closing.Load() || c.sock.isClosed() }

// ReadFrom implements net.PacketConn.ReadFrom.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// ReadFromUDPAddrPort reads one datagram into b and returns its sender. It
// waits until the read deadline.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if c.closed() {
		return 0, netip.AddrPort{}, c.opErr("read", nil, net.ErrClosed)
	}
	if c.rdl.Expired() {
		return 0, netip.AddrPort{}, c.opErr("read", nil, errDeadline)
	}
	h, from, err := c.sock.recv(c.rdl.Ctx())
	if err != nil {
		if c.closed() {
			err = net.ErrClosed // whatever the endpoint said as it closed
		}
		return 0, netip.AddrPort{}, c.opErr("read", nil, err)
	}
	n := copy(b, h.Bytes())
	c.sock.countReadCopy(n, h.Copied())
	h.Release()
	return n, from, nil
}

// Read implements net.Conn.Read for a connected socket.
func (c *UDPConn) Read(b []byte) (int, error) {
	n, _, err := c.ReadFromUDPAddrPort(b)
	return n, err
}

// WriteTo implements net.PacketConn.WriteTo. addr must be a *net.UDPAddr.
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua == nil {
		return 0, c.opErr("write", addr, &net.AddrError{Err: "not a *net.UDPAddr", Addr: addrString(addr)})
	}
	return c.write(b, ua.AddrPort())
}

// WriteToUDPAddrPort sends b as one datagram to dst.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	return c.write(b, dst)
}

// Write implements net.Conn.Write for a connected socket.
func (c *UDPConn) Write(b []byte) (int, error) { return c.write(b, netip.AddrPort{}) }

// write sends b as one datagram to dst (zero: the connected peer), copying
// it into the stack once. An empty b is an empty datagram, as in package
// net.
func (c *UDPConn) write(b []byte, dst netip.AddrPort) (int, error) {
	var to net.Addr
	var opts tcpip.WriteOptions
	if dst.IsValid() {
		fa := stack.FullAddress(dst, 0)
		opts.To = &fa
		to = net.UDPAddrFromAddrPort(dst)
	}
	var r bytes.Reader
	for {
		if c.closed() {
			return 0, c.opErr("write", to, net.ErrClosed)
		}
		if c.wdl.Expired() {
			return 0, c.opErr("write", to, errDeadline)
		}
		r.Reset(b)
		n, terr := c.sock.ep.Write(&r, opts)
		if terr == nil {
			c.sock.countWriteCopy(int(n))
			return int(n), nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			if c.closed() {
				return 0, c.opErr("write", to, net.ErrClosed)
			}
			return 0, c.opErr("write", to, errnoError("sendto", terr))
		}
		if err := c.sock.waitFor(c.wdl.Ctx(), waiter.WritableEvents, nil); err != nil {
			return 0, c.opErr("write", to, err)
		}
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "<nil>"
	}
	return a.String()
}

// Close implements net.PacketConn.Close: blocked calls fail with
// net.ErrClosed, and datagrams the socket had queued are released.
func (c *UDPConn) Close() error {
	err := c.opErr("close", nil, net.ErrClosed)
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.rdl.Stop()
		c.wdl.Stop()
		c.sock.Close()
		err = nil
	})
	return err
}

// LocalAddr implements net.PacketConn.LocalAddr.
func (c *UDPConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn.RemoteAddr; nil unless connected.
func (c *UDPConn) RemoteAddr() net.Addr {
	if c.raddr == nil {
		return nil
	}
	return c.raddr
}

// SetDeadline implements net.PacketConn.SetDeadline.
func (c *UDPConn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.wdl.Set(t)
	return nil
}

// SetReadDeadline implements net.PacketConn.SetReadDeadline.
func (c *UDPConn) SetReadDeadline(t time.Time) error { c.rdl.Set(t); return nil }

// SetWriteDeadline implements net.PacketConn.SetWriteDeadline.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { c.wdl.Set(t); return nil }

// Stats returns the copy budget and memory of the socket under c.
func (c *UDPConn) Stats() SocketStats { return c.sock.Stats() }

// udpFam opens a UDP socket of the given family (see netEndpoint), for
// ListenUDP/DialUDP and the UDPConn adapters. It binds first (laddr, or an ephemeral port) so the
// zero-copy flow is registered before anything can arrive, then connects
// to raddr if it is valid; the local address is read after the connect,
// which picks the source address.
func (s *Stack) udpFam(f family, laddr, raddr netip.AddrPort) (*Socket, error) {
	a := laddr.Addr()
	if raddr.IsValid() {
		a = raddr.Addr()
	}
	ep, wq, err := s.netEndpoint(udp.ProtocolNumber, f, a)
	if err != nil {
		return nil, err
	}
	// gVisor's UDP sets DF by default and then gives locally fragmented
	// datagrams IP ID 0, so reassembly can mix datagrams after a loss; let
	// large datagrams fragment with proper IDs, as Linux does.
	ep.SetSockOptInt(tcpip.MTUDiscoverOption, int(tcpip.PMTUDiscoveryDont))
	sock, err := s.newSocket(udp.ProtocolNumber, ep, wq)
	if err != nil {
		return nil, err
	}
	if terr := ep.Bind(stack.FullAddress(laddr, 0)); terr != nil {
		sock.Close()
		return nil, errnoError("bind", terr)
	}
	sock.laddr = localAddr(ep)
	if raddr.IsValid() {
		if terr := ep.Connect(stack.FullAddress(raddr, 0)); terr != nil {
			sock.Close()
			return nil, errnoError("connect", terr)
		}
		sock.raddr = raddr
		sock.laddr = localAddr(ep)
	}
	// Datagrams that arrive before the receiver takes the endpoint's
	// place wait in gVisor's queue; the first receives read them (by
	// copy) before the receiver's.
	if sock.attachRx() == nil {
		return sock, nil
	}
	if sock.flow, err = s.st.RegisterFlow(udp.ProtocolNumber, netip.AddrPortFrom(laddr.Addr(), sock.laddr.Port()), raddr, udpShadowBound(s.opts.MaxShadowBytes, ep)); err != nil {
		sock.Close()
		return nil, err
	}
	return sock, nil
}

// udpShadowBound is the memory a UDP socket's zero-copy flow may keep
// alive: what the stack may queue for it (its receive buffer) counted
// twice over (the stack charges a datagram by its size, the flow by the
// receive view it sits in), and never more than max (the option, or
// stack.DefaultMaxShadowBytes). Datagrams past the stack's queue are
// dropped by the stack; shadows of them would only pin memory until
// evicted, which under a flood at an unconnected socket is memory a
// sender could fill at will.
func udpShadowBound(max int, ep tcpip.Endpoint) int {
	if max <= 0 {
		max = stack.DefaultMaxShadowBytes
	}
	return min(max, 2*int(ep.SocketOptions().GetReceiveBufferSize()))
}
