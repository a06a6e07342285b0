package tap

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testNIC tcpip.NICID = 1

// newStack builds a bare gVisor stack (IPv4, IPv6, ARP, TCP, UDP, ICMP) on
// link with the given addresses (prefix form, e.g. "192.0.2.2/24") and
// on-link routes for them. Cleanup closes the link first (which removes the
// NIC), then the stack; see the package doc on shutdown order.
func newStack(tb testing.TB, link stack.LinkEndpoint, addrs ...string) *stack.Stack {
	tb.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	tb.Cleanup(func() {
		link.Close()
		s.Close()
		s.Wait()
	})
	// Buffers big enough for a 64 KiB GSO segment in flight many times
	// over; gVisor's defaults (1 MiB) cap a single stream well below the
	// link's speed.
	bufs := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 4 << 20, Max: 16 << 20}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &bufs); err != nil {
		tb.Fatalf("send buffer option: %v", err)
	}
	rbufs := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 4 << 20, Max: 16 << 20}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rbufs); err != nil {
		tb.Fatalf("receive buffer option: %v", err)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		tb.Fatalf("SACK option: %v", err)
	}
	if err := s.CreateNIC(testNIC, link); err != nil {
		tb.Fatalf("CreateNIC: %v", err)
	}
	for _, a := range addrs {
		p := netip.MustParsePrefix(a)
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{
			Protocol:          proto,
			AddressWithPrefix: tcpip.AddrFromSlice(p.Addr().AsSlice()).WithPrefix(),
		}
		pa.AddressWithPrefix.PrefixLen = p.Bits()
		if err := s.AddProtocolAddress(testNIC, pa, stack.AddressProperties{}); err != nil {
			tb.Fatalf("AddProtocolAddress %s: %v", a, err)
		}
		s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: testNIC})
	}
	return s
}

// fullAddr converts "192.0.2.2:5001" or "[2001:db8::2]:5001".
func fullAddr(hostport string) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	ap := netip.MustParseAddrPort(hostport)
	proto := ipv4.ProtocolNumber
	if ap.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: testNIC, Addr: tcpip.AddrFromSlice(ap.Addr().AsSlice()), Port: ap.Port()}, proto
}

// stackListen listens on the stack and returns the first accepted
// connection on a channel.
func stackListen(tb testing.TB, s *stack.Stack, hostport string) (<-chan net.Conn, <-chan error) {
	tb.Helper()
	addr, proto := fullAddr(hostport)
	l, err := gonet.ListenTCP(s, addr, proto)
	if err != nil {
		tb.Fatalf("listen %s: %v", hostport, err)
	}
	tb.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 1)
	errs := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errs <- err
			return
		}
		conns <- c
	}()
	return conns, errs
}

// stackDial dials from the stack, bounded by timeout.
func stackDial(s *stack.Stack, hostport string, timeout time.Duration) (net.Conn, error) {
	addr, proto := fullAddr(hostport)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gonet.DialContextTCP(ctx, s, addr, proto)
}

// transfer writes n pseudo-random bytes into w and reads them from r, both
// bounded by deadline, and fails tb unless the SHA-256 of what arrived
// equals that of what was sent. It closes w after writing.
func transfer(tb testing.TB, w, r net.Conn, n int64, deadline time.Time) {
	tb.Helper()
	if err := w.SetDeadline(deadline); err != nil {
		tb.Fatal(err)
	}
	if err := r.SetDeadline(deadline); err != nil {
		tb.Fatal(err)
	}
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	sent := make(chan result, 1)
	go func() {
		h := sha256.New()
		src := io.TeeReader(io.LimitReader(newPRNGReader(uint64(n)), n), h)
		m, err := io.CopyBuffer(w, src, make([]byte, 256<<10))
		if err == nil {
			err = w.Close()
		}
		var res result
		copy(res.sum[:], h.Sum(nil))
		res.n, res.err = m, err
		sent <- res
	}()
	h := sha256.New()
	got, rerr := io.CopyBuffer(h, r, make([]byte, 256<<10))
	s := <-sent
	if s.err != nil {
		tb.Fatalf("send: %d of %d bytes: %v", s.n, n, s.err)
	}
	if rerr != nil {
		tb.Fatalf("receive: %d of %d bytes: %v", got, n, rerr)
	}
	if got != n {
		tb.Fatalf("received %d bytes, want %d", got, n)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	if sum != s.sum {
		tb.Fatalf("SHA-256 of the %d bytes received %x, sent %x", n, sum, s.sum)
	}
}

// prngReader yields a deterministic byte stream, so transfers are not
// all zeros (which would hide misplaced bytes).
type prngReader struct{ r *rand.PCG }

func newPRNGReader(seed uint64) io.Reader { return &prngReader{rand.NewPCG(seed, 0x9e3779b97f4a7c15)} }

func (p *prngReader) Read(b []byte) (int, error) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := p.r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(p.r.Uint64())
	}
	return len(b), nil
}

// checkFrameChecksums checks, with gVisor's header package alone (not the
// link's own verifier), the IPv4 header checksum and the TCP, UDP and
// ICMPv4 checksums of an Ethernet frame. ok is false for a frame that is
// not IP or whose headers do not parse.
func checkFrameChecksums(frame []byte) (ok bool, err error) {
	if len(frame) < header.EthernetMinimumSize {
		return false, nil
	}
	eth := header.Ethernet(frame)
	l3 := frame[header.EthernetMinimumSize:]
	var (
		proto    tcpip.TransportProtocolNumber
		l4       []byte
		src, dst tcpip.Address
	)
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if !ip.IsValid(len(l3)) {
			return false, nil
		}
		if !ip.IsChecksumValid() {
			return true, errors.New("IPv4 header checksum")
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return true, nil
		}
		proto = ip.TransportProtocol()
		l4 = l3[ip.HeaderLength():ip.TotalLength()]
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	case header.IPv6ProtocolNumber:
		if len(l3) < header.IPv6MinimumSize {
			return false, nil
		}
		ip := header.IPv6(l3)
		end := header.IPv6MinimumSize + int(ip.PayloadLength())
		if end > len(l3) {
			return false, nil
		}
		proto = ip.TransportProtocol()
		l4 = l3[header.IPv6MinimumSize:end]
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	default:
		return false, nil
	}
	switch proto {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return false, nil
		}
		t := header.TCP(l4)
		off := int(t.DataOffset())
		if off < header.TCPMinimumSize || off > len(l4) {
			return false, nil
		}
		payload := l4[off:]
		if !t.IsChecksumValid(src, dst, checksumOf(payload), uint16(len(payload))) {
			return true, fmt.Errorf("TCP checksum %#04x, %d payload bytes", t.Checksum(), len(payload))
		}
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return false, nil
		}
		u := header.UDP(l4)
		if u.Checksum() == 0 && eth.Type() == header.IPv4ProtocolNumber {
			return true, nil
		}
		if !u.IsChecksumValid(src, dst, checksumOf(l4[header.UDPMinimumSize:])) {
			return true, fmt.Errorf("UDP checksum %#04x", u.Checksum())
		}
	case header.ICMPv4ProtocolNumber:
		if checksumOf(l4) != 0xffff {
			return true, errors.New("ICMPv4 checksum")
		}
	}
	return true, nil
}

func checksumOf(b []byte) uint16 { return checksum.Checksum(b, 0) }
