package tap

import (
	"bytes"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

func TestVnetHeaderLayout(t *testing.T) {
	h := vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv6, hdrLen: 0x0102, gsoSize: 0x0304, csumStart: 0x0506, csumOffset: 0x0708, numBuffers: 0x090a}
	var b [VnetHdrLen]byte
	h.encode(b[:])
	// Little-endian 16-bit fields at the offsets of virtio_net_hdr_v1.
	want := []byte{0x01, 0x04, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07, 0x0a, 0x09}
	if !bytes.Equal(b[:], want) {
		t.Fatalf("encode: % x, want % x", b, want)
	}
	var got vnetHdr
	if err := got.decode(b[:]); err != nil || got != h {
		t.Fatalf("decode: %+v, %v; want %+v", got, err, h)
	}
	if err := got.decode(b[:VnetHdrLen-1]); !errors.Is(err, errBadVnetHeader) {
		t.Fatalf("decode of 11 bytes: %v, want errBadVnetHeader", err)
	}
}

func TestVnetValidateRx(t *testing.T) {
	const frame = 1514
	tcp4 := vnetHdr{flags: vnetFNeedsCsum, csumStart: 34, csumOffset: 16}
	for _, tc := range []struct {
		name string
		h    vnetHdr
		ok   bool
	}{
		{"zero", vnetHdr{}, true},
		{"data valid", vnetHdr{flags: vnetFDataValid}, true},
		{"partial TCP", tcp4, true},
		{"partial UDP", vnetHdr{flags: vnetFNeedsCsum, csumStart: 34, csumOffset: 6}, true},
		{"TSO4", vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 16}, true},
		{"TSO6 with ECN", vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv6 | vnetGSOECN, gsoSize: 1428, csumStart: 54, csumOffset: 16}, true},
		{"USO", vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: 1000, csumStart: 34, csumOffset: 6}, true},
		{"unknown flag", vnetHdr{flags: 0x10}, false},
		{"unknown gso type", vnetHdr{flags: vnetFNeedsCsum, gsoType: 2, gsoSize: 1, csumStart: 34, csumOffset: 16}, false},
		{"UFO", vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOUDP, gsoSize: 1000, csumStart: 34, csumOffset: 6}, false},
		{"ECN alone", vnetHdr{gsoType: vnetGSOECN}, false},
		{"GSO without size", vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, csumStart: 34, csumOffset: 16}, false},
		{"GSO without NEEDS_CSUM", vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 1448}, false},
		{"TSO with UDP csum offset", vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 6}, false},
		{"csum_start inside Ethernet", vnetHdr{flags: vnetFNeedsCsum, csumStart: 10, csumOffset: 16}, false},
		{"csum field past end", vnetHdr{flags: vnetFNeedsCsum, csumStart: frame - 17, csumOffset: 16}, false},
		{"csum field at end", vnetHdr{flags: vnetFNeedsCsum, csumStart: frame - 18, csumOffset: 16}, true},
		{"odd csum offset", vnetHdr{flags: vnetFNeedsCsum, csumStart: 34, csumOffset: 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.validateRx(frame)
			if (err == nil) != tc.ok {
				t.Fatalf("validateRx(%+v) = %v, want ok=%v", tc.h, err, tc.ok)
			}
			if err != nil && !errors.Is(err, errBadVnetHeader) {
				t.Fatalf("error %v does not wrap errBadVnetHeader", err)
			}
		})
	}
}

func TestOffloadsString(t *testing.T) {
	for o, want := range map[Offloads]string{
		0:                                    "none",
		offloadsBasic:                        "csum|tso4|tso6",
		offloadsWanted:                       "csum|tso4|tso6|uso4|uso6",
		OffloadCsum | Offloads(0x100):        "csum|0x100",
		OffloadTSOECN | OffloadUSO4 | 0x1000: "tso_ecn|uso4|0x1000",
	} {
		if got := o.String(); got != want {
			t.Errorf("%#x: %q, want %q", uint32(o), got, want)
		}
	}
}

// outboundTCP builds an outbound packet the way gVisor's TCP and IP layers
// and the link's AddHeader leave it: Ethernet, IP (with optLen bytes of
// IPv4 options) and TCP headers pushed in front of payload bytes, and the
// given GSO options.
func outboundTCP(v6 bool, ipOptLen, payload int, gso stack.GSO) *stack.PacketBuffer {
	data := bytes.Repeat([]byte{0xab}, payload)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: 14 + 60 + 60,
		Payload:            buffer.MakeWithData(data),
	})
	tcp := header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize + 12))
	tcp.Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, DataOffset: header.TCPMinimumSize + 12, Flags: header.TCPFlagAck})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	if v6 {
		ip := header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize))
		ip.Encode(&header.IPv6Fields{PayloadLength: uint16(len(tcp) + payload), TransportProtocol: header.TCPProtocolNumber, SrcAddr: v6Stack, DstAddr: v6Peer})
		pkt.NetworkProtocolNumber = header.IPv6ProtocolNumber
	} else {
		ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize + ipOptLen))
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + ipOptLen + len(tcp) + payload), Protocol: uint8(header.TCPProtocolNumber), SrcAddr: v4Stack, DstAddr: v4Peer})
		ip.SetHeaderLength(uint8(header.IPv4MinimumSize + ipOptLen))
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	}
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: stackMAC, DstAddr: peerMAC, Type: pkt.NetworkProtocolNumber})
	pkt.GSOOptions = gso
	return pkt
}

func TestTxVnetHdr(t *testing.T) {
	hostGSO := func(typ stack.GSOType) stack.GSO {
		return stack.GSO{Type: typ, NeedsCsum: true, CsumOffset: header.TCPChecksumOffset, MSS: 1448, L3HdrLen: header.IPv4MinimumSize, MaxSize: GSOMaxSize}
	}
	for _, tc := range []struct {
		name     string
		v6       bool
		ipOpt    int
		payload  int
		gso      stack.GSO
		want     vnetHdr
		wantSize int
	}{
		{"TCPv4 super-frame", false, 0, 20000, hostGSO(stack.GSOTCPv4),
			vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 14 + 20 + 32, gsoSize: 1448, csumStart: 34, csumOffset: 16}, 0},
		{"TCPv4 one MSS", false, 0, 1448, hostGSO(stack.GSOTCPv4),
			vnetHdr{flags: vnetFNeedsCsum, hdrLen: 66, csumStart: 34, csumOffset: 16}, 0},
		{"TCPv4 bare ACK", false, 0, 0, hostGSO(stack.GSOTCPv4),
			vnetHdr{flags: vnetFNeedsCsum, hdrLen: 66, csumStart: 34, csumOffset: 16}, 0},
		{"TCPv4 with IP options", false, 8, 5000, hostGSO(stack.GSOTCPv4),
			vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, hdrLen: 14 + 28 + 32, gsoSize: 1448, csumStart: 42, csumOffset: 16}, 0},
		{"TCPv6 super-frame", true, 0, 3000, hostGSO(stack.GSOTCPv6),
			vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv6, hdrLen: 14 + 40 + 32, gsoSize: 1448, csumStart: 54, csumOffset: 16}, 0},
		{"no GSO (SYN, RST): full checksum, zero header", false, 0, 0, stack.GSO{}, vnetHdr{}, 0},
		{"gVisor GSO is not host GSO", false, 0, 5000, stack.GSO{Type: stack.GSOGvisor, MSS: 1448}, vnetHdr{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := outboundTCP(tc.v6, tc.ipOpt, tc.payload, tc.gso)
			defer pkt.DecRef()
			if got := txVnetHdr(pkt); got != tc.want {
				t.Fatalf("txVnetHdr = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// frameBuilder makes test frames with correct checksums.
type frameBuilder struct {
	v6      bool
	proto   tcpip.TransportProtocolNumber
	payload int
	hopByHop,
	fragment bool
}

func (fb frameBuilder) build() []byte {
	l4len := header.UDPMinimumSize
	switch fb.proto {
	case header.TCPProtocolNumber:
		l4len = header.TCPMinimumSize
	case header.ICMPv4ProtocolNumber, header.ICMPv6ProtocolNumber:
		l4len = header.ICMPv4MinimumSize
	}
	l4len += fb.payload
	ipLen := header.IPv4MinimumSize
	ext := 0
	if fb.v6 {
		ipLen = header.IPv6MinimumSize
		if fb.hopByHop {
			ext = 8
		}
	}
	b := make([]byte, header.EthernetMinimumSize+ipLen+ext+l4len)
	typ := header.IPv4ProtocolNumber
	if fb.v6 {
		typ = header.IPv6ProtocolNumber
	}
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: stackMAC, Type: typ})
	l3 := b[header.EthernetMinimumSize:]
	l4 := l3[ipLen+ext:]
	for i := range fb.payload {
		l4[len(l4)-fb.payload+i] = byte(i*7 + 3)
	}
	src, dst := v4Peer, v4Stack
	if fb.v6 {
		src, dst = v6Peer, v6Stack
		next := fb.proto
		if fb.hopByHop {
			next = tcpip.TransportProtocolNumber(header.IPv6HopByHopOptionsExtHdrIdentifier)
			l3[ipLen] = uint8(fb.proto) // next header
			l3[ipLen+1] = 0             // (0+1)*8 bytes
			l3[ipLen+2] = 1             // PadN
			l3[ipLen+3] = 4
		}
		header.IPv6(l3).Encode(&header.IPv6Fields{PayloadLength: uint16(ext + l4len), TransportProtocol: next, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		ip := header.IPv4(l3)
		f := header.IPv4Fields{TotalLength: uint16(ipLen + l4len), TTL: 64, Protocol: uint8(fb.proto), SrcAddr: src, DstAddr: dst}
		if fb.fragment {
			f.Flags = header.IPv4FlagMoreFragments
		}
		ip.Encode(&f)
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	switch fb.proto {
	case header.TCPProtocolNumber:
		tcp := header.TCP(l4)
		tcp.Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck})
		xsum := header.PseudoHeaderChecksum(fb.proto, src, dst, uint16(l4len))
		tcp.SetChecksum(^checksum.Checksum(l4, xsum))
	case header.UDPProtocolNumber:
		u := header.UDP(l4)
		u.Encode(&header.UDPFields{SrcPort: 1, DstPort: 2, Length: uint16(l4len)})
		xsum := header.PseudoHeaderChecksum(fb.proto, src, dst, uint16(l4len))
		u.SetChecksum(^checksum.Checksum(l4, xsum))
	default:
		l4[0] = 8 // echo request
		binaryPut16(l4[2:], ^checksum.Checksum(l4, 0))
	}
	return b
}

func binaryPut16(b []byte, v uint16) { b[0], b[1] = byte(v>>8), byte(v) }

// corrupt flips a bit in the last payload byte.
func corrupt(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)-1] ^= 0x10
	return c
}

func TestVerifyChecksums(t *testing.T) {
	tcp4 := frameBuilder{proto: header.TCPProtocolNumber, payload: 1000}.build()
	udp4 := frameBuilder{proto: header.UDPProtocolNumber, payload: 333}.build()
	udp6 := frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 100}.build()
	tcp6 := frameBuilder{v6: true, proto: header.TCPProtocolNumber, payload: 1}.build()
	hbh6 := frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 50, hopByHop: true}.build()
	icmp4 := frameBuilder{proto: header.ICMPv4ProtocolNumber, payload: 8}.build()
	frag4 := frameBuilder{proto: header.UDPProtocolNumber, payload: 64, fragment: true}.build()
	udp4zero := append([]byte(nil), udp4...)
	udp4zero[14+20+6], udp4zero[14+20+7] = 0, 0
	udp6zero := append([]byte(nil), udp6...)
	udp6zero[14+40+6], udp6zero[14+40+7] = 0, 0
	badIPHdr := append([]byte(nil), tcp4...)
	badIPHdr[14+8] ^= 1                                              // TTL
	padded := append(append([]byte(nil), udp4...), 0xff, 0xee, 0xdd) // Ethernet padding after the IP packet
	truncated := tcp4[:len(tcp4)-10]
	arp := make([]byte, 42)
	header.Ethernet(arp).Encode(&header.EthernetFields{Type: header.ARPProtocolNumber})

	for _, tc := range []struct {
		name  string
		frame []byte
		want  csumVerdict
	}{
		{"TCPv4 good", tcp4, csumGood},
		{"TCPv4 bad", corrupt(tcp4), csumBad},
		{"UDPv4 good", udp4, csumGood},
		{"UDPv4 bad", corrupt(udp4), csumBad},
		{"UDPv4 no checksum", udp4zero, csumGood},
		{"UDPv6 good", udp6, csumGood},
		{"UDPv6 bad", corrupt(udp6), csumBad},
		{"UDPv6 zero checksum is invalid", udp6zero, csumBad},
		{"TCPv6 odd length good", tcp6, csumGood},
		{"TCPv6 odd length bad", corrupt(tcp6), csumBad},
		{"IPv6 hop-by-hop then UDP", hbh6, csumGood},
		{"IPv6 hop-by-hop then UDP, bad", corrupt(hbh6), csumBad},
		{"IPv4 header checksum bad", badIPHdr, csumBad},
		{"ICMPv4: IP header checked, ICMP left to the stack", corrupt(icmp4), csumGood},
		{"IPv4 fragment of UDP: to the fragment checker", frag4, csumFragment},
		{"Ethernet padding ignored", padded, csumGood},
		{"truncated IP packet", truncated, csumMalformed},
		{"ARP", arp, csumNone},
		{"runt", tcp4[:10], csumNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fi fragInfo
			if got := verifyChecksums(tc.frame, nil, false, &fi); got != tc.want {
				t.Fatalf("verifyChecksums = %d, want %d", got, tc.want)
			}
			// The same verdict with the frame cut between the head and
			// tail views anywhere past the headers, odd offsets
			// included.
			for cut := 100; cut < len(tc.frame); cut += 37 {
				if got := verifyChecksums(tc.frame[:cut], tc.frame[cut:], false, &fi); got != tc.want {
					t.Fatalf("cut at %d: verifyChecksums = %d, want %d", cut, got, tc.want)
				}
			}
		})
	}
}

func TestRxSplitLen(t *testing.T) {
	tcp4 := frameBuilder{proto: header.TCPProtocolNumber, payload: 100}.build()
	udp6 := frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 100}.build()
	hbh6 := frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 100, hopByHop: true}.build()
	for _, tc := range []struct {
		name  string
		h     *vnetHdr
		frame []byte
		want  int
	}{
		{"TCPv4 parsed", nil, tcp4, 54},
		{"TCPv4 from csum_start", &vnetHdr{flags: vnetFNeedsCsum, csumStart: 34, csumOffset: 16}, tcp4, 54},
		{"UDPv6 parsed", &vnetHdr{}, udp6, 62},
		{"UDPv6 hop-by-hop from csum_start", &vnetHdr{flags: vnetFNeedsCsum, csumStart: 62, csumOffset: 6}, hbh6, 70},
		{"UDPv6 hop-by-hop parsed", nil, hbh6, 70},
		{"csum_start disagrees with the headers", &vnetHdr{flags: vnetFNeedsCsum, csumStart: 54, csumOffset: 6}, hbh6, 0},
		{"headers only", &vnetHdr{flags: vnetFNeedsCsum, csumStart: 34, csumOffset: 16}, tcp4[:54], 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rxSplitLen(tc.h, tc.frame, len(tc.frame)); got != tc.want {
				t.Fatalf("rxSplitLen = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestUSOHeader(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		f := frameBuilder{v6: v6, proto: header.UDPProtocolNumber, payload: 2500}.build()
		l4 := 34
		if v6 {
			l4 = 54
		}
		hdr := append([]byte(nil), f[:l4+8]...)
		if n := usoSegments(2500, 1000); n != 3 {
			t.Fatalf("usoSegments = %d, want 3", n)
		}
		if !usoHeader(hdr, l4, 2, 500) {
			t.Fatalf("usoHeader failed")
		}
		// Rebuild datagram 2 (500 bytes) and check it with the checksum
		// completed as a device would.
		dgram := append(hdr, f[l4+8+2000:]...)
		completePartial(dgram, l4, udpCsumOffset)
		if ok, err := checkFrameChecksums(dgram); !ok || err != nil {
			t.Fatalf("v6=%v: datagram 2: ok=%v err=%v", v6, ok, err)
		}
		if got := header.UDP(dgram[l4:]).Length(); got != 508 {
			t.Fatalf("UDP length %d, want 508", got)
		}
		if !v6 {
			orig, seg := header.IPv4(f[14:]), header.IPv4(dgram[14:])
			if seg.ID() != orig.ID()+2 || seg.TotalLength() != 20+508 {
				t.Fatalf("IPv4 id %d total %d; want %d and %d", seg.ID(), seg.TotalLength(), orig.ID()+2, 528)
			}
		}
	}
	if usoHeader(make([]byte, 20), 34, 0, 10) {
		t.Fatal("usoHeader accepted a short header")
	}
}

func TestSliceViews(t *testing.T) {
	a := buffer.NewViewWithData([]byte("0123456789"))
	b := buffer.NewViewWithData([]byte("abcdefghij"))
	defer a.Release()
	defer b.Release()
	for _, tc := range []struct {
		off, n int
		want   string
	}{{0, 10, "0123456789"}, {8, 4, "89ab"}, {10, 3, "abc"}, {15, 5, "fghij"}, {3, 0, ""}} {
		vs := sliceViews(nil, []*buffer.View{a, b}, tc.off, tc.n)
		var got []byte
		for _, v := range vs {
			got = append(got, v.AsSlice()...)
			v.Release()
		}
		if string(got) != tc.want {
			t.Errorf("sliceViews(%d, %d) = %q, want %q", tc.off, tc.n, got, tc.want)
		}
	}
}

// fuzzLink is a link with one queue and no descriptor, for driving the
// receive path directly.
func fuzzLink(tb testing.TB, d stack.NetworkDispatcher) *queue {
	r, err := (&Config{Queues: 1, LinkAddress: []byte(stackMAC)}).resolve(0)
	if err != nil {
		tb.Fatal(err)
	}
	l := &Link{vnet: true, headView: r.headView, tailView: true, copyBreak: copyBreak}
	l.mtu.Store(1500)
	mac := stackMAC
	l.mac.Store(&mac)
	l.dispatch.Store(&dispatcherBox{d})
	q := &queue{link: l}
	l.queues = []*queue{q}
	// What the reader does when it stops: return the spare views and
	// drop the held fragments.
	tb.Cleanup(q.rx.release)
	return q
}

// inject places b (virtio-net header and frame) into q's receive views as
// readv would (the iovecs point at exactly these), and runs the receive path
// on it.
func inject(q *queue, b []byte) {
	q.rx.refill(q.link)
	n := copy(q.rx.vnet[:], b)
	n += copy(q.rx.head.AsSlice(), b[n:])
	n += copy(q.rx.tail.AsSlice(), b[n:])
	q.handleFrame(n)
}

// FuzzVnetHeader feeds arbitrary virtio-net headers and frames through the
// whole receive path (validation, verification, split, USO segmentation,
// delivery) and checks that nothing panics, every frame is counted, the
// encoding round-trips, and no more than the headers is copied.
func FuzzVnetHeader(f *testing.F) {
	tcp4 := frameBuilder{proto: header.TCPProtocolNumber, payload: 3000}.build()
	udp4 := frameBuilder{proto: header.UDPProtocolNumber, payload: 2100}.build()
	udp6 := frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 900}.build()
	f.Add(withVnet(vnetHdr{}, tcp4))
	f.Add(withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 16, hdrLen: 54}, tcp4))
	f.Add(withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: 700, csumStart: 34, csumOffset: 6}, udp4))
	f.Add(withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: 1, csumStart: 54, csumOffset: 6}, udp6))
	f.Add(withVnet(vnetHdr{flags: vnetFDataValid}, corrupt(udp6)))
	f.Add([]byte{1, 2, 3})
	d := &countingDispatcher{}
	q := fuzzLink(f, d)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h vnetHdr
		if err := h.decode(b); err != nil {
			if len(b) >= VnetHdrLen {
				t.Fatalf("decode of %d bytes: %v", len(b), err)
			}
		} else {
			var enc [VnetHdrLen]byte
			h.encode(enc[:])
			if !bytes.Equal(enc[:], b[:VnetHdrLen]) {
				t.Fatalf("encode(decode(b)) = % x, want % x", enc, b[:VnetHdrLen])
			}
			frame := b[VnetHdrLen:]
			if n := rxSplitLen(&h, frame, len(frame)); n < 0 || (n > 0 && (n >= len(frame) || n > link.MaxSplitHeader)) {
				t.Fatalf("rxSplitLen = %d for a %d-byte frame", n, len(frame))
			}
		}
		if len(b) > VnetHdrLen+maxHeadView+buffer.MaxChunkSize {
			return // more than one read can return
		}
		before := q.c.rxFrames.Load()
		copied := q.c.rxCopied.Load()
		dgramsBefore := q.c.rxUSODatagrams.Load()
		reasmBefore := q.c.fragReassembled.Load()
		inject(q, b)
		if got := q.c.rxFrames.Load(); got != before+1 {
			t.Fatalf("frames counted %d → %d, want +1", before, got)
		}
		if q.c.fragReassembled.Load() != reasmBefore {
			// This frame completed a datagram whose earlier fragments
			// (earlier inputs) the reassembly copies when small: that
			// copy is counted here, and held by TestSmallFragmentsCopied.
			return
		}
		// Headers only: at most maxSplitHeader per delivered datagram.
		dgrams := max(q.c.rxUSODatagrams.Load()-dgramsBefore, 1)
		if c := q.c.rxCopied.Load() - copied; c > link.MaxSplitHeader*dgrams {
			t.Fatalf("copied %d bytes", c)
		}
	})
}

// TestTCPSegmentWalksExtensionHeaders checks that the admission sees a TCP
// segment behind an IPv6 hop-by-hop header, where the receive checks and
// the header split find it too.
func TestTCPSegmentWalksExtensionHeaders(t *testing.T) {
	f := frameBuilder{v6: true, proto: header.TCPProtocolNumber, payload: 10, hopByHop: true}.build()
	flags, payload, l4off, ok := tcpSegment(f, len(f))
	if !ok || !payload || l4off != 14+40+8 {
		t.Fatalf("tcpSegment = %v, %v, %d, %v", flags, payload, l4off, ok)
	}
	if got := rxSplitLen(nil, f, len(f)); got != l4off+header.TCPMinimumSize {
		t.Fatalf("split at %d, want %d", got, l4off+header.TCPMinimumSize)
	}
	if _, _, _, ok := tcpSegment(f[:l4off+10], len(f)); ok {
		t.Fatal("a TCP header past the bytes at hand was read")
	}
}
