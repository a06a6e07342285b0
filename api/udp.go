package api

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/stack"
)

// UDPConn is a UDP socket on a zcnet stack. It implements net.PacketConn,
// and net.Conn when connected (DialUDP). Each read returns one datagram; a
// datagram longer than the caller's buffer is truncated, as with package net.
type UDPConn struct {
	ep      tcpip.Endpoint
	wq      *waiter.Queue
	network string
	laddr   *net.UDPAddr // immutable
	raddr   *net.UDPAddr // immutable; nil unless connected

	rdl, wdl *deadline

	closed    chan struct{}
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
	if err != nil {
		return nil, opError(op, network, nil, nil, err)
	}
	a := laddr.Addr()
	if raddr.IsValid() {
		a = raddr.Addr()
	}
	var wq waiter.Queue
	ep, terr := n.st.Netstack().NewEndpoint(udp.ProtocolNumber, netProto(f, a), &wq)
	if terr != nil {
		return nil, opError(op, network, nil, nil, errnoError("socket", terr))
	}
	if f == fam6 {
		ep.SocketOptions().SetV6Only(true)
	}
	// See Stack.udp: let large datagrams fragment with proper IP IDs.
	ep.SetSockOptInt(tcpip.MTUDiscoverOption, int(tcpip.PMTUDiscoveryDont))
	fail := func(call string, terr tcpip.Error) (*UDPConn, error) {
		ep.Close()
		var dst net.Addr
		if raddr.IsValid() {
			dst = net.UDPAddrFromAddrPort(raddr)
		}
		return nil, opError(op, network, net.UDPAddrFromAddrPort(laddr), dst, errnoError(call, terr))
	}
	if laddr.IsValid() || !raddr.IsValid() {
		if terr := ep.Bind(stack.FullAddress(laddr, 0)); terr != nil {
			return fail("bind", terr)
		}
	}
	c := &UDPConn{ep: ep, wq: &wq, network: network, rdl: newDeadline(), wdl: newDeadline(), closed: make(chan struct{})}
	if raddr.IsValid() {
		if terr := ep.Connect(stack.FullAddress(raddr, 0)); terr != nil {
			return fail("connect", terr)
		}
		c.raddr = net.UDPAddrFromAddrPort(raddr)
	}
	if la, terr := ep.GetLocalAddress(); terr == nil {
		c.laddr = net.UDPAddrFromAddrPort(stack.AddrPort(la))
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

// ReadFrom implements net.PacketConn.ReadFrom.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// ReadFromUDPAddrPort reads one datagram into b and returns its sender.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	var (
		entry waiter.Entry
		ch    chan struct{}
	)
	for {
		select {
		case <-c.closed:
			return 0, netip.AddrPort{}, c.opErr("read", nil, net.ErrClosed)
		case <-c.rdl.done():
			return 0, netip.AddrPort{}, c.opErr("read", nil, os.ErrDeadlineExceeded)
		default:
		}
		w := tcpip.SliceWriter(b)
		res, terr := c.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if terr == nil {
			return res.Count, stack.AddrPort(res.RemoteAddr), nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return 0, netip.AddrPort{}, c.opErr("read", nil, errnoError("recvfrom", terr))
		}
		if ch == nil {
			entry, ch = waiter.NewChannelEntry(waiter.ReadableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue
		}
		select {
		case <-ch:
		case <-c.rdl.done():
		case <-c.closed:
		}
	}
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
	ap := ua.AddrPort()
	return c.write(b, &ap)
}

// WriteToUDPAddrPort sends b as one datagram to dst.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	return c.write(b, &dst)
}

// Write implements net.Conn.Write for a connected socket.
func (c *UDPConn) Write(b []byte) (int, error) { return c.write(b, nil) }

func (c *UDPConn) write(b []byte, dst *netip.AddrPort) (int, error) {
	var (
		opts  tcpip.WriteOptions
		to    net.Addr
		entry waiter.Entry
		ch    chan struct{}
	)
	if dst != nil {
		fa := stack.FullAddress(*dst, 0)
		opts.To = &fa
		to = net.UDPAddrFromAddrPort(*dst)
	}
	for {
		select {
		case <-c.closed:
			return 0, c.opErr("write", to, net.ErrClosed)
		case <-c.wdl.done():
			return 0, c.opErr("write", to, os.ErrDeadlineExceeded)
		default:
		}
		var r bytes.Reader
		r.Reset(b)
		n, terr := c.ep.Write(&r, opts)
		if terr == nil {
			return int(n), nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return 0, c.opErr("write", to, errnoError("sendto", terr))
		}
		if ch == nil {
			entry, ch = waiter.NewChannelEntry(waiter.WritableEvents)
			c.wq.EventRegister(&entry)
			defer c.wq.EventUnregister(&entry)
			continue
		}
		select {
		case <-ch:
		case <-c.wdl.done():
		case <-c.closed:
		}
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "<nil>"
	}
	return a.String()
}

// Close implements net.PacketConn.Close.
func (c *UDPConn) Close() error {
	err := c.opErr("close", nil, net.ErrClosed)
	c.closeOnce.Do(func() {
		close(c.closed)
		c.rdl.stop()
		c.wdl.stop()
		c.ep.Close()
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
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline implements net.PacketConn.SetReadDeadline.
func (c *UDPConn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline implements net.PacketConn.SetWriteDeadline.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }
