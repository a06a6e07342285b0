package tap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/tap/taptest"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	peerMAC  = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	stackMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	v4Peer   = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	v4Stack  = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	v6Peer   = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	v6Stack  = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
)

// newPairLinks returns two links joined by a socket pair, each with the
// given offload mode.
func newPairLinks(tb testing.TB, mode OffloadMode) (a, b *Link) {
	tb.Helper()
	fa, fb, err := taptest.Socketpair()
	if err != nil {
		tb.Fatal(err)
	}
	a, err = OpenFD(Config{Name: "pair-a", Offload: mode, LinkAddress: net.HardwareAddr(peerMAC)}, fa)
	if err != nil {
		tb.Fatal(err)
	}
	b, err = OpenFD(Config{Name: "pair-b", Offload: mode, LinkAddress: net.HardwareAddr(stackMAC)}, fb)
	if err != nil {
		tb.Fatal(err)
	}
	return a, b
}

// newPeerLink returns a link over one end of a socket pair, attached to a
// stack with 192.0.2.2/24 and 2001:db8::2/64 and static neighbour entries
// for the peer (192.0.2.1, 2001:db8::1), and a Peer on the other end.
func newPeerLink(tb testing.TB, mode OffloadMode) (*Link, *stack.Stack, *taptest.Peer) {
	tb.Helper()
	fa, fb, err := taptest.Socketpair()
	if err != nil {
		tb.Fatal(err)
	}
	link, err := OpenFD(Config{Name: "peer", Offload: mode, LinkAddress: net.HardwareAddr(stackMAC)}, fa)
	if err != nil {
		tb.Fatal(err)
	}
	peer := taptest.NewPeer(fb)
	tb.Cleanup(func() { peer.Close() })
	s := newStack(tb, link, "192.0.2.2/24", "2001:db8::2/64")
	if err := s.AddStaticNeighbor(testNIC, ipv4.ProtocolNumber, v4Peer, peerMAC); err != nil {
		tb.Fatal(err)
	}
	if err := s.AddStaticNeighbor(testNIC, ipv6.ProtocolNumber, v6Peer, peerMAC); err != nil {
		tb.Fatal(err)
	}
	return link, s, peer
}

// TestBackToBack joins two stacks with two links over a socket pair and
// moves data both ways over TCP, IPv4 and IPv6, checking integrity and the
// offload counters.
func TestBackToBack(t *testing.T) {
	const size = 8 << 20
	for _, mode := range []OffloadMode{OffloadOn, OffloadOff} {
		t.Run("offload="+mode.String(), func(t *testing.T) {
			la, lb := newPairLinks(t, mode)
			var hookViews, hookBytes atomic.Uint64
			lb.SetPayloadHook(func(_ []byte, v *buffer.View, _ int) {
				hookViews.Add(1)
				hookBytes.Add(uint64(v.Size()))
			})
			sa := newStack(t, la, "192.0.2.1/24", "2001:db8::1/64")
			sb := newStack(t, lb, "192.0.2.2/24", "2001:db8::2/64")
			deadline := time.Now().Add(30 * time.Second)

			for _, tc := range []struct {
				dst  string
				size int64
			}{{"192.0.2.2:5001", size}, {"[2001:db8::2]:5002", size / 4}} {
				conns, errs := stackListen(t, sb, tc.dst)
				ca, err := stackDial(sa, tc.dst, 10*time.Second)
				if err != nil {
					t.Fatalf("dial %s: %v", tc.dst, err)
				}
				var cb net.Conn
				select {
				case cb = <-conns:
				case err := <-errs:
					t.Fatalf("accept: %v", err)
				}
				transfer(t, ca, cb, tc.size, deadline) // a → b
				cb.Close()
			}
			// b → a over a fresh connection.
			conns, errs := stackListen(t, sa, "192.0.2.1:5003")
			cb, err := stackDial(sb, "192.0.2.1:5003", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var ca net.Conn
			select {
			case ca = <-conns:
			case err := <-errs:
				t.Fatal(err)
			}
			transfer(t, cb, ca, size, deadline)
			ca.Close()

			sta, stb := la.Stats(), lb.Stats()
			// Totals are the same counters, read later: never behind.
			if tot := la.Totals(); tot.RxFrames < sta.RxFrames || tot.RxBytes < sta.RxBytes || tot.TxFrames < sta.TxFrames || tot.TxBytes < sta.TxBytes || tot.RxBytes == 0 {
				t.Errorf("Totals %+v behind Stats %+v", tot, sta)
			}
			t.Logf("a: %+v", sta)
			t.Logf("b: %+v", stb)
			for name, st := range map[string]Stats{"a": sta, "b": stb} {
				if st.RxDropBadCsum+st.RxDropBadVnetHdr+st.RxDropShort+st.RxReadErrors+st.TxErrors != 0 {
					t.Errorf("%s: drops or errors: %+v", name, st)
				}
				if st.RxFrames == 0 || st.TxFrames == 0 {
					t.Errorf("%s: no traffic counted: %+v", name, st)
				}
				// Only headers are copied on receive.
				if st.RxCopiedBytes > st.RxFrames*link.MaxSplitHeader {
					t.Errorf("%s: copied %d bytes for %d frames", name, st.RxCopiedBytes, st.RxFrames)
				}
			}
			if got := hookBytes.Load(); got < size+size/4 {
				t.Errorf("payload hook saw %d bytes in %d views, want at least the %d transferred", got, hookViews.Load(), size+size/4)
			}
			if mode == OffloadOn {
				if sta.TxGSOFrames == 0 || stb.RxGSOFrames == 0 || stb.TxGSOFrames == 0 || sta.RxGSOFrames == 0 {
					t.Errorf("no GSO super-frames: a tx %d rx %d, b tx %d rx %d", sta.TxGSOFrames, sta.RxGSOFrames, stb.TxGSOFrames, stb.RxGSOFrames)
				}
				// SYNs carry full checksums and no flags: verified.
				if sta.RxCsumVerified == 0 || stb.RxCsumVerified == 0 {
					t.Errorf("no frame verified in software: a %d, b %d", sta.RxCsumVerified, stb.RxCsumVerified)
				}
				// Super-frames: far fewer frames than MSS segments.
				if stb.RxFrames > size/1000 {
					t.Errorf("b received %d frames for %d bytes: GSO not effective", stb.RxFrames, size)
				}
			} else if sta.TxGSOFrames+stb.RxGSOFrames+sta.RxCsumVerified+stb.RxCsumVerified != 0 {
				t.Errorf("offloads off but GSO or verification counted: a %+v b %+v", sta, stb)
			}
			if sb.Stats().IP.MalformedPacketsReceived.Value() != 0 {
				t.Errorf("stack b saw malformed packets")
			}
		})
	}
}

// frameSpec describes an injected UDP frame.
type frameSpec struct {
	v6      bool
	dstMAC  tcpip.LinkAddress
	payload []byte
	// badCsum corrupts the UDP checksum; partial leaves only the
	// pseudo-header sum in it (as the kernel does with NEEDS_CSUM).
	badCsum, partial bool
}

// udpFrame builds an Ethernet frame carrying a UDP datagram from the peer
// (port 4000) to the stack (port 7).
func udpFrame(s frameSpec) []byte {
	src, dst := v4Peer, v4Stack
	ethType := header.IPv4ProtocolNumber
	ipLen := header.IPv4MinimumSize
	if s.v6 {
		src, dst = v6Peer, v6Stack
		ethType = header.IPv6ProtocolNumber
		ipLen = header.IPv6MinimumSize
	}
	udpLen := header.UDPMinimumSize + len(s.payload)
	b := make([]byte, header.EthernetMinimumSize+ipLen+udpLen)
	dstMAC := s.dstMAC
	if dstMAC == "" {
		dstMAC = stackMAC
	}
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: dstMAC, Type: ethType})
	l3 := b[header.EthernetMinimumSize:]
	if s.v6 {
		header.IPv6(l3).Encode(&header.IPv6Fields{PayloadLength: uint16(udpLen), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		ip := header.IPv4(l3)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(ipLen + udpLen), ID: 1, TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	u := header.UDP(l3[ipLen:])
	u.Encode(&header.UDPFields{SrcPort: 4000, DstPort: 7, Length: uint16(udpLen)})
	copy(u.Payload(), s.payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(udpLen))
	if s.partial {
		u.SetChecksum(xsum)
	} else {
		u.SetChecksum(0)
		u.SetChecksum(^checksum.Checksum(u[:udpLen], xsum))
	}
	if s.badCsum {
		u.SetChecksum(u.Checksum() ^ 0x5a5a)
	}
	return b
}

// withVnet prefixes frame with a virtio-net header.
func withVnet(h vnetHdr, frame []byte) []byte {
	b := make([]byte, VnetHdrLen+len(frame))
	h.encode(b)
	copy(b[VnetHdrLen:], frame)
	return b
}

// partialHdr is the header the kernel sends with a UDP frame whose
// checksum it left partial.
func partialHdr(v6 bool) vnetHdr {
	ipLen := header.IPv4MinimumSize
	if v6 {
		ipLen = header.IPv6MinimumSize
	}
	return vnetHdr{flags: vnetFNeedsCsum, csumStart: uint16(header.EthernetMinimumSize + ipLen), csumOffset: udpCsumOffset}
}

// TestInjectedFrames writes hand-made frames into a link and checks what
// reaches a UDP endpoint of the stack and what is counted as dropped.
func TestInjectedFrames(t *testing.T) {
	link, s, peer := newPeerLink(t, OffloadOn)
	recv := func(t *testing.T, v6 bool) *gonet.UDPConn {
		addr, proto := fullAddr("192.0.2.2:7")
		if v6 {
			addr, proto = fullAddr("[2001:db8::2]:7")
		}
		c, err := gonet.DialUDP(s, &addr, nil, proto)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c4, c6 := recv(t, false), recv(t, true)
	expect := func(t *testing.T, c *gonet.UDPConn, want []byte) {
		t.Helper()
		buf := make([]byte, 70000)
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("received %q, want %q", buf[:n], want)
		}
	}
	send := func(t *testing.T, b []byte) {
		t.Helper()
		if err := peer.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// Each drop is followed by a good frame on the same socket, so that
	// the good one arriving proves the bad one was not delivered (frames
	// are handled in order by the one reader).
	steps := []struct {
		name  string
		frame []byte
		good  bool
		v6    bool
		count func(Stats) uint64
	}{
		{"v4 full checksum, no flags", withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("full4")})), true, false, func(s Stats) uint64 { return s.RxCsumVerified }},
		{"v4 bad checksum, no flags", withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("bad4"), badCsum: true})), false, false, func(s Stats) uint64 { return s.RxDropBadCsum }},
		{"v6 full checksum, no flags", withVnet(vnetHdr{}, udpFrame(frameSpec{v6: true, payload: []byte("full6")})), true, true, func(s Stats) uint64 { return s.RxCsumVerified }},
		{"v6 bad checksum, no flags", withVnet(vnetHdr{}, udpFrame(frameSpec{v6: true, payload: []byte("bad6"), badCsum: true})), false, true, func(s Stats) uint64 { return s.RxDropBadCsum }},
		{"v4 partial, NEEDS_CSUM", withVnet(partialHdr(false), udpFrame(frameSpec{payload: []byte("partial4"), partial: true})), true, false, nil},
		{"v6 partial, NEEDS_CSUM", withVnet(partialHdr(true), udpFrame(frameSpec{v6: true, payload: []byte("partial6"), partial: true})), true, true, nil},
		{"v4 bad checksum, DATA_VALID", withVnet(vnetHdr{flags: vnetFDataValid}, udpFrame(frameSpec{payload: []byte("trusted"), badCsum: true})), true, false, nil},
		{"short frame", withVnet(vnetHdr{}, []byte("0123456789")), false, false, func(s Stats) uint64 { return s.RxDropShort }},
		{"unknown gso type", withVnet(vnetHdr{gsoType: 7, gsoSize: 100}, udpFrame(frameSpec{payload: []byte("gso7")})), false, false, func(s Stats) uint64 { return s.RxDropBadVnetHdr }},
		{"csum_start past the end", withVnet(vnetHdr{flags: vnetFNeedsCsum, csumStart: 2000, csumOffset: 6}, udpFrame(frameSpec{payload: []byte("far")})), false, false, func(s Stats) uint64 { return s.RxDropBadVnetHdr }},
		{"another host's MAC", withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("other"), dstMAC: "\x02\x00\x00\x00\x00\x09"})), false, false, func(s Stats) uint64 { return s.RxDropNotForUs }},
		{"broadcast MAC", withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("bcast"), dstMAC: header.EthernetBroadcastAddress})), true, false, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var before uint64
			if st.count != nil {
				before = st.count(link.Stats())
			}
			send(t, st.frame)
			c := c4
			if st.v6 {
				c = c6
			}
			if st.good {
				expect(t, c, udpPayloadOf(st.frame))
			} else {
				marker := []byte("marker-" + st.name)
				send(t, withVnet(vnetHdr{}, udpFrame(frameSpec{v6: st.v6, payload: marker})))
				expect(t, c, marker)
			}
			if st.count != nil {
				if got := st.count(link.Stats()); got <= before {
					t.Errorf("counter did not move: %d → %d (%+v)", before, got, link.Stats())
				}
			}
		})
	}
}

// udpPayloadOf extracts the UDP payload of an injected frame (with its
// virtio-net header).
func udpPayloadOf(b []byte) []byte {
	f := b[VnetHdrLen:]
	l3 := f[header.EthernetMinimumSize:]
	if header.Ethernet(f).Type() == header.IPv6ProtocolNumber {
		return header.UDP(l3[header.IPv6MinimumSize:]).Payload()
	}
	return header.UDP(l3[header.IPv4(l3).HeaderLength():]).Payload()
}

// TestUSOSuperFrame injects a UDP GSO super-frame and checks that the stack
// receives each datagram, with the payload shared rather than copied.
func TestUSOSuperFrame(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			link, s, peer := newPeerLink(t, OffloadOn)
			// The hook sees exactly the payload, datagram by datagram
			// (one reader goroutine calls it, before delivery).
			hooked := make(chan []byte, 64)
			link.SetPayloadHook(func(_ []byte, v *buffer.View, _ int) { hooked <- v.ToSlice() })
			addr, proto := fullAddr("192.0.2.2:7")
			if v6 {
				addr, proto = fullAddr("[2001:db8::2]:7")
			}
			c, err := gonet.DialUDP(s, &addr, nil, proto)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const gsoSize, n = 1000, 5
			payload := make([]byte, gsoSize*(n-1)+321) // last datagram short
			for i := range payload {
				payload[i] = byte(i / gsoSize * 37)
			}
			h := partialHdr(v6)
			h.gsoType = vnetGSOUDPL4
			h.gsoSize = gsoSize
			// The super-frame may exceed the head view; make it span both.
			if err := peer.Write(withVnet(h, udpFrame(frameSpec{v6: v6, payload: payload, partial: true}))); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2*gsoSize)
			for i := 0; i < n; i++ {
				if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				m, _, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d: %v", i, err)
				}
				want := payload[i*gsoSize : min((i+1)*gsoSize, len(payload))]
				if !bytes.Equal(buf[:m], want) {
					t.Fatalf("datagram %d: %d bytes, want %d (%x…)", i, m, len(want), want[:4])
				}
			}
			st := link.Stats()
			if st.RxUSOFrames != 1 || st.RxUSODatagrams != n {
				t.Errorf("USO frames %d datagrams %d, want 1 and %d", st.RxUSOFrames, st.RxUSODatagrams, n)
			}
			var seen []byte
			for len(hooked) > 0 {
				seen = append(seen, <-hooked...)
			}
			if !bytes.Equal(seen, payload) {
				t.Errorf("payload hook saw %d bytes, want the %d payload bytes", len(seen), len(payload))
			}
			if s.Stats().UDP.ChecksumErrors.Value() != 0 || s.Stats().UDP.MalformedPacketsReceived.Value() != 0 {
				t.Errorf("stack counted UDP errors")
			}
		})
	}
}

// TestTransmitChecksums checks the frames the link sends: with a partial
// checksum completed as the kernel would (csum_start, csum_offset), every
// IPv4, TCP and UDP checksum is right, checked with gVisor's header package.
func TestTransmitChecksums(t *testing.T) {
	link, s, peer := newPeerLink(t, OffloadOn)
	// The stack answers a SYN (full checksum, no flags) and sends UDP.
	stackListen(t, s, "192.0.2.2:80")
	syn := tcpSYN()
	if err := peer.Write(withVnet(vnetHdr{}, syn)); err != nil {
		t.Fatal(err)
	}
	addr, proto := fullAddr("192.0.2.2:9")
	raddr, _ := fullAddr("192.0.2.1:9")
	uc, err := gonet.DialUDP(s, &addr, &raddr, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("checksum me")); err != nil {
		t.Fatal(err)
	}
	seen := map[tcpip.TransportProtocolNumber]int{}
	buf := make([]byte, 1<<17)
	for len(seen) < 2 {
		n, err := peer.Read(buf, 5*time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", seen, err)
		}
		var h vnetHdr
		if err := h.decode(buf[:n]); err != nil {
			t.Fatal(err)
		}
		frame := buf[VnetHdrLen:n]
		if h.flags&vnetFNeedsCsum != 0 {
			completePartial(frame, int(h.csumStart), int(h.csumOffset))
		}
		ok, err := checkFrameChecksums(frame)
		if err != nil {
			t.Fatalf("frame with header %+v: %v", h, err)
		}
		if ok && header.Ethernet(frame).Type() == header.IPv4ProtocolNumber {
			seen[header.IPv4(frame[header.EthernetMinimumSize:]).TransportProtocol()]++
		}
	}
	// The writer counts a frame after writev returns, which may be after
	// the peer has read it.
	if !evchantest.Poll(5*time.Second, func() bool { return link.Stats().TxFrames >= 2 }) {
		t.Errorf("TxFrames %d, want ≥ 2", link.Stats().TxFrames)
	}
}

// completePartial finishes a partial checksum the way a device does: the
// sum of everything from start, with the pseudo-header sum already in the
// field, complemented into the field.
func completePartial(frame []byte, start, off int) {
	sum := ^checksumOf(frame[start:])
	frame[start+off] = byte(sum >> 8)
	frame[start+off+1] = byte(sum)
}

// tcpSYN builds a SYN from the peer (192.0.2.1:40000) to the stack's
// port 80, with a full checksum.
func tcpSYN() []byte {
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.TCPMinimumSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: stackMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: v4Peer, DstAddr: v4Stack})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1000, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, v4Peer, v4Stack, header.TCPMinimumSize)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return b
}

// TestAttachDetach checks that Attach(nil) stops delivery, a new Attach
// resumes it, and Close makes writes fail.
func TestAttachDetach(t *testing.T) {
	link, s, peer := newPeerLink(t, OffloadOn)
	addr, proto := fullAddr("192.0.2.2:7")
	c, err := gonet.DialUDP(s, &addr, nil, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := &countingDispatcher{}
	link.Attach(nil) // what RemoveNIC does first
	link.Wait()
	if link.IsAttached() {
		t.Fatal("attached after Attach(nil)")
	}
	link.Attach(d)
	if err := peer.Write(withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("to d")}))); err != nil {
		t.Fatal(err)
	}
	if !evchantest.Poll(5*time.Second, func() bool { return d.n.Load() == 1 }) {
		t.Fatalf("dispatcher got %d packets, want 1", d.n.Load())
	}
	link.Attach(nil)
	link.Wait()
	before := link.Stats().RxFrames
	if err := peer.Write(withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("nobody")}))); err != nil {
		t.Fatal(err)
	}
	// With no reader the frame stays queued in the socket; nothing is
	// counted and nothing delivered.
	if evchantest.Poll(50*time.Millisecond, func() bool { return link.Stats().RxFrames != before }) {
		t.Fatalf("a detached link read a frame")
	}
	link.Close()
	link.Close() // idempotent
	var pkts stack.PacketBufferList
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 14, Payload: buffer.MakeWithData([]byte("after close"))})
	defer pkt.DecRef()
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	link.AddHeader(pkt)
	pkts.PushBack(pkt)
	if n, err := link.WritePackets(pkts); n != 0 || err == nil {
		t.Fatalf("WritePackets after Close: %d, %v; want 0 and an error", n, err)
	} else if _, ok := err.(*tcpip.ErrClosedForSend); !ok {
		t.Fatalf("WritePackets after Close: %v, want ErrClosedForSend", err)
	}
	if d.n.Load() != 1 {
		t.Fatalf("dispatcher got %d packets after detach, want 1", d.n.Load())
	}
}

type countingDispatcher struct{ n atomic.Int64 }

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.n.Add(1)
}
func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"name too long", Config{Name: "a-very-long-name0"}},
		{"name with slash", Config{Name: "tap/0"}},
		{"MTU too small", Config{MTU: 67}},
		{"MTU too large", Config{MTU: MaxMTU + 1}},
		{"negative queues", Config{Queues: -1}},
		{"too many queues", Config{Queues: MaxQueues + 1}},
		{"bad offload mode", Config{Offload: 7}},
		{"short MAC", Config{LinkAddress: net.HardwareAddr{2, 0, 0}}},
		{"multicast MAC", Config{LinkAddress: net.HardwareAddr{1, 0, 0, 0, 0, 1}}},
		{"head view too small", Config{HeadViewSize: 100}},
		{"head view too large", Config{HeadViewSize: 1 << 17}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Open: %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := OpenFD(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("OpenFD with no descriptors: %v, want ErrInvalidConfig", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	r, err := (&Config{}).resolve(0)
	if err != nil {
		t.Fatal(err)
	}
	if r.mtu != DefaultMTU || !r.vnet || r.queues < 1 || len(r.mac) != 6 || r.mac[0]&1 != 0 || r.mac[0]&2 == 0 {
		t.Fatalf("defaults: %+v", r)
	}
	if r.headView != 2048 {
		t.Fatalf("head view for MTU 1500: %d, want 2048", r.headView)
	}
	r2, _ := (&Config{}).resolve(0)
	if bytes.Equal(r.mac, r2.mac) {
		t.Fatalf("two random MACs are equal: %v", r.mac)
	}
	r, err = (&Config{MTU: 9000, Offload: OffloadOff}).resolve(3)
	if err != nil {
		t.Fatal(err)
	}
	if r.vnet || r.queues != 3 || r.headView != 16384 {
		t.Fatalf("MTU 9000, offload off, 3 fds: %+v", r)
	}
}

// TestPeerGone checks that a reader whose descriptor reaches end of file
// stops and reports it, rather than spinning.
func TestPeerGone(t *testing.T) {
	link, _, peer := newPeerLink(t, OffloadOn)
	if link.Err() != nil {
		t.Fatalf("Err before: %v", link.Err())
	}
	peer.Close()
	if !evchantest.Poll(5*time.Second, func() bool { return link.Err() != nil }) {
		t.Fatal("reader did not stop at end of file")
	}
	if !errors.Is(link.Err(), io.EOF) {
		t.Fatalf("Err = %v, want io.EOF", link.Err())
	}
	link.Wait() // the reader has returned
}
