package tap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link/frame"
)

// Frame builders for fragments and IPv6 extension headers, independent of
// the code under test (gVisor's header package only).

// udpDatagram returns a UDP datagram (header and n payload bytes) from the
// peer's port 4000 to the stack's port 7 whose checksum is right for the
// test addresses, or wrong (never zero, which IPv4 reads as "none").
func udpDatagram(v6 bool, n int, seed byte, bad bool) []byte {
	src, dst := v4Peer, v4Stack
	if v6 {
		src, dst = v6Peer, v6Stack
	}
	b := make([]byte, header.UDPMinimumSize+n)
	u := header.UDP(b)
	u.Encode(&header.UDPFields{SrcPort: 4000, DstPort: 7, Length: uint16(len(b))})
	for i := range n {
		b[header.UDPMinimumSize+i] = seed + byte(i*13)
	}
	xsum := ^checksum.Checksum(b, header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(b))))
	if xsum == 0 {
		xsum = 0xffff
	}
	if bad {
		xsum ^= 0x0101
		if xsum == 0 {
			xsum = 0x0202
		}
	}
	u.SetChecksum(xsum)
	return b
}

// piece is one fragment: size bytes at offset off of the fragmentable part.
type piece struct {
	off, size int
	more      bool
}

// split8 cuts total bytes into fragments of size bytes (a multiple of 8).
func split8(total, size int) []piece {
	var out []piece
	for off := 0; off < total; off += size {
		n := min(size, total-off)
		out = append(out, piece{off, n, off+n < total})
	}
	return out
}

// ethFrame returns an Ethernet frame from the peer to the stack with room
// for n bytes of network packet.
func ethFrame(typ tcpip.NetworkProtocolNumber, n int) []byte {
	b := make([]byte, header.EthernetMinimumSize+n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: stackMAC, Type: typ})
	return b
}

// frags4 returns one IPv4 frame per piece of payload.
func frags4(proto tcpip.TransportProtocolNumber, id uint16, payload []byte, pieces []piece) [][]byte {
	var out [][]byte
	for _, p := range pieces {
		b := ethFrame(header.IPv4ProtocolNumber, header.IPv4MinimumSize+p.size)
		ip := header.IPv4(b[header.EthernetMinimumSize:])
		f := header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + p.size), ID: id, FragmentOffset: uint16(p.off),
			TTL: 64, Protocol: uint8(proto), SrcAddr: v4Peer, DstAddr: v4Stack}
		if p.more {
			f.Flags = header.IPv4FlagMoreFragments
		}
		ip.Encode(&f)
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(ip[header.IPv4MinimumSize:], payload[p.off:p.off+p.size])
		out = append(out, b)
	}
	return out
}

// v6Frame returns an IPv6 frame whose payload is rest, the first header of
// which next names.
func v6Frame(next uint8, rest []byte) []byte {
	b := ethFrame(header.IPv6ProtocolNumber, header.IPv6MinimumSize+len(rest))
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{PayloadLength: uint16(len(rest)),
		TransportProtocol: tcpip.TransportProtocolNumber(next), HopLimit: 64, SrcAddr: v6Peer, DstAddr: v6Stack})
	copy(b[header.EthernetMinimumSize+header.IPv6MinimumSize:], rest)
	return b
}

// fragHdr6 returns an IPv6 fragment header.
func fragHdr6(next uint8, off int, more bool, id uint32) []byte {
	h := make([]byte, header.IPv6FragmentHeaderSize)
	h[0] = next
	v := uint16(off) &^ 7
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(h[2:], v)
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

// frags6 returns one IPv6 frame per piece of payload (the fragmentable
// part, whose first header next names).
func frags6(next uint8, id uint32, payload []byte, pieces []piece) [][]byte {
	var out [][]byte
	for _, p := range pieces {
		rest := append(fragHdr6(next, p.off, p.more, id), payload[p.off:p.off+p.size]...)
		out = append(out, v6Frame(uint8(header.IPv6FragmentExtHdrIdentifier), rest))
	}
	return out
}

// frags6HBH is frags6 with a hop-by-hop options header before each
// fragment header (in the unfragmentable part).
func frags6HBH(next uint8, id uint32, payload []byte, pieces []piece) [][]byte {
	var out [][]byte
	for _, p := range pieces {
		rest := cat(optsHdr(extFrag), fragHdr6(next, p.off, p.more, id), payload[p.off:p.off+p.size])
		out = append(out, v6Frame(extHBH, rest))
	}
	return out
}

// whole4 returns the unfragmented IPv4 frame that frags4 cuts up.
func whole4(proto tcpip.TransportProtocolNumber, id uint16, payload []byte) []byte {
	return frags4(proto, id, payload, []piece{{0, len(payload), false}})[0]
}

// optsHdr returns a hop-by-hop or destination options header of 8 bytes
// (one PadN option).
func optsHdr(next uint8) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }

// routingHdr returns a routing header of routing type typ with one address
// and segsLeft segments left (RFC 8200 §4.4).
func routingHdr(next, typ, segsLeft uint8) []byte {
	h := make([]byte, 24)
	h[0], h[1], h[2], h[3] = next, 2, typ, segsLeft
	copy(h[8:], v6Stack.AsSlice())
	return h
}

// cat concatenates byte slices.
func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

const (
	protoUDP  = uint8(header.UDPProtocolNumber)
	extHBH    = uint8(header.IPv6HopByHopOptionsExtHdrIdentifier)
	extDst    = uint8(header.IPv6DestinationOptionsExtHdrIdentifier)
	extRoute  = uint8(header.IPv6RoutingExtHdrIdentifier)
	extFrag   = uint8(header.IPv6FragmentExtHdrIdentifier)
	extExperi = uint8(header.IPv6ExperimentExtHdrIdentifier)
)

func TestVerifyChecksumsIPv6Extensions(t *testing.T) {
	good, bad := udpDatagram(true, 100, 1, false), udpDatagram(true, 100, 1, true)
	for _, tc := range []struct {
		name    string
		frame   []byte
		vouched bool
		want    csumVerdict
	}{
		{"routing, type 253, segments left 0, good", v6Frame(extRoute, cat(routingHdr(protoUDP, 253, 0), good)), false, csumGood},
		{"routing, type 253, segments left 0, bad", v6Frame(extRoute, cat(routingHdr(protoUDP, 253, 0), bad)), false, csumBad},
		{"routing after hop-by-hop, bad", v6Frame(extHBH, cat(optsHdr(extRoute), routingHdr(protoUDP, 0, 0), bad)), false, csumBad},
		{"routing with segments left: the stack discards it", v6Frame(extRoute, cat(routingHdr(protoUDP, 253, 1), bad)), false, csumNone},
		{"atomic fragment, good", v6Frame(extFrag, cat(fragHdr6(protoUDP, 0, false, 9), good)), false, csumGood},
		{"atomic fragment, bad", v6Frame(extFrag, cat(fragHdr6(protoUDP, 0, false, 9), bad)), false, csumBad},
		{"experiment header, bad", v6Frame(extExperi, cat([]byte{protoUDP, 7, 0, 0, 0, 0, 0, 0}, bad)), false, csumBad},
		{"destination options then UDP, bad", v6Frame(extDst, cat(optsHdr(protoUDP), bad)), false, csumBad},
		{"fragment", v6Frame(extFrag, cat(fragHdr6(protoUDP, 0, true, 9), good[:64])), false, csumFragment},
		{"fragment after destination options", v6Frame(extDst, cat(optsHdr(extFrag), fragHdr6(protoUDP, 64, false, 9), good[64:])), false, csumFragment},
		{"fragment, vouched for", v6Frame(extFrag, cat(fragHdr6(protoUDP, 8, false, 9), good[8:])), true, csumFragment},
		{"ICMPv6 fragment: still held (only the first fragment names the transport)", v6Frame(extFrag, cat(fragHdr6(58, 0, true, 9), good[:64])), false, csumFragment},
		{"fragment, MF and 13 bytes: malformed", v6Frame(extFrag, cat(fragHdr6(protoUDP, 0, true, 9), good[:13])), false, csumMalformed},
		{"fragment past 65535: malformed", v6Frame(extFrag, cat(fragHdr6(protoUDP, 65528, false, 9), good[:64])), false, csumMalformed},
		{"fragment without data: malformed", v6Frame(extFrag, fragHdr6(protoUDP, 8, false, 9)), false, csumMalformed},
		{"extension header past the packet", v6Frame(extDst, []byte{protoUDP, 3, 1, 4, 0, 0, 0, 0}), false, csumMalformed},
		{"bad UDP, vouched for", v6Frame(extDst, cat(optsHdr(protoUDP), bad)), true, csumNone},
		{"bad UDP, no extension headers, vouched for", v6Frame(protoUDP, bad), true, csumNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fi fragInfo
			if got := verifyChecksums(tc.frame, nil, tc.vouched, &fi); got != tc.want {
				t.Fatalf("verifyChecksums = %d, want %d", got, tc.want)
			}
		})
	}

	// The headers that locate the checksum lie past the first view: the
	// frame is dropped, not passed on unchecked.
	long := v6Frame(extDst, cat([]byte{extDst, 63, 1, 254}, make([]byte, 508), optsHdr(protoUDP), bad))
	var fi fragInfo
	if got := verifyChecksums(long[:300], long[300:], false, &fi); got != csumUncheckable {
		t.Fatalf("headers past the head view: %d, want csumUncheckable", got)
	}
	if got := verifyChecksums(long, nil, false, &fi); got != csumBad {
		t.Fatalf("the same frame in one view: %d, want csumBad", got)
	}

	// The fragment's description.
	f := v6Frame(extDst, cat(optsHdr(extFrag), fragHdr6(protoUDP, 64, true, 0xdeadbeef), good[:48]))
	if got := verifyChecksums(f, nil, false, &fi); got != csumFragment {
		t.Fatalf("verdict %d", got)
	}
	want := fragInfo{key: fragKey{src: v6Peer, dst: v6Stack, id: 0xdeadbeef, v6: true}, data: 14 + 40 + 8 + 8, size: 48, off: 64, more: true, next: protoUDP}
	if fi != want {
		t.Fatalf("fragInfo %+v, want %+v", fi, want)
	}
}

func TestVerifyChecksumsIPv4Vouched(t *testing.T) {
	udp := udpDatagram(false, 64, 3, true) // wrong UDP checksum: the header vouches for it
	whole := frags4(header.UDPProtocolNumber, 1, udp, []piece{{0, len(udp), false}})[0]
	badHdr := append([]byte(nil), whole...)
	badHdr[14+8] ^= 1 // TTL, so the header checksum is wrong
	frag := frags4(header.UDPProtocolNumber, 2, udp, []piece{{0, 64, true}})[0]
	icmpFrag := frags4(header.ICMPv4ProtocolNumber, 3, udp, []piece{{0, 64, true}})[0]
	odd := frags4(header.UDPProtocolNumber, 4, udp, []piece{{0, 13, true}})[0]
	for _, tc := range []struct {
		name    string
		frame   []byte
		vouched bool
		want    csumVerdict
	}{
		{"NEEDS_CSUM or DATA_VALID, header right", whole, true, csumNone},
		{"NEEDS_CSUM or DATA_VALID, header checksum wrong", badHdr, true, csumBad},
		{"vouched-for fragment: still checked whole", frag, true, csumFragment},
		{"ICMP fragment: reassembled by the link too", icmpFrag, false, csumFragment},
		{"MF with 13 bytes: malformed, the stack drops it", odd, false, csumMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fi fragInfo
			if got := verifyChecksums(tc.frame, nil, tc.vouched, &fi); got != tc.want {
				t.Fatalf("verifyChecksums = %d, want %d", got, tc.want)
			}
		})
	}
}

// fragHarness drives a fragment checker directly, on a clock the test
// moves.
type fragHarness struct {
	t     *testing.T
	c     counters
	fc    fragChecker
	clock time.Time
	// copied counts the bytes build copied.
	copied int
}

func newFragHarness(t *testing.T, lim fragLimits) *fragHarness {
	h := &fragHarness{t: t, clock: time.Unix(1000, 0)}
	h.fc.initWith(&h.c, lim, func() time.Time { return h.clock }, false)
	t.Cleanup(h.fc.release)
	return h
}

// feed hands frame to the checker, split between a head and a tail view at
// cut (0: one view), and returns the datagram it completes, if any, as the
// frame build makes of it. It checks what build hands the payload hook:
// views that tile the transport payload in order, behind headers that
// parse.
func (h *fragHarness) feed(fr []byte, cut int) [][]byte {
	h.t.Helper()
	head, tail := fr, []byte(nil)
	if cut > 0 && cut < len(fr) {
		head, tail = fr[:cut], fr[cut:]
	}
	var fi fragInfo
	if v := verifyChecksums(head, tail, false, &fi); v != csumFragment {
		h.t.Fatalf("verdict %d for a fragment", v)
	}
	hv := buffer.NewViewWithData(head)
	var tv *buffer.View
	if tail != nil {
		tv = buffer.NewViewWithData(tail)
	}
	d := h.fc.add(hv, tv, &fi)
	if d == nil {
		return nil
	}
	type hooked struct {
		b   []byte
		off int
	}
	var seen []hooked
	var hdr []byte
	hook := func(hb []byte, v *buffer.View, off int) {
		hdr = hb
		seen = append(seen, hooked{v.AsSlice(), off})
	}
	nfrags := len(d.frags)
	buf, copied := d.build(hook)
	if d.frags != nil || nfrags == 0 {
		h.t.Fatalf("build left %d fragments", len(d.frags))
	}
	b := buf.Flatten()
	buf.Release()
	if copied <= header.EthernetMinimumSize || copied > len(b) {
		h.t.Fatalf("build copied %d bytes of a %d-byte frame", copied, len(b))
	}
	viewed := 0
	if seen != nil {
		var r frame.Repr
		if err := r.ParseHeaders(hdr); err != nil || r.Depth < frame.DepthTransport || r.Fragment {
			h.t.Fatalf("hook's headers: %v, depth %d, fragment %v", err, r.Depth, r.Fragment)
		}
		for _, s := range seen {
			if !bytes.Equal(s.b, b[r.PayloadOff+s.off:][:len(s.b)]) {
				h.t.Fatalf("hook: the view at payload offset %d differs from the packet", s.off)
			}
			viewed += len(s.b)
		}
		if r.PayloadOff != len(hdr) {
			h.t.Fatalf("hook's headers are %d bytes, the packet's %d", len(hdr), r.PayloadOff)
		}
	}
	// Every byte is copied or handed to the hook as received memory
	// (UDP and TCP), and only fragments under the copy-break are copied.
	if d.proto == protoUDP || d.proto == uint8(header.TCPProtocolNumber) {
		if copied+viewed != len(b) {
			h.t.Fatalf("copied %d + viewed %d bytes of a %d-byte frame", copied, viewed, len(b))
		}
	}
	h.copied += copied
	return [][]byte{b}
}

// feedAll feeds frames in the order given and returns what came back.
func (h *fragHarness) feedAll(frames [][]byte, order []int, cut int) [][]byte {
	h.t.Helper()
	var out [][]byte
	for _, i := range order {
		out = append(out, h.feed(frames[i], cut)...)
	}
	return out
}

// expectHeld fails unless the checker holds n datagrams (and, with n == 0,
// no bytes).
func (h *fragHarness) expectHeld(n int) {
	h.t.Helper()
	d, _, mem := h.fc.held()
	if d != n || n == 0 && mem != 0 {
		h.t.Fatalf("holds %d datagrams (%d bytes), want %d", d, mem, n)
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func reversed(n int) []int {
	s := seq(n)
	sort.Sort(sort.Reverse(sort.IntSlice(s)))
	return s
}

func shuffled(n int, seed uint64) []int {
	s := seq(n)
	rand.New(rand.NewPCG(seed, 1)).Shuffle(n, func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}

func TestFragCheckerDeliversGoodDatagrams(t *testing.T) {
	dgram4 := udpDatagram(false, 3001, 7, false) // odd length: the last fragment is odd
	dgram6 := udpDatagram(true, 2999, 9, false)
	zero4 := udpDatagram(false, 500, 1, false)
	zero4[6], zero4[7] = 0, 0 // "no checksum" over IPv4 (RFC 768)
	// IPv6 with a destination options header in the fragmentable part,
	// before UDP (RFC 8200 §4.5): the checksum starts after it.
	dst6 := cat(optsHdr(protoUDP), udpDatagram(true, 1000, 3, false))
	// A TCP segment with 40 bytes of options, in fragments of 16: its
	// header spans three of them.
	tcp4 := make([]byte, 1000)
	tcp4[12], tcp4[13] = 15<<4, 0x18
	for i := 60; i < len(tcp4); i++ {
		tcp4[i] = byte(i)
	}
	binary.BigEndian.PutUint16(tcp4[16:], ^checksum.Checksum(tcp4, header.PseudoHeaderChecksum(header.TCPProtocolNumber, v4Peer, v4Stack, uint16(len(tcp4)))))
	type set struct {
		name   string
		frames [][]byte
		whole  []byte
		// copied is the bytes build must copy (-1: not checked): the
		// headers, and fragments under the copy-break.
		copied int
	}
	sets := []set{
		{"IPv4", frags4(header.UDPProtocolNumber, 77, dgram4, split8(len(dgram4), 1480)), whole4(header.UDPProtocolNumber, 77, dgram4), 14 + 20 + 8 + 49},
		{"IPv4, small fragments", frags4(header.UDPProtocolNumber, 78, dgram4, split8(len(dgram4), 200)), whole4(header.UDPProtocolNumber, 78, dgram4), len(whole4(header.UDPProtocolNumber, 78, dgram4))},
		{"IPv4, zero UDP checksum", frags4(header.UDPProtocolNumber, 79, zero4, split8(len(zero4), 128)), whole4(header.UDPProtocolNumber, 79, zero4), -1},
		{"IPv4 TCP, header across fragments", frags4(header.TCPProtocolNumber, 80, tcp4, split8(len(tcp4), 16)), whole4(header.TCPProtocolNumber, 80, tcp4), len(whole4(header.TCPProtocolNumber, 80, tcp4))},
		{"IPv6", frags6(protoUDP, 77, dgram6, split8(len(dgram6), 1232)), v6Frame(protoUDP, dgram6), 14 + 40 + 8},
		{"IPv6, destination options in the fragmentable part", frags6(extDst, 78, dst6, split8(len(dst6), 256)), v6Frame(extDst, dst6), -1},
		{"IPv6, hop-by-hop options before the fragment header", frags6HBH(protoUDP, 79, dgram6, split8(len(dgram6), 512)), v6Frame(extHBH, cat(optsHdr(protoUDP), dgram6)), -1},
	}
	for _, s := range sets {
		n := len(s.frames)
		for _, ord := range []struct {
			name  string
			order []int
			cut   int
		}{{"in order", seq(n), 0}, {"reversed", reversed(n), 0}, {"shuffled", shuffled(n, 1), 0}, {"in two views, odd cut", shuffled(n, 2), 101}} {
			t.Run(s.name+"/"+ord.name, func(t *testing.T) {
				h := newFragHarness(t, defaultFragLimits)
				got := h.feedAll(s.frames, ord.order, ord.cut)
				if len(got) != 1 {
					t.Fatalf("delivered %d datagrams of %d fragments, want 1 (%+v)", len(got), n, statsOf(&h.c))
				}
				if !bytes.Equal(got[0], s.whole) {
					t.Fatalf("delivered %d bytes %x, want the whole datagram's frame, %d bytes %x", len(got[0]), got[0], len(s.whole), s.whole)
				}
				if s.copied >= 0 && h.copied != s.copied {
					t.Fatalf("copied %d bytes, want %d", h.copied, s.copied)
				}
				if h.c.fragDatagrams.Load() != 1 {
					t.Fatalf("RxFragDatagrams %d, want 1", h.c.fragDatagrams.Load())
				}
				h.expectHeld(0)
			})
		}
	}
}

// statsOf returns the Stats of one set of counters.
func statsOf(c *counters) Stats {
	var s Stats
	c.addTo(&s)
	return s
}

func TestFragCheckerDrops(t *testing.T) {
	good4 := udpDatagram(false, 2000, 5, false)
	bad4 := udpDatagram(false, 2000, 5, true)
	bad6 := udpDatagram(true, 2000, 5, true)
	badDst6 := cat(optsHdr(protoUDP), udpDatagram(true, 1000, 3, true))
	tcp4 := make([]byte, 1000) // a TCP "segment" with a wrong checksum
	tcp4[12] = 5 << 4
	tcp4[16] = 0x12
	for _, tc := range []struct {
		name    string
		frames  [][]byte
		counter func(*counters) uint64
		want    uint64 // fragments counted
		held    int    // datagrams still held
	}{
		{"IPv4 UDP, wrong checksum", frags4(header.UDPProtocolNumber, 1, bad4, split8(len(bad4), 512)),
			func(c *counters) uint64 { return c.dropFragCsum.Load() }, 4, 0},
		{"IPv4 TCP, wrong checksum", frags4(header.TCPProtocolNumber, 1, tcp4, split8(len(tcp4), 512)),
			func(c *counters) uint64 { return c.dropFragCsum.Load() }, 2, 0},
		{"IPv6 UDP, wrong checksum", frags6(protoUDP, 1, bad6, split8(len(bad6), 512)),
			func(c *counters) uint64 { return c.dropFragCsum.Load() }, 4, 0},
		{"IPv6 UDP after destination options, wrong checksum", frags6(extDst, 1, badDst6, split8(len(badDst6), 512)),
			func(c *counters) uint64 { return c.dropFragCsum.Load() }, 2, 0},
		{"overlap, different bytes", frags4(header.UDPProtocolNumber, 2, good4, []piece{{0, 512, true}, {256, 512, true}}),
			func(c *counters) uint64 { return c.dropFragInvalid.Load() }, 2, 0},
		{"overlap inside a held fragment", frags4(header.UDPProtocolNumber, 2, good4, []piece{{0, 1024, true}, {256, 256, true}}),
			func(c *counters) uint64 { return c.dropFragInvalid.Load() }, 2, 0},
		{"two last fragments, different ends", frags4(header.UDPProtocolNumber, 3, good4, []piece{{1024, 512, false}, {1024, 976, false}}),
			func(c *counters) uint64 { return c.dropFragInvalid.Load() }, 2, 0},
		{"data past the last fragment's end", frags4(header.UDPProtocolNumber, 4, good4, []piece{{512, 512, false}, {1024, 512, true}}),
			func(c *counters) uint64 { return c.dropFragInvalid.Load() }, 2, 0},
		{"last fragment before held data", frags4(header.UDPProtocolNumber, 4, good4, []piece{{1024, 512, true}, {512, 512, false}}),
			func(c *counters) uint64 { return c.dropFragInvalid.Load() }, 2, 0},
		{"exact duplicate: the copy is dropped, the datagram completes", frags4(header.UDPProtocolNumber, 5, good4, []piece{{0, 1024, true}, {0, 1024, true}, {1024, 984, false}}),
			func(c *counters) uint64 { return c.dropFragDup.Load() + c.fragDatagrams.Load()*100 }, 101, 0},
		{"nested fragment header in the first fragment", frags6(extFrag, 6, cat(fragHdr6(protoUDP, 8, true, 1), good4[:1000]), []piece{{0, 504, true}}),
			func(c *counters) uint64 { return c.dropFragInvalid.Load() }, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFragHarness(t, defaultFragLimits)
			if got := h.feedAll(tc.frames, seq(len(tc.frames)), 0); len(got) != 0 && tc.counter(&h.c) < 100 {
				t.Fatalf("delivered %d frames", len(got))
			}
			if got := tc.counter(&h.c); got != tc.want {
				t.Fatalf("counted %d, want %d (%+v)", got, tc.want, statsOf(&h.c))
			}
			h.expectHeld(tc.held)
		})
	}
}

func TestFragCheckerExpiry(t *testing.T) {
	d4 := udpDatagram(false, 2000, 1, false)
	d6 := udpDatagram(true, 2000, 1, false)
	f4 := frags4(header.UDPProtocolNumber, 1, d4, split8(len(d4), 1024))
	f6 := frags6(protoUDP, 1, d6, split8(len(d6), 1024))
	h := newFragHarness(t, defaultFragLimits)
	h.feed(f4[0], 0)
	h.feed(f6[0], 0)
	h.expectHeld(2)
	// Past IPv4's timeout, not IPv6's: a later fragment sweeps the IPv4
	// datagram out, so its last fragment starts a new one.
	h.clock = h.clock.Add(fragTimeout4 + time.Second)
	if got := h.feed(f4[1], 0); len(got) != 0 {
		t.Fatalf("an expired datagram completed: %d frames", len(got))
	}
	if got := h.c.dropFragExpired.Load(); got != 1 {
		t.Fatalf("expired %d, want 1", got)
	}
	// The IPv6 datagram is still held and completes.
	if got := h.feed(f6[1], 0); len(got) != 1 {
		t.Fatalf("IPv6 datagram within its 60 s: delivered %d datagrams, want 1", len(got))
	}
	h.clock = h.clock.Add(fragTimeout6)
	h.feed(f6[0], 0) // sweeps the IPv4 leftover
	if got := h.c.dropFragExpired.Load(); got != 2 {
		t.Fatalf("expired %d, want 2", got)
	}
	h.expectHeld(1)
	h.fc.release()
	h.expectHeld(0)
	if got := h.c.dropFragExpired.Load(); got != 3 {
		t.Fatalf("after release: expired %d, want 3", got)
	}
}

func TestFragCheckerExpiryTimer(t *testing.T) {
	var c counters
	var fc fragChecker
	lim := defaultFragLimits
	lim.timeout4 = 20 * time.Millisecond
	fc.initWith(&c, lim, time.Now, true)
	defer fc.release()
	d := udpDatagram(false, 2000, 1, false)
	f := frags4(header.UDPProtocolNumber, 1, d, split8(len(d), 1024))
	var fi fragInfo
	if verifyChecksums(f[0], nil, false, &fi) != csumFragment {
		t.Fatal("not a fragment")
	}
	fc.add(buffer.NewViewWithData(f[0]), nil, &fi)
	// Nothing else arrives: the timer must drop it.
	if !evchantest.Poll(5*time.Second, func() bool { n, _, _ := fc.held(); return n == 0 }) {
		t.Fatal("the held fragment did not expire")
	}
	if got := c.dropFragExpired.Load(); got != 1 {
		t.Fatalf("expired %d, want 1", got)
	}
}

func TestFragCheckerLimits(t *testing.T) {
	d := udpDatagram(false, 4000, 1, false)
	t.Run("datagrams: the oldest is evicted", func(t *testing.T) {
		lim := defaultFragLimits
		lim.datagrams = 2
		h := newFragHarness(t, lim)
		var firsts [][][]byte
		for id := range 3 {
			f := frags4(header.UDPProtocolNumber, uint16(id), d, split8(len(d), 1024))
			firsts = append(firsts, f)
			h.feed(f[0], 0)
			h.clock = h.clock.Add(time.Millisecond)
		}
		h.expectHeld(2)
		if got := h.c.dropFragLimit.Load(); got != 1 {
			t.Fatalf("limit drops %d, want 1", got)
		}
		// The newest two still complete.
		for _, f := range firsts[1:] {
			if got := h.feedAll(f, seq(len(f))[1:], 0); len(got) != 1 {
				t.Fatalf("delivered %d datagrams, want 1", len(got))
			}
		}
	})
	t.Run("bytes", func(t *testing.T) {
		lim := defaultFragLimits
		lim.bytes = 3 * 2048
		h := newFragHarness(t, lim)
		f := frags4(header.UDPProtocolNumber, 9, d, split8(len(d), 1024))
		got := h.feedAll(f, seq(len(f)), 0)
		if len(got) != 0 || h.c.dropFragLimit.Load() == 0 {
			t.Fatalf("a datagram larger than the byte limit: %d frames delivered, %d limit drops", len(got), h.c.dropFragLimit.Load())
		}
		if _, _, mem := h.fc.held(); mem > lim.bytes {
			t.Fatalf("holds %d bytes, limit %d", mem, lim.bytes)
		}
	})
	t.Run("fragments per datagram", func(t *testing.T) {
		lim := defaultFragLimits
		lim.perDatagram = 4
		h := newFragHarness(t, lim)
		f := frags4(header.UDPProtocolNumber, 10, d, split8(len(d), 512))
		h.feedAll(f, seq(len(f)), 0)
		if got := h.c.dropFragLimit.Load(); got != 5 {
			t.Fatalf("limit drops %d, want 5 (4 held and the 5th)", got)
		}
	})
}

// TestFragCheckerDefaultLimitHping checks the default limits against the
// two shapes of UDP fragment flood the flood tests send with hping3: a
// 3000-byte datagram in fragments of 1400 bytes (-m 1400, three
// fragments) is reassembled, and the same datagram in hping3's default
// 16-byte fragments (-f, 188 of them, over fragMaxPerDatagram) is not:
// the fragments held and the one over the limit are dropped and counted,
// and the rest start a partial datagram that never completes, held (within
// the limits) until it is evicted or expires.
func TestFragCheckerDefaultLimitHping(t *testing.T) {
	d := udpDatagram(false, 3000, 3, false)
	h := newFragHarness(t, defaultFragLimits)
	f := frags4(header.UDPProtocolNumber, 21, d, split8(len(d), 1400))
	if len(f) != 3 {
		t.Fatalf("%d fragments of 1400 bytes, want 3", len(f))
	}
	if got := h.feedAll(f, seq(len(f)), 0); len(got) != 1 {
		t.Fatalf("three fragments: %d datagrams delivered, want 1", len(got))
	}
	tiny := frags4(header.UDPProtocolNumber, 22, d, split8(len(d), 16))
	if len(tiny) <= fragMaxPerDatagram {
		t.Fatalf("%d fragments of 16 bytes: not over the limit %d", len(tiny), fragMaxPerDatagram)
	}
	if got := h.feedAll(tiny, seq(len(tiny)), 0); len(got) != 0 {
		t.Fatalf("%d fragments: %d datagrams delivered, want none", len(tiny), len(got))
	}
	if got := h.c.dropFragLimit.Load(); got != fragMaxPerDatagram+1 {
		t.Fatalf("limit drops %d, want the %d held and the one over the limit", got, fragMaxPerDatagram)
	}
	h.expectHeld(1)
}

// recordingDispatcher keeps a copy of every packet delivered.
type recordingDispatcher struct{ pkts [][]byte }

func (d *recordingDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	d.pkts = append(d.pkts, append([]byte(nil), v.AsSlice()...))
	v.Release()
}

func (*recordingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestReceivePathHoldsFragments runs fragments through the queue's receive
// path (handleFrame): held, then delivered whole, or dropped and counted.
func TestReceivePathHoldsFragments(t *testing.T) {
	d := &recordingDispatcher{}
	q := fuzzLink(t, d)
	good := udpDatagram(false, 3000, 1, false)
	bad := udpDatagram(false, 3000, 1, true)
	fg := frags4(header.UDPProtocolNumber, 1, good, split8(len(good), 1480))
	fb := frags4(header.UDPProtocolNumber, 2, bad, split8(len(bad), 1480))
	for i, f := range fb {
		inject(q, withVnet(vnetHdr{}, f))
		if len(d.pkts) != 0 {
			t.Fatalf("after bad fragment %d: %d delivered", i, len(d.pkts))
		}
	}
	for i := len(fg) - 1; i >= 0; i-- {
		inject(q, withVnet(vnetHdr{}, fg[i]))
		if i > 0 && len(d.pkts) != 0 {
			t.Fatalf("a fragment was delivered before its datagram was complete")
		}
	}
	if len(d.pkts) != 1 {
		t.Fatalf("delivered %d packets, want the one datagram", len(d.pkts))
	}
	if want := whole4(header.UDPProtocolNumber, 1, good); !bytes.Equal(d.pkts[0], want) {
		t.Fatalf("delivered %x, want %x", d.pkts[0], want)
	}
	st := q.link.Stats()
	if st.RxCsumUnverifiable != uint64(len(fg)+len(fb)) || st.RxFragDatagrams != 1 || st.RxDropFragBadCsum != uint64(len(fb)) ||
		st.RxFragReassembled != 1 || st.RxFragReassembledFrames != uint64(len(fg)) {
		t.Fatalf("stats %+v", st)
	}
}

// FuzzFragChecker cuts a datagram into fragments as the input says (offsets,
// sizes, flags, order, duplicates, a wrong checksum, IPv4 or IPv6), runs
// them through the receive path, and checks that every fragment is
// accounted for (delivered, dropped by cause, or held), that nothing is
// held beyond the limits, and that whatever the link delivers reassembles
// into datagrams whose checksum is right (checked with gVisor's header
// package, not the link's composition of sums).
func FuzzFragChecker(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 4, 3, 0, 0})
	f.Add([]byte{1, 0, 0, 40, 1, 200, 0, 0, 0, 0})
	f.Add([]byte{2, 5, 3, 8, 8, 0, 8, 4, 0, 2})
	d := &recordingDispatcher{}
	q := fuzzLink(f, d)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		v6, bad := in[0]&1 != 0, in[0]&2 != 0
		id := uint32(in[1])
		size := 64 + int(in[0]>>2)*37
		dgram := udpDatagram(v6, size, in[1], bad)
		var pieces []piece
		for rest := in[2:]; len(rest) >= 2 && len(pieces) < 64; rest = rest[2:] {
			off := int(rest[0]) * 8 % (len(dgram) + 8)
			n := (int(rest[1]&0x7f) + 1) * 8
			if off >= len(dgram) {
				off = len(dgram) - len(dgram)%8
				if off == len(dgram) {
					off -= 8
				}
			}
			n = min(n, len(dgram)-off)
			more := off+n < len(dgram)
			if rest[1]&0x80 != 0 {
				more = !more
				if more && n%8 != 0 {
					more = false
				}
			}
			if off == 0 && !more {
				continue // a whole datagram, not a fragment
			}
			pieces = append(pieces, piece{off, n, more})
		}
		var frames [][]byte
		if v6 {
			frames = frags6(protoUDP, id, dgram, pieces)
		} else {
			frames = frags4(header.UDPProtocolNumber, uint16(id), dgram, pieces)
		}
		// Each input on an empty checker, so that fragments of an earlier
		// input with the same identification do not mix in.
		q.rx.frags.release()
		before := q.link.Stats()
		d.pkts = d.pkts[:0]
		heldBefore := 0
		for _, fr := range frames {
			inject(q, withVnet(vnetHdr{}, fr))
		}
		st := q.link.Stats()
		_, heldAfter, mem := q.rx.frags.held()
		in_ := st.RxCsumUnverifiable - before.RxCsumUnverifiable
		out := (st.RxFragReassembledFrames - before.RxFragReassembledFrames) + (st.RxDropFragBadCsum - before.RxDropFragBadCsum) + (st.RxDropFragInvalid - before.RxDropFragInvalid) +
			(st.RxDropFragDuplicate - before.RxDropFragDuplicate) + (st.RxDropFragExpired - before.RxDropFragExpired) + (st.RxDropFragLimit - before.RxDropFragLimit)
		if int64(in_)+int64(heldBefore) != int64(out)+int64(heldAfter) {
			t.Fatalf("fragments in %d (+%d held before), accounted %d (+%d held after): %+v", in_, heldBefore, out, heldAfter, st)
		}
		if mem > fragMaxBytes {
			t.Fatalf("holds %d bytes", mem)
		}
		if got := st.RxFragReassembled - before.RxFragReassembled; got != uint64(len(d.pkts)) {
			t.Fatalf("RxFragReassembled +%d, %d packets delivered", got, len(d.pkts))
		}
		if len(d.pkts) > 0 {
			if bad {
				t.Fatalf("a datagram with a wrong checksum delivered (%d packets)", len(d.pkts))
			}
			if err := reassembledChecksumOK(d.pkts, v6); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// reassembledChecksumOK checks each delivered packet: an unfragmented IP
// datagram (gVisor's header package reads it) whose lengths are right and
// whose UDP checksum is right.
func reassembledChecksumOK(pkts [][]byte, v6 bool) error {
	for _, p := range pkts {
		var data []byte
		if v6 {
			ip := header.IPv6(p[14:])
			if !ip.IsValid(len(ip)) || ip.NextHeader() != protoUDP || int(ip.PayloadLength()) != len(ip)-header.IPv6MinimumSize {
				return fmt.Errorf("delivered IPv6 packet not whole: next header %d, payload length %d of %d", ip.NextHeader(), ip.PayloadLength(), len(ip)-header.IPv6MinimumSize)
			}
			data = ip.Payload()
		} else {
			ip := header.IPv4(p[14:])
			if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || ip.More() || ip.FragmentOffset() != 0 || int(ip.TotalLength()) != len(ip) {
				return fmt.Errorf("delivered IPv4 packet not whole: %x", p[14:34])
			}
			data = ip.Payload()
		}
		if err := udpChecksumOK(data, v6); err != nil {
			return err
		}
	}
	return nil
}

// udpChecksumOK checks a reassembled UDP datagram's checksum.
func udpChecksumOK(data []byte, v6 bool) error {
	src, dst := v4Peer, v4Stack
	if v6 {
		src, dst = v6Peer, v6Stack
	}
	if len(data) < header.UDPMinimumSize {
		return fmt.Errorf("delivered a %d-byte datagram", len(data))
	}
	if !header.UDP(data).IsChecksumValid(src, dst, checksum.Checksum(data[header.UDPMinimumSize:], 0)) {
		return fmt.Errorf("delivered a datagram of %d bytes with a wrong checksum", len(data))
	}
	return nil
}

// TestFragmentsThroughStack sends fragmented datagrams, IPv6 routing
// headers and NEEDS_CSUM frames through a link into a gVisor stack over a
// socket pair: datagrams with a right checksum reach a UDP endpoint
// (reassembled by the stack), those with a wrong one do not.
func TestFragmentsThroughStack(t *testing.T) {
	link, s, peer := newPeerLink(t, OffloadOn)
	conns := map[bool]*gonetUDP{false: listenUDP(t, s, "192.0.2.2:7"), true: listenUDP(t, s, "[2001:db8::2]:7")}
	withPayload := func(v6 bool, n int, seed byte, bad bool) ([]byte, []byte) {
		d := udpDatagram(v6, n, seed, bad)
		return d, d[header.UDPMinimumSize:]
	}
	for _, tc := range []struct {
		name   string
		v6     bool
		frames func(bad bool) ([][]byte, []byte)
	}{
		{"IPv4 fragments", false, func(bad bool) ([][]byte, []byte) {
			d, p := withPayload(false, 4000, 1, bad)
			return frags4(header.UDPProtocolNumber, 11, d, split8(len(d), 1480)), p
		}},
		{"IPv4 fragments, reversed", false, func(bad bool) ([][]byte, []byte) {
			d, p := withPayload(false, 3000, 2, bad)
			f := frags4(header.UDPProtocolNumber, 12, d, split8(len(d), 1024))
			slices.Reverse(f)
			return f, p
		}},
		{"IPv6 fragments", true, func(bad bool) ([][]byte, []byte) {
			d, p := withPayload(true, 4000, 3, bad)
			return frags6(protoUDP, 13, d, split8(len(d), 1232)), p
		}},
		{"IPv6 fragments after a hop-by-hop header, shuffled", true, func(bad bool) ([][]byte, []byte) {
			d, p := withPayload(true, 5000, 5, bad)
			f := frags6HBH(protoUDP, 14, d, split8(len(d), 1024))
			rand.New(rand.NewPCG(3, 1)).Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
			return f, p
		}},
		{"IPv6 routing header, type 253, segments left 0", true, func(bad bool) ([][]byte, []byte) {
			d, p := withPayload(true, 200, 4, bad)
			return [][]byte{v6Frame(extRoute, cat(routingHdr(protoUDP, 253, 0), d))}, p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := conns[tc.v6]
			before := link.Stats()
			badFrames, _ := tc.frames(true)
			for _, f := range badFrames {
				if err := peer.Write(withVnet(vnetHdr{}, f)); err != nil {
					t.Fatal(err)
				}
			}
			goodFrames, want := tc.frames(false)
			for _, f := range goodFrames {
				if err := peer.Write(withVnet(vnetHdr{}, f)); err != nil {
					t.Fatal(err)
				}
			}
			// Frames are handled in order by the one reader: the first
			// datagram to arrive must be the good one.
			c.expect(t, want)
			st := link.Stats()
			dropped := st.RxDropFragBadCsum - before.RxDropFragBadCsum + st.RxDropBadCsum - before.RxDropBadCsum
			if dropped != uint64(len(badFrames)) {
				t.Fatalf("dropped %d frames, want %d: %+v", dropped, len(badFrames), st)
			}
			if frag := len(goodFrames) > 1; frag && (st.RxFragReassembled-before.RxFragReassembled != 1 ||
				st.RxFragReassembledFrames-before.RxFragReassembledFrames != uint64(len(goodFrames))) {
				t.Fatalf("reassembled %d datagrams of %d fragments, want 1 of %d", st.RxFragReassembled-before.RxFragReassembled,
					st.RxFragReassembledFrames-before.RxFragReassembledFrames, len(goodFrames))
			}
		})
	}

	t.Run("NEEDS_CSUM with a wrong IPv4 header checksum", func(t *testing.T) {
		c := conns[false]
		before := link.Stats().RxDropBadCsum
		f := udpFrame(frameSpec{payload: []byte("bad header"), partial: true})
		f[14+8] ^= 1 // TTL: the header checksum no longer matches
		if err := peer.Write(withVnet(partialHdr(false), f)); err != nil {
			t.Fatal(err)
		}
		if err := peer.Write(withVnet(partialHdr(false), udpFrame(frameSpec{payload: []byte("good header"), partial: true}))); err != nil {
			t.Fatal(err)
		}
		c.expect(t, []byte("good header"))
		if got := link.Stats().RxDropBadCsum - before; got != 1 {
			t.Fatalf("RxDropBadCsum +%d, want +1", got)
		}
	})
}

// gonetUDP is a UDP endpoint of the stack that a test reads datagrams from.
type gonetUDP struct{ c *gonet.UDPConn }

func listenUDP(t *testing.T, s *stack.Stack, hostport string) *gonetUDP {
	t.Helper()
	addr, proto := fullAddr(hostport)
	c, err := gonet.DialUDP(s, &addr, nil, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gonetUDP{c}
}

// expect reads one datagram and fails t unless it is want.
func (u *gonetUDP) expect(t *testing.T, want []byte) {
	t.Helper()
	buf := make([]byte, 70000)
	if err := u.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := u.c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("waiting for a %d-byte datagram: %v", len(want), err)
	}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("received %d bytes %.16q…, want %d bytes %.16q…", n, buf[:n], len(want), want)
	}
}

// tcpSegment4 returns a TCP segment (ACK, 20-byte header, n payload bytes)
// from the peer's port src to the stack's port 7, checksum right.
func tcpSegment4(src uint16, n int) []byte {
	b := make([]byte, header.TCPMinimumSize+n)
	header.TCP(b).Encode(&header.TCPFields{SrcPort: src, DstPort: 7, SeqNum: 1, AckNum: 1,
		DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 1024})
	for i := header.TCPMinimumSize; i < len(b); i++ {
		b[i] = byte(i)
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, v4Peer, v4Stack, uint16(len(b)))
	header.TCP(b).SetChecksum(^checksum.Checksum(b, xsum))
	return b
}

// TestFragmentedSegmentsAdmitted checks that a TCP segment reassembled from
// fragments (hping3 -f) is charged to a listener's budget like an
// unfragmented one: past the budget, whole segments are dropped and
// counted, never delivered.
func TestFragmentedSegmentsAdmitted(t *testing.T) {
	d := &recordingDispatcher{}
	q := fuzzLink(t, d)
	q.link.adm.DisableLeak()
	var est atomic.Bool
	q.link.SetConnLookup(lookupBy(&est))
	const sent = admitLimit + 10
	for i := range sent {
		seg := tcpSegment4(uint16(1024+i), 100)
		for _, f := range frags4(header.TCPProtocolNumber, uint16(i), seg, split8(len(seg), 16)) {
			inject(q, withVnet(vnetHdr{}, f))
		}
	}
	st := q.link.Stats()
	if len(d.pkts) != admitLimit || st.RxDropFloodCtl != sent-admitLimit || st.RxFragReassembled != sent {
		t.Fatalf("%d segments delivered, %d dropped at the listener, %d reassembled; want %d, %d, %d",
			len(d.pkts), st.RxDropFloodCtl, st.RxFragReassembled, admitLimit, sent-admitLimit, sent)
	}
	want := whole4(header.TCPProtocolNumber, 0, tcpSegment4(1024, 100))
	if !bytes.Equal(d.pkts[0], want) {
		t.Fatalf("delivered %x, want %x", d.pkts[0], want)
	}
	// A connection's own segments are not charged.
	est.Store(true)
	seg := tcpSegment4(999, 100)
	for _, f := range frags4(header.TCPProtocolNumber, 9999, seg, split8(len(seg), 16)) {
		inject(q, withVnet(vnetHdr{}, f))
	}
	if len(d.pkts) != admitLimit+1 {
		t.Fatalf("a fragmented segment of an established connection was not delivered")
	}
}

// TestEveryFragmentReassembled checks that the link reassembles datagrams
// whose checksum it does not verify too, so that gVisor's reassembly never
// runs: ICMP over IPv4, with offloads (the stack checks ICMP itself), and
// UDP on a link without the virtio-net header (the stack checks every
// checksum itself).
func TestEveryFragmentReassembled(t *testing.T) {
	echo := make([]byte, 3000)
	echo[0] = byte(header.ICMPv4Echo)
	for i := header.ICMPv4MinimumSize; i < len(echo); i++ {
		echo[i] = byte(i * 7)
	}
	header.ICMPv4(echo).SetChecksum(^checksum.Checksum(echo, 0))
	udp := udpDatagram(false, 4000, 9, false)
	for _, tc := range []struct {
		name  string
		vnet  bool
		proto tcpip.TransportProtocolNumber
		dgram []byte
	}{
		{"ICMP echo, offloads on", true, header.ICMPv4ProtocolNumber, echo},
		{"UDP, no virtio-net header", false, header.UDPProtocolNumber, udp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &recordingDispatcher{}
			q := fuzzLink(t, d)
			q.link.vnet = tc.vnet
			frames := frags4(tc.proto, 21, tc.dgram, split8(len(tc.dgram), 1024))
			for i := len(frames) - 1; i >= 0; i-- {
				b := frames[i]
				if tc.vnet {
					b = withVnet(vnetHdr{}, b)
				}
				q.rx.refill(q.link)
				n := 0
				if tc.vnet {
					n = copy(q.rx.vnet[:], b)
				}
				n += copy(q.rx.head.AsSlice(), b[n:])
				n += copy(q.rx.tail.AsSlice(), b[n:])
				q.handleFrame(n)
			}
			if len(d.pkts) != 1 {
				t.Fatalf("delivered %d packets, want the whole datagram", len(d.pkts))
			}
			if want := whole4(tc.proto, 21, tc.dgram); !bytes.Equal(d.pkts[0], want) {
				t.Fatalf("delivered %x, want %x", d.pkts[0], want)
			}
			st := q.link.Stats()
			if st.RxFragReassembled != 1 || st.RxFragReassembledFrames != uint64(len(frames)) || st.RxFragDatagrams != map[bool]uint64{false: 0, true: 1}[tc.proto == header.UDPProtocolNumber] {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestSmallFragmentsCopied checks that a datagram cut into tiny fragments
// (hping3 -f cuts into 16 bytes) does not pin a receive view per fragment
// once reassembled: their data is copied, and counted.
func TestSmallFragmentsCopied(t *testing.T) {
	d := &holdingDispatcher{}
	q := fuzzLink(t, d)
	seg := tcpSegment4(1024, 1400)
	frames := frags4(header.TCPProtocolNumber, 1, seg, split8(len(seg), 16))
	for _, f := range frames {
		inject(q, withVnet(vnetHdr{}, f))
	}
	st := q.link.Stats()
	if d.n.Load() != 1 || st.RxFragReassembledFrames != uint64(len(frames)) {
		t.Fatalf("delivered %d packets of %d fragments", d.n.Load(), st.RxFragReassembledFrames)
	}
	whole := len(whole4(header.TCPProtocolNumber, 1, seg))
	if st.RxCopiedBytes != uint64(whole) {
		t.Fatalf("RxCopiedBytes %d, want the whole %d-byte frame", st.RxCopiedBytes, whole)
	}
	// The views of 89 fragments would hold 89 receive views; the copy
	// holds about the frame's size.
	if c := d.maxCap.Load(); c > 4*int64(whole) {
		t.Fatalf("the delivered packet holds %d bytes of buffers for a %d-byte frame", c, whole)
	}
}
