package impair

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// The integrity proof over an in-process link: two gVisor stacks
// joined by two channel links and a pair of pump goroutines (the wire),
// every side wrapped in an impairment Endpoint with the faults below in
// both of its directions. A packet from one stack to the other therefore
// crosses two impairment stages (the sender's outbound, the receiver's
// inbound): about 4% loss, 2% duplication, 10% reordering and 0.2%
// corruption end to end, twice what each stage applies.
//
// TCP must deliver every byte, in order, unchanged (SHA-256). UDP datagrams
// carry the SHA-256 of their own contents and must arrive intact or not at
// all. Corruption must be caught by the stacks' checksums, which the links
// let them verify (channel links advertise no checksum offload).

var hostileImpairments = Impairments{Loss: 0.02, Duplicate: 0.01, Reorder: 0.05, Corrupt: 0.001}

const (
	wireMTU = 1500
	tcpPort = 7000
	udpPort = 7001
)

var (
	addrA4 = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	addrB4 = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	addrA6 = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	addrB6 = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
)

// tcpTransferSize is 64 MiB as the issue asks, or 16 MiB when the race
// detector is on or -short is given. Measured on the 2-core machine: 64 MiB
// takes 13 s without the race detector and 25 s with it when the machine is
// otherwise idle, but more than the 90 s budget under -race while other
// builds share the cores; 16 MiB keeps the package's -race run well inside
// a minute. ZCNET_IMPAIR_MIB=n overrides the size.
func tcpTransferSize() int {
	if s := os.Getenv("ZCNET_IMPAIR_MIB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n << 20
		}
	}
	if raceEnabled || testing.Short() {
		return 16 << 20
	}
	return 64 << 20
}

// side is one stack of the pair.
type side struct {
	s    *stack.Stack
	link *Endpoint
	ch   *channel.Endpoint
}

func newSide(t *testing.T, seed uint64, a4, a6 tcpip.Address) *side {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		t.Fatalf("SACK: %v", err)
	}
	// No LinkEPCapabilities: in particular no RX checksum offload, so the
	// stack verifies every checksum it receives.
	ch := channel.New(4096, wireMTU, "")
	link, err := New(ch, Config{Seed: seed, Outbound: hostileImpairments, Inbound: hostileImpairments})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateNIC(1, link); err != nil {
		t.Fatalf("CreateNIC: %v", err)
	}
	for _, a := range []tcpip.ProtocolAddress{
		{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: a4, PrefixLen: 24}},
		{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: a6, PrefixLen: 64}},
	} {
		if err := s.AddProtocolAddress(1, a, stack.AddressProperties{}); err != nil {
			t.Fatalf("AddProtocolAddress %v: %v", a, err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: tcpip.AddressWithPrefix{Address: a4, PrefixLen: 24}.Subnet(), NIC: 1},
		{Destination: tcpip.AddressWithPrefix{Address: a6, PrefixLen: 64}.Subnet(), NIC: 1},
	})
	return &side{s: s, link: link, ch: ch}
}

// pump is one direction of the wire: it copies each frame the sender's
// channel link emits into fresh memory, as a device would, and injects it
// into the receiver's channel link, which hands it to the receiver's
// impairment Endpoint.
func pump(ctx context.Context, from, to *channel.Endpoint) {
	for {
		pkt := from.ReadContext(ctx)
		if pkt == nil {
			return
		}
		proto := pkt.NetworkProtocolNumber
		v := pkt.ToView()
		pkt.DecRef()
		in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
		to.InjectInbound(proto, in)
		in.DecRef()
	}
}

// pair is two sides and the running wire.
type pair struct {
	a, b   *side
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPair(t *testing.T) *pair {
	p := &pair{a: newSide(t, 1, addrA4, addrA6), b: newSide(t, 2, addrB4, addrB6)}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go func() { defer p.wg.Done(); pump(ctx, p.a.ch, p.b.ch) }()
	go func() { defer p.wg.Done(); pump(ctx, p.b.ch, p.a.ch) }()
	return p
}

// close stops the wire, destroys both stacks (which detach and close the
// links) and checks that no packet reference is left anywhere.
func (p *pair) close(t *testing.T) {
	p.cancel()
	p.wg.Wait()
	p.a.s.Destroy()
	p.b.s.Destroy()
	checkLeaks(t)
}

func TestIntegrityUnderImpairment(t *testing.T) {
	p := newPair(t)
	defer p.close(t)

	t.Run("TCP", func(t *testing.T) { tcpIntegrity(t, p, tcpTransferSize()) })
	t.Run("UDP", func(t *testing.T) {
		udpIntegrity(t, p, ipv4.ProtocolNumber, addrA4, addrB4)
		udpIntegrity(t, p, ipv6.ProtocolNumber, addrA6, addrB6)
	})

	// Every link direction must actually have done all four things to the
	// traffic, or the proof proves nothing.
	for name, l := range map[string]*Endpoint{"A": p.a.link, "B": p.b.link} {
		st := l.Stats()
		for dir, d := range map[string]DirectionStats{"outbound": st.Outbound, "inbound": st.Inbound} {
			if d.DroppedLoss == 0 || d.Duplicated == 0 || d.Reordered == 0 || d.Corrupted == 0 {
				t.Errorf("link %s %s never applied some impairment: %+v", name, dir, d)
			}
			t.Logf("link %s %-8s in %7d passed %7d lost %5d dup %5d reord %5d corrupt %3d",
				name, dir, d.In, d.Passed, d.DroppedLoss, d.Duplicated, d.Reordered, d.Corrupted)
		}
	}
	// Corrupted packets must have been caught. The counts cannot be
	// matched one to one: a damaged packet may be dropped for another reason
	// first (a destination that is not ours, an unknown protocol) or lost by
	// a later impairment, and a fragment joined to the wrong datagram after
	// a loss (IPv4 IDs are random and can repeat) also fails a checksum. So
	// the test asks for checksum drops, and the SHA-256 checks above for
	// their effect.
	var corrupted, caught uint64
	for _, sd := range []*side{p.a, p.b} {
		st := sd.link.Stats()
		corrupted += st.Outbound.Corrupted + st.Inbound.Corrupted
		ss := sd.s.Stats()
		caught += ss.TCP.ChecksumErrors.Value() + ss.UDP.ChecksumErrors.Value() + ss.IP.MalformedPacketsReceived.Value()
	}
	if caught == 0 {
		t.Errorf("stacks dropped nothing for bad checksums, though %d packets were corrupted", corrupted)
	}
	t.Logf("corrupted %d packets; stacks dropped %d for bad checksums or malformed headers", corrupted, caught)
}

// tcpIntegrity sends size bytes from A to B over TCP and checks they
// arrive unchanged.
func tcpIntegrity(t *testing.T, p *pair, size int) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	ln, err := gonet.ListenTCP(p.b.s, tcpip.FullAddress{NIC: 1, Addr: addrB4, Port: tcpPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()

	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	recv := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- result{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		recv <- r
	}()

	start := time.Now()
	c, err := gonet.DialContextTCP(ctx, p.a.s, tcpip.FullAddress{NIC: 1, Addr: addrB4, Port: tcpPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetDeadline(deadline)
	src := rand.NewChaCha8([32]byte{'z', 'c', 'n', 'e', 't'})
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for sent := 0; sent < size; sent += len(buf) {
		src.Read(buf)
		h.Write(buf)
		if _, err := c.Write(buf); err != nil {
			c.Close()
			t.Fatalf("write after %d bytes: %v", sent, err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	var want [32]byte
	copy(want[:], h.Sum(nil))

	var r result
	select {
	case r = <-recv:
	case <-ctx.Done():
		c.Close()
		t.Fatalf("transfer not done in time: %v", ctx.Err())
	}
	c.Close()
	el := time.Since(start)
	if r.err != nil {
		t.Fatalf("receive: %v after %d bytes", r.err, r.n)
	}
	if r.n != int64(size) || r.sum != want {
		t.Fatalf("received %d bytes, SHA-256 %x; sent %d bytes, SHA-256 %x", r.n, r.sum, size, want)
	}
	ts := p.a.s.Stats().TCP
	t.Logf("TCP: %d MiB byte-identical in %v (%.1f Mbit/s); sender retransmitted %d segments (%d timeouts, %d SACK recoveries)",
		size>>20, el.Round(time.Millisecond), float64(size)*8/el.Seconds()/1e6,
		ts.Retransmits.Value(), ts.Timeouts.Value(), ts.SACKRecovery.Value())
}

// udpEndpoint opens a UDP socket on s at addr with a receive buffer large
// enough that the test's burst is not dropped for want of room.
func udpEndpoint(t *testing.T, s *stack.Stack, proto tcpip.NetworkProtocolNumber, addr tcpip.Address, port uint16) *gonet.UDPConn {
	t.Helper()
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr != nil {
		t.Fatalf("udp endpoint: %v", terr)
	}
	ep.SocketOptions().SetReceiveBufferSize(8<<20, true)
	// gVisor's default, PMTUDiscoveryWant, sets DF, and a DF datagram gets
	// IPv4 ID 0 even when the stack then fragments it locally
	// (gvisor.dev/issue/5919): every fragmented datagram shares one ID, and
	// after one lost fragment the receiver joins fragments of different
	// datagrams. Its UDP checksum catches that (this test saw it: hundreds of
	// checksum drops, no corrupted delivery), but it would hide the link's
	// own numbers. Without DF each datagram gets a random ID.
	if terr := ep.SetSockOptInt(tcpip.MTUDiscoverOption, int(tcpip.PMTUDiscoveryDont)); terr != nil {
		ep.Close()
		t.Fatalf("MTU discovery option: %v", terr)
	}
	if terr := ep.Bind(tcpip.FullAddress{NIC: 1, Addr: addr, Port: port}); terr != nil {
		ep.Close()
		t.Fatalf("bind: %v", terr)
	}
	return gonet.NewUDPConn(&wq, ep)
}

// udpIntegrity sends datagrams from A to B, some larger than the MTU so
// that fragments are impaired too, each ending in the SHA-256 of the rest,
// and checks that every one that arrives is intact.
func udpIntegrity(t *testing.T, p *pair, proto tcpip.NetworkProtocolNumber, from, to tcpip.Address) {
	const n = 2000
	rx := udpEndpoint(t, p.b.s, proto, to, udpPort)
	defer rx.Close()
	tx := udpEndpoint(t, p.a.s, proto, from, 0)
	defer tx.Close()
	dst := &net.UDPAddr{IP: net.IP(to.AsSlice()), Port: udpPort}

	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		r := rand.New(rand.NewPCG(uint64(proto), 9))
		for i := range n {
			body := make([]byte, 8+r.IntN(3000))
			binary.BigEndian.PutUint64(body, uint64(i))
			for j := 8; j < len(body); j++ {
				body[j] = byte(r.Uint32())
			}
			sum := sha256.Sum256(body)
			if _, err := tx.WriteTo(append(body, sum[:]...), dst); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()

	seen := make(map[uint64]bool)
	var intact, dups, corrupted int
	buf := make([]byte, 1<<16)
	for len(seen) < n {
		// Once the sender is done, a second of silence means the rest
		// were lost.
		senderDone := false
		select {
		case <-sendDone:
			senderDone = true
		default:
		}
		rx.SetReadDeadline(time.Now().Add(time.Second))
		m, _, err := rx.ReadFrom(buf)
		if err != nil {
			var ne interface{ Timeout() bool }
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("receive: %v", err)
			}
			if senderDone {
				break
			}
			continue
		}
		d := buf[:m]
		if len(d) < 8+sha256.Size || !bytes.Equal(d[len(d)-sha256.Size:], hashOf(d[:len(d)-sha256.Size])) {
			corrupted++
		} else if i := binary.BigEndian.Uint64(d); seen[i] {
			dups++
		} else {
			seen[i] = true
			intact++
		}
	}
	<-sendDone
	missing := n - len(seen)
	t.Logf("UDP over IPv%d: %d datagrams sent, %d intact, %d duplicates, %d missing, %d corrupted",
		map[tcpip.NetworkProtocolNumber]int{ipv4.ProtocolNumber: 4, ipv6.ProtocolNumber: 6}[proto], n, intact, dups, missing, corrupted)
	if corrupted != 0 {
		t.Errorf("%d datagrams arrived corrupted", corrupted)
	}
	if intact == 0 || missing == 0 {
		// Both must happen at these rates, or the link is not impairing.
		t.Errorf("intact %d, missing %d: want both above zero", intact, missing)
	}
}

func hashOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
