package api

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/zcnet/zcnet/stack"
)

// Net opens connections on one zcnet Stack with the shapes of package net,
// so existing code (net/http, TLS, gRPC) runs over zcnet unchanged:
//
//	n := s.Net() // s is an *api.Stack
//	tr := &http.Transport{DialContext: n.DialContext}
//	ln, _ := n.Listen("tcp", "192.0.2.2:80")
//	http.Serve(ln, handler)
//
// Addresses are numeric ("192.0.2.2:80", "[2001:db8::2]:80"); zcnet has no
// resolver, so a host name is an error (ErrAddress), never a lookup.
//
// Every connection, listener and packet conn is a Socket of the Stack
// underneath: it has the Stack's default association with its pool, its
// received data is handed over from the stack without a copy, and Stack
// Close closes it (calls then fail with net.ErrClosed). What package net's
// shapes add is one copy in each direction, and the copy budget books
// both (Counters, and Stats on each conn):
//
//   - Read and ReadFrom copy the handed-over bytes into the caller's slice:
//     the only receive copy, as in package net. Each byte read moves from
//     RxHandedOver to RxCopied, so a stream read through the adapters ends
//     with RxCopied equal to the bytes read and RxHandedOver zero. A byte
//     the socket itself had to copy (see "Where bytes are copied" in the
//     package doc) is copied twice and counted twice in RxCopied.
//   - Write and WriteTo copy the caller's slice into the stack's send
//     buffer once (TxCopied), as Send does; nothing else copies.
//
// The unread rest of a hand-off waits in the conn for the next Read and
// is released as soon as it has been read, so a conn holds at most one
// partly read Buf beside what its socket has queued.
type Net struct {
	s *Stack // immutable
}

// NewNet returns a Net over s; Stack.Net does the same.
func NewNet(s *Stack) *Net { return &Net{s: s} }

// Stack returns the Stack n opens connections on.
func (n *Net) Stack() *Stack { return n.s }

// ready reports why n cannot open sockets: a Net needs the Stack's pool,
// whose association bounds what each conn holds (Options.Pool).
func (n *Net) ready() error {
	if n == nil || n.s == nil {
		return fmt.Errorf("%w: Net without a Stack (use Stack.Net)", ErrAssoc)
	}
	if n.s.opts.Pool == nil {
		return fmt.Errorf("%w: the net adapters need Options.Pool to receive into", ErrAssoc)
	}
	return nil
}

// family is what a network name asks of addresses.
type family int

const (
	famAny family = iota // "tcp", "udp": either, decided by the address
	fam4                 // "tcp4", "udp4"
	fam6                 // "tcp6", "udp6"
)

// parseNetwork splits "tcp6" into ("tcp", fam6).
func parseNetwork(network string) (proto string, f family, err error) {
	switch network {
	case "tcp", "udp":
		return network, famAny, nil
	case "tcp4", "udp4":
		return network[:3], fam4, nil
	case "tcp6", "udp6":
		return network[:3], fam6, nil
	}
	return "", 0, fmt.Errorf("%w %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", ErrNetwork, network)
}

// parseAddr parses a numeric "host:port" where host may be empty (the
// unspecified address, for listening) and checks it against the family.
func parseAddr(f family, address string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w %q: %v", ErrAddress, address, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w %q: port %q is not a number from 0 to 65535 (zcnet has no service names)", ErrAddress, address, port)
	}
	var a netip.Addr
	if host != "" {
		a, err = netip.ParseAddr(host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w %q: %q is not an IP address (zcnet has no resolver: pass a numeric address)", ErrAddress, address, host)
		}
		if a.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("%w %q: zones are not supported", ErrAddress, address)
		}
		a = a.Unmap()
	}
	switch {
	case f == fam4 && a.Is6():
		return netip.AddrPort{}, fmt.Errorf("%w %q: IPv6 address on an IPv4 network", ErrAddress, address)
	case f == fam6 && a.Is4():
		return netip.AddrPort{}, fmt.Errorf("%w %q: IPv4 address on an IPv6 network", ErrAddress, address)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// netProto picks the endpoint's network protocol: the address's family when
// it has one, else IPv6 (dual-stack) unless the network is IPv4-only.
func netProto(f family, a netip.Addr) tcpip.NetworkProtocolNumber {
	switch {
	case a.IsValid():
		return stack.NetworkProtocol(a)
	case f == fam4:
		return ipv4.ProtocolNumber
	default:
		return ipv6.ProtocolNumber
	}
}

// opError builds the error package net would return for op.
func opError(op, network string, src, dst net.Addr, err error) error {
	return &net.OpError{Op: op, Net: network, Source: src, Addr: dst, Err: err}
}

// errnoError wraps a gVisor error as package net does a system call's: an
// *os.SyscallError around the errno Linux would give.
func errnoError(call string, err tcpip.Error) error {
	return os.NewSyscallError(call, Errno(err))
}

// DialContext connects to address on the named network ("tcp", "tcp4",
// "tcp6", "udp", "udp4", "udp6"). It has the signature of
// net.Dialer.DialContext, so it fits http.Transport.DialContext. ctx bounds
// the connection attempt only.
func (n *Net) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	proto, f, err := parseNetwork(network)
	if err != nil {
		return nil, opError("dial", network, nil, nil, err)
	}
	ap, err := parseAddr(f, address)
	if err != nil {
		return nil, opError("dial", network, nil, nil, err)
	}
	if !ap.Addr().IsValid() {
		return nil, opError("dial", network, nil, nil, fmt.Errorf("%w %q: no host to dial", ErrAddress, address))
	}
	// Return nil, not a typed nil pointer, with an error: callers test
	// conn != nil.
	if proto == "tcp" {
		c, err := n.DialTCP(ctx, network, netip.AddrPort{}, ap)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	c, err := n.DialUDP(network, netip.AddrPort{}, ap)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Dial is DialContext without a context.
func (n *Net) Dial(network, address string) (net.Conn, error) {
	return n.DialContext(context.Background(), network, address)
}

// Listen listens for TCP connections on address ("tcp", "tcp4", "tcp6"). An
// empty host listens on every address; port 0 picks a free port.
func (n *Net) Listen(network, address string) (net.Listener, error) {
	proto, f, err := parseNetwork(network)
	if err == nil && proto != "tcp" {
		err = fmt.Errorf("%w %q: Listen takes tcp, tcp4 or tcp6 (use ListenPacket for UDP)", ErrNetwork, network)
	}
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	ap, err := parseAddr(f, address)
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	l, err := n.ListenTCP(network, ap)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenPacket opens a UDP socket bound to address ("udp", "udp4", "udp6").
func (n *Net) ListenPacket(network, address string) (net.PacketConn, error) {
	proto, f, err := parseNetwork(network)
	if err == nil && proto != "udp" {
		err = fmt.Errorf("%w %q: ListenPacket takes udp, udp4 or udp6", ErrNetwork, network)
	}
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	ap, err := parseAddr(f, address)
	if err != nil {
		return nil, opError("listen", network, nil, nil, err)
	}
	c, err := n.ListenUDP(network, ap)
	if err != nil {
		return nil, err
	}
	return c, nil
}
