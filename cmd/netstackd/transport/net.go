package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// Net is a Transport on any stack that hands out package net's shapes:
// gVisor's gonet, zcnet's api.Net adapters, or the kernel through another
// namespace. It carries TCP only: its UDP methods return
// errors.ErrUnsupported. Every received byte is copied once, by Read, into
// the connection's buffer; every sent byte once, out of the fill buffer, by
// Write.
type Net struct {
	// Label is what Name returns.
	Label string
	// Listen opens a TCP listener on laddr.
	Listen func(laddr netip.AddrPort) (net.Listener, error)
	// Dial, if set, connects to raddr; without it DialTCP fails.
	Dial func(ctx context.Context, raddr netip.AddrPort) (net.Conn, error)
}

func (t *Net) Name() string                   { return t.Label }
func (t *Net) TCPRetransmits() (uint64, bool) { return 0, false }
func (t *Net) CopyBudget() *CopyBudget        { return nil }

// ListenTCP opens a listener. Accept ends with its context where the
// listener has SetDeadline (as *net.TCPListener does); on one without, a
// context that ends closes the listener.
func (t *Net) ListenTCP(laddr netip.AddrPort) (Listener, error) {
	ln, err := t.Listen(laddr)
	if err != nil {
		return nil, err
	}
	return &netListener{ln: ln}, nil
}

func (t *Net) DialTCP(ctx context.Context, raddr netip.AddrPort) (Conn, error) {
	if t.Dial == nil {
		return nil, errors.ErrUnsupported
	}
	c, err := t.Dial(ctx, raddr)
	if err != nil {
		return nil, err
	}
	return newKernelConn(c), nil
}

func (t *Net) ListenUDP(netip.AddrPort) (PacketConn, error) { return nil, errors.ErrUnsupported }
func (t *Net) DialUDP(netip.AddrPort) (PacketConn, error)   { return nil, errors.ErrUnsupported }

type netListener struct {
	ln net.Listener
	cb ctxBinder
}

func (l *netListener) Accept(ctx context.Context) (Conn, error) {
	if dl, ok := l.ln.(interface{ SetDeadline(time.Time) error }); ok {
		if err := l.cb.bind(ctx, dl.SetDeadline); err != nil {
			return nil, err
		}
	} else {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { l.ln.Close() })
		defer stop()
	}
	c, err := l.ln.Accept()
	if err != nil {
		return nil, ctxOr(ctx, err)
	}
	return newKernelConn(c), nil
}

func (l *netListener) Addr() netip.AddrPort { return addrPortOf(l.ln.Addr()) }
func (l *netListener) Close() error         { l.cb.stop(); return l.ln.Close() }

// addrPortOf returns a's address and port, for any net.Addr that has them.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return unmapAddrPort(a.AddrPort())
	case *net.UDPAddr:
		return unmapAddrPort(a.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmapAddrPort(ap)
}
