package frame

import (
	"encoding/binary"
	"errors"
	"testing"
)

// build returns an Ethernet frame: IPv4 or IPv6, the extension headers ext
// (IPv6 only, each given as its bytes with the next-header byte filled in
// here), a transport header l4 of protocol proto, and payload bytes.
func build(v6 bool, proto uint8, ext [][]byte, extProto []uint8, l4 []byte, payload int) []byte {
	var b []byte
	b = append(b, make([]byte, 12)...)
	if !v6 {
		b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)+payload))
		ip[8], ip[9] = 64, proto
		copy(ip[12:], []byte{192, 0, 2, 1, 192, 0, 2, 2})
		b = append(b, ip...)
	} else {
		b = binary.BigEndian.AppendUint16(b, EtherTypeIPv6)
		ip := make([]byte, 40)
		ip[0] = 0x60
		n := len(l4) + payload
		for _, e := range ext {
			n += len(e)
		}
		binary.BigEndian.PutUint16(ip[4:], uint16(n))
		ip[6], ip[7] = proto, 64
		if len(ext) > 0 {
			ip[6] = extProto[0]
		}
		ip[8], ip[9], ip[23] = 0x20, 0x01, 1
		ip[24], ip[25], ip[39] = 0x20, 0x01, 2
		b = append(b, ip...)
		for i, e := range ext {
			e = append([]byte(nil), e...)
			if i+1 < len(ext) {
				e[0] = extProto[i+1]
			} else {
				e[0] = proto
			}
			b = append(b, e...)
		}
	}
	b = append(b, l4...)
	return append(b, make([]byte, payload)...)
}

func tcpHdr(sport, dport uint16, seq, ack uint32, flags uint8, optLen int) []byte {
	h := make([]byte, 20+optLen)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	binary.BigEndian.PutUint32(h[8:], ack)
	h[12] = byte((20+optLen)/4) << 4
	h[13] = flags
	return h
}

func udpHdr(sport, dport uint16) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	return h
}

var (
	hbh      = []byte{0, 0, 1, 4, 0, 0, 0, 0}                   // hop-by-hop, 8 bytes (PadN)
	dst16    = append([]byte{0, 1, 1, 12}, make([]byte, 12)...) // destination options, 16 bytes
	route0   = []byte{0, 0, 0, 0, 0, 0, 0, 0}                   // routing, no segments left
	route1   = []byte{0, 0, 0, 1, 0, 0, 0, 0}                   // routing, a segment left
	atomic   = []byte{0, 0, 0, 0, 0, 0, 0, 9}                   // fragment header, offset 0, M clear
	fragMore = []byte{0, 0, 0, 1, 0, 0, 0x12, 0x34}             // fragment, offset 0, M set, id 0x1234
	fragLast = []byte{0, 0, 0x05, 0x78, 0, 0, 0, 7}             // fragment, offset 175*8, M clear, id 7
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		err   error
		want  Repr // the fields compared (see check)
	}{
		{"TCPv4", build(false, ProtoTCP, nil, nil, tcpHdr(40000, 80, 1000, 2000, 0x18, 12), 100), nil,
			Repr{Depth: DepthTransport, IPVersion: 4, IPHdrLen: 20, IPEnd: 14 + 20 + 32 + 100, Proto: ProtoTCP, L4Off: 34,
				SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000, TCPFlags: 0x18, L4HdrLen: 32, PayloadOff: 66, PayloadLen: 100}},
		{"UDPv4", build(false, ProtoUDP, nil, nil, udpHdr(5353, 53), 10), nil,
			Repr{Depth: DepthTransport, IPVersion: 4, IPHdrLen: 20, IPEnd: 14 + 20 + 8 + 10, Proto: ProtoUDP, L4Off: 34,
				SrcPort: 5353, DstPort: 53, L4HdrLen: 8, PayloadOff: 42, PayloadLen: 10}},
		{"ICMPv4", build(false, ProtoICMP, nil, nil, []byte{8, 0, 0, 0, 0, 1, 0, 1}, 0), nil,
			Repr{Depth: DepthTransport, IPVersion: 4, IPHdrLen: 20, IPEnd: 42, Proto: ProtoICMP, L4Off: 34,
				ICMPType: 8, L4HdrLen: 4, PayloadOff: 38, PayloadLen: 4}},
		{"TCPv6", build(true, ProtoTCP, nil, nil, tcpHdr(1, 2, 3, 4, 0x10, 0), 5), nil,
			Repr{Depth: DepthTransport, IPVersion: 6, IPHdrLen: 40, IPEnd: 54 + 25, Proto: ProtoTCP, L4Off: 54,
				SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, TCPFlags: 0x10, L4HdrLen: 20, PayloadOff: 74, PayloadLen: 5}},
		{"UDPv6 hop-by-hop, dest opts, routing done, atomic fragment",
			build(true, ProtoUDP, [][]byte{hbh, dst16, route0, atomic}, []uint8{0, 60, 43, 44}, udpHdr(7, 9), 3), nil,
			Repr{Depth: DepthTransport, IPVersion: 6, IPHdrLen: 40, ExtLen: 40, IPEnd: 54 + 40 + 8 + 3, Proto: ProtoUDP, L4Off: 94,
				SrcPort: 7, DstPort: 9, L4HdrLen: 8, PayloadOff: 102, PayloadLen: 3}},
		{"IPv6 first fragment", build(true, ProtoUDP, [][]byte{fragMore}, []uint8{44}, udpHdr(7, 9), 16), nil,
			Repr{Depth: DepthNetwork, IPVersion: 6, IPHdrLen: 40, IPEnd: 54 + 8 + 8 + 16, Proto: ProtoUDP, L4Off: 62,
				Fragment: true, MoreFrags: true, FragID: 0x1234}},
		{"IPv6 last fragment", build(true, ProtoTCP, [][]byte{hbh, fragLast}, []uint8{0, 44}, nil, 16), nil,
			Repr{Depth: DepthNetwork, IPVersion: 6, IPHdrLen: 40, ExtLen: 8, IPEnd: 54 + 16 + 16, Proto: ProtoTCP, L4Off: 70,
				Fragment: true, FragID: 7, FragOff: 175 * 8}},
		{"IPv6 routing with a segment left", build(true, ProtoTCP, [][]byte{route1}, []uint8{43}, nil, 16), nil,
			Repr{Depth: DepthNetwork, IPVersion: 6, IPHdrLen: 40, IPEnd: 54 + 8 + 16, Proto: 43, L4Off: 54, Routed: true}},
		{"IPv6 ESP ends the walk", build(true, 50, nil, nil, nil, 16), nil,
			Repr{Depth: DepthNetwork, IPVersion: 6, IPHdrLen: 40, IPEnd: 54 + 16, Proto: 50, L4Off: 54}},
		{"ARP", append(binary.BigEndian.AppendUint16(make([]byte, 12), 0x0806), make([]byte, 28)...), nil,
			Repr{Depth: DepthLink}},
		{"runt", make([]byte, 13), ErrTruncated, Repr{}},
		{"IPv4 truncated", build(false, ProtoTCP, nil, nil, tcpHdr(1, 2, 0, 0, 0, 0), 10)[:60], ErrTruncated, Repr{Depth: DepthLink}},
		{"IPv6 truncated", build(true, ProtoTCP, nil, nil, tcpHdr(1, 2, 0, 0, 0, 0), 10)[:80], ErrTruncated, Repr{Depth: DepthLink}},
		{"TCP header past the packet", build(true, ProtoTCP, [][]byte{dst16}, []uint8{60}, nil, 0), ErrTruncated,
			Repr{Depth: DepthNetwork, IPVersion: 6, IPHdrLen: 40, ExtLen: 16, IPEnd: 70, Proto: ProtoTCP, L4Off: 70}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Repr
			err := r.Parse(tc.frame)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse = %v, want %v", err, tc.err)
			}
			check(t, &r, &tc.want)
		})
	}
}

// check compares the fields of got that want describes (FrameLen and the
// addresses are checked by the caller).
func check(t *testing.T, got, want *Repr) {
	t.Helper()
	g := *got
	g.FrameLen, g.EtherType = 0, 0
	g.Src, g.Dst = [16]byte{}, [16]byte{}
	if g != *want {
		t.Fatalf("parsed\n%+v\nwant\n%+v", g, *want)
	}
}

func TestIPv6ExtensionWithFixedHeaderOnlySplitStillParses(t *testing.T) {
	// A hop-by-hop header whose length byte says 16 bytes but the packet
	// holds 8: truncated, and the Repr keeps the IP layer.
	f := build(true, ProtoUDP, [][]byte{hbh}, []uint8{0}, nil, 0)
	f[55] = 1
	var r Repr
	if err := r.Parse(f); !errors.Is(err, ErrTruncated) || r.Depth != DepthIP {
		t.Fatalf("Parse = %v at depth %d", err, r.Depth)
	}
}

func TestAddresses(t *testing.T) {
	var r Repr
	if err := r.Parse(build(false, ProtoUDP, nil, nil, udpHdr(1, 2), 0)); err != nil {
		t.Fatal(err)
	}
	if r.SrcAddr().String() != "192.0.2.1" || r.DstAddr().String() != "192.0.2.2" {
		t.Fatalf("addresses %v -> %v", r.SrcAddr(), r.DstAddr())
	}
	if err := r.Parse(build(true, ProtoUDP, nil, nil, udpHdr(1, 2), 0)); err != nil {
		t.Fatal(err)
	}
	if r.SrcAddr().String() != "2001::1" || r.DstAddr().String() != "2001::2" {
		t.Fatalf("addresses %v -> %v", r.SrcAddr(), r.DstAddr())
	}
}

func TestBadHeaders(t *testing.T) {
	tcp4 := func() []byte { return build(false, ProtoTCP, nil, nil, tcpHdr(1, 2, 0, 0, 0, 0), 10) }
	for _, tc := range []struct {
		name  string
		mod   func(f []byte)
		err   error
		depth Depth
	}{
		{"IPv4 version", func(f []byte) { f[14] = 0x55 }, ErrBadHeader, DepthLink},
		{"IPv4 header length below 20", func(f []byte) { f[14] = 0x44 }, ErrBadHeader, DepthLink},
		{"IPv4 total length below the header", func(f []byte) { binary.BigEndian.PutUint16(f[16:], 19) }, ErrBadHeader, DepthLink},
		{"IPv4 total length past the frame", func(f []byte) { binary.BigEndian.PutUint16(f[16:], 1000) }, ErrTruncated, DepthLink},
		{"IPv4 total length too short for TCP", func(f []byte) { binary.BigEndian.PutUint16(f[16:], 30) }, ErrTruncated, DepthNetwork},
		{"TCP data offset below 20", func(f []byte) { f[46] = 4 << 4 }, ErrBadHeader, DepthNetwork},
		{"TCP data offset past the packet", func(f []byte) { f[46] = 15 << 4 }, ErrBadHeader, DepthNetwork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tcp4()
			tc.mod(f)
			var r Repr
			if err := r.Parse(f); !errors.Is(err, tc.err) || r.Depth != tc.depth {
				t.Fatalf("Parse = %v at depth %d, want %v at %d", err, r.Depth, tc.err, tc.depth)
			}
		})
	}
	var r Repr
	f := build(true, ProtoTCP, nil, nil, tcpHdr(1, 2, 0, 0, 0, 0), 0)
	f[14] = 0x40
	if err := r.Parse(f); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("IPv6 with version 4: %v", err)
	}
}

func TestFragmentsIPv4(t *testing.T) {
	f := build(false, ProtoUDP, nil, nil, udpHdr(1, 2), 24)
	binary.BigEndian.PutUint16(f[18:], 0xbeef)
	binary.BigEndian.PutUint16(f[20:], 0x2000|3) // MF, offset 24
	var r Repr
	if err := r.Parse(f); err != nil {
		t.Fatal(err)
	}
	want := Repr{Depth: DepthNetwork, IPVersion: 4, IPHdrLen: 20, IPEnd: len(f), Proto: ProtoUDP, L4Off: 34,
		Fragment: true, MoreFrags: true, FragID: 0xbeef, FragOff: 24}
	check(t, &r, &want)
	// Don't Fragment alone is not a fragment.
	binary.BigEndian.PutUint16(f[20:], 0x4000)
	if err := r.Parse(f); err != nil || r.Fragment || r.Depth != DepthTransport {
		t.Fatalf("DF: %v, %+v", err, r)
	}
}

// TestParseHead checks the two ends ParseHead tells apart: the frame's
// (ErrTruncated) and the bytes at hand's (ErrBeyondHead).
func TestParseHead(t *testing.T) {
	f := build(true, ProtoTCP, [][]byte{hbh, dst16}, []uint8{0, 60}, tcpHdr(1, 2, 0, 0, 0, 12), 500)
	var r Repr
	for cut := 0; cut <= len(f); cut++ {
		err := r.ParseHead(f[:cut], len(f))
		switch {
		case cut < 14+40+8+8: // the walk reads each extension header's first 8 bytes
			if !errors.Is(err, ErrBeyondHead) {
				t.Fatalf("cut %d: %v", cut, err)
			}
		case cut < 14+40+24+32:
			if !errors.Is(err, ErrBeyondHead) || r.Depth < DepthIP {
				t.Fatalf("cut %d: %v at depth %d", cut, err, r.Depth)
			}
		default:
			if err != nil || r.PayloadOff != 110 || r.PayloadLen != 500 || r.FrameLen != len(f) {
				t.Fatalf("cut %d: %v, %+v", cut, err, r)
			}
		}
	}
	// Headers alone, of a frame of unknown length.
	if err := r.ParseHeaders(f[:110]); err != nil || r.PayloadOff != 110 || r.PayloadLen != 500 {
		t.Fatalf("ParseHeaders: %v, %+v", err, r)
	}
}

func TestWalkIPv6Ext(t *testing.T) {
	b := append(append(append([]byte(nil), hbh...), route0...), fragMore...)
	b[0], b[8], b[16] = 43, 44, ProtoUDP
	w, err := WalkIPv6Ext(b, 0, 0, len(b)+100)
	if err != nil || w != (Ext{44, 16, ExtFragment}) {
		t.Fatalf("walk = %+v, %v", w, err)
	}
	if _, err := WalkIPv6Ext(b, 0, 0, 12); !errors.Is(err, ErrTruncated) {
		t.Fatalf("end inside the first header: %v", err)
	}
	if _, err := WalkIPv6Ext(b[:12], 0, 0, 100); !errors.Is(err, ErrBeyondHead) {
		t.Fatalf("b ends inside the second header: %v", err)
	}
	if w, err := WalkIPv6Ext(nil, ProtoTCP, 3, 3); err != nil || w != (Ext{ProtoTCP, 3, ExtDone}) {
		t.Fatalf("TCP: %+v, %v", w, err)
	}
}
