package hostile

import (
	"bytes"
	"net/netip"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNet = Net{
	SrcMAC: tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01"),
	DstMAC: tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02"),
	Src4:   netip.MustParseAddr("192.0.2.1"),
	Dst4:   netip.MustParseAddr("192.0.2.2"),
	Src6:   netip.MustParseAddr("2001:db8::1"),
	Dst6:   netip.MustParseAddr("2001:db8::2"),
}

// l4Valid checks a transport packet's checksum the way a receiver does.
func l4Valid(proto tcpip.TransportProtocolNumber, src, dst netip.Addr, b []byte) bool {
	xsum := header.PseudoHeaderChecksum(proto, addr(src), addr(dst), uint16(len(b)))
	return checksum.Checksum(b, xsum) == 0xffff
}

// TestBuildersMakeValidFrames: every builder's output passes gVisor's own
// validation, so a test that breaks one field breaks only that field.
func TestBuildersMakeValidFrames(t *testing.T) {
	n := testNet
	seg := TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: header.TCPFlagSyn, Window: 1000,
		Options: []byte{2, 4, 5, 0xb4}, Payload: []byte("syn data")}
	dgram := UDP{SrcPort: 40001, DstPort: 53, Payload: []byte("hello")}

	f := n.FrameV4(header.TCPProtocolNumber, seg.Marshal(n.Src4, n.Dst4), IPv4{ID: 7})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(f)-header.EthernetMinimumSize) || !ip.IsChecksumValid() {
		t.Fatal("IPv4 header invalid")
	}
	if e := header.Ethernet(f); e.SourceAddress() != n.SrcMAC || e.DestinationAddress() != n.DstMAC || e.Type() != header.IPv4ProtocolNumber {
		t.Fatalf("Ethernet header %x", f[:14])
	}
	tcp := header.TCP(ip.Payload())
	if tcp.DataOffset() != 24 || tcp.Flags() != header.TCPFlagSyn || !bytes.Equal(tcp.Payload(), seg.Payload) {
		t.Fatalf("TCP header %x", []byte(tcp)[:24])
	}
	if !l4Valid(header.TCPProtocolNumber, n.Src4, n.Dst4, ip.Payload()) {
		t.Fatal("TCP checksum wrong")
	}

	f = n.FrameV6(uint8(header.UDPProtocolNumber), nil, dgram.Marshal(n.Src6, n.Dst6))
	ip6 := header.IPv6(f[header.EthernetMinimumSize:])
	if !ip6.IsValid(len(f)-header.EthernetMinimumSize) || ip6.NextHeader() != uint8(header.UDPProtocolNumber) {
		t.Fatal("IPv6 header invalid")
	}
	u := header.UDP(ip6.Payload())
	if int(u.Length()) != len(ip6.Payload()) || !l4Valid(header.UDPProtocolNumber, n.Src6, n.Dst6, ip6.Payload()) {
		t.Fatal("UDP length or checksum wrong")
	}

	echo := EchoV4(1, 2, []byte("ping"))
	if checksum.Checksum(echo, 0) != 0xffff {
		t.Fatal("ICMPv4 checksum wrong")
	}
	echo6 := EchoV6(n.Src6, n.Dst6, 1, 2, []byte("ping"))
	if !l4Valid(header.ICMPv6ProtocolNumber, n.Src6, n.Dst6, echo6) {
		t.Fatal("ICMPv6 checksum wrong")
	}
}

// TestFragmentsCoverDatagram: Split's pieces, built as IPv4 and IPv6
// fragments, carry the datagram's bytes at the offsets their headers state.
func TestFragmentsCoverDatagram(t *testing.T) {
	n := testNet
	payload := bytes.Repeat([]byte("0123456789abcdef"), 20) // 320 bytes
	pieces := Split(payload, 100)                           // 96-byte pieces
	if len(pieces) != 4 || pieces[3].More || !pieces[2].More {
		t.Fatalf("Split: %d pieces", len(pieces))
	}
	got := make([]byte, len(payload))
	for _, f := range n.FragmentsV4(header.UDPProtocolNumber, 9, pieces) {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(f)-header.EthernetMinimumSize) || !ip.IsChecksumValid() || ip.ID() != 9 {
			t.Fatal("fragment header invalid")
		}
		copy(got[ip.FragmentOffset():], ip.Payload())
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("IPv4 fragments do not reassemble to the datagram")
	}
	clear(got)
	for i, f := range n.FragmentsV6(uint8(header.UDPProtocolNumber), 9, pieces) {
		ip := header.IPv6(f[header.EthernetMinimumSize:])
		fh := header.IPv6Fragment(ip.Payload())
		if ip.NextHeader() != uint8(header.IPv6FragmentExtHdrIdentifier) || fh.ID() != 9 || fh.More() != pieces[i].More {
			t.Fatalf("fragment %d header invalid", i)
		}
		copy(got[int(fh.FragmentOffset())*8:], fh.Payload())
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("IPv6 fragments do not reassemble to the datagram")
	}
}

// TestMutatorsBreakOneField: each mutator changes what it says and nothing
// else, and never touches its argument.
func TestMutatorsBreakOneField(t *testing.T) {
	n := testNet
	seg := TCP{SrcPort: 1, DstPort: 2, Flags: header.TCPFlagAck, Payload: []byte("x")}
	f := n.FrameV4(header.TCPProtocolNumber, seg.Marshal(n.Src4, n.Dst4), IPv4{})
	orig := clone(f)
	ipOf := func(b []byte) header.IPv4 { return header.IPv4(b[header.EthernetMinimumSize:]) }

	if g := BadIPv4Checksum(f); ipOf(g).IsChecksumValid() {
		t.Error("BadIPv4Checksum left the checksum valid")
	}
	if g := BadL4Checksum(f); l4Valid(header.TCPProtocolNumber, n.Src4, n.Dst4, ipOf(g).Payload()) || !ipOf(g).IsChecksumValid() {
		t.Error("BadL4Checksum: TCP checksum still valid, or IP checksum broken")
	}
	g := SetIPv4TotalLength(f, 1000)
	if ipOf(g).TotalLength() != 1000 || !ipOf(g).IsChecksumValid() || ipOf(g).IsValid(len(g)-14) {
		t.Error("SetIPv4TotalLength: want a consistent header with an impossible length")
	}
	g = SetIPv4HeaderLength(f, 4)
	if ipOf(g).HeaderLength() != 16 || ipOf(g).IsValid(len(g)-14) {
		t.Error("SetIPv4HeaderLength(4) still valid")
	}
	f6 := n.FrameV6(uint8(header.UDPProtocolNumber), nil, UDP{SrcPort: 1, DstPort: 2}.Marshal(n.Src6, n.Dst6))
	if g := SetIPv6PayloadLength(f6, 500); header.IPv6(g[14:]).IsValid(len(g) - 14) {
		t.Error("SetIPv6PayloadLength(500) still valid")
	}
	if g := BadL4Checksum(f6); l4Valid(header.UDPProtocolNumber, n.Src6, n.Dst6, g[14+40:]) {
		t.Error("BadL4Checksum left the UDP checksum valid")
	}
	g = SetTCPDataOffset(f, 3)
	if header.TCP(ipOf(g).Payload()).DataOffset() != 12 || !l4Valid(header.TCPProtocolNumber, n.Src4, n.Dst4, ipOf(g).Payload()) {
		t.Error("SetTCPDataOffset: want data offset 12 with a valid checksum")
	}
	u4 := n.FrameV4(header.UDPProtocolNumber, UDP{SrcPort: 1, DstPort: 2, Payload: []byte("abc")}.Marshal(n.Src4, n.Dst4), IPv4{})
	g = SetUDPLength(u4, 400)
	if header.UDP(ipOf(g).Payload()).Length() != 400 || !l4Valid(header.UDPProtocolNumber, n.Src4, n.Dst4, ipOf(g).Payload()) {
		t.Error("SetUDPLength: want length 400 with a checksum valid over the IP payload")
	}
	if g := FixL4Checksum(BadL4Checksum(u4)); !bytes.Equal(g, u4) {
		t.Error("FixL4Checksum did not restore the checksum")
	}
	if g := Truncate(f, 20); len(g) != 20 {
		t.Errorf("Truncate: %d bytes", len(g))
	}
	if !bytes.Equal(f, orig) {
		t.Fatal("a mutator changed its argument")
	}
	// Too short for any field: returned unchanged, no panic.
	short := []byte{1, 2, 3}
	for _, m := range []func([]byte) []byte{BadIPv4Checksum, BadL4Checksum, func(b []byte) []byte { return SetIPv4TotalLength(b, 9) },
		func(b []byte) []byte { return SetIPv4HeaderLength(b, 15) }, func(b []byte) []byte { return SetIPv6PayloadLength(b, 9) }} {
		if g := m(short); !bytes.Equal(g, short) {
			t.Errorf("mutator changed a 3-byte frame to %x", g)
		}
	}
}

// TestRoutingHeaderParses: gVisor's extension header iterator reads the
// header back with its routing type, segments left and next header.
func TestRoutingHeaderParses(t *testing.T) {
	n := testNet
	l4 := UDP{SrcPort: 1, DstPort: 2, Payload: []byte("routed")}.Marshal(n.Src6, n.Dst6)
	ext := RoutingHeader(uint8(header.UDPProtocolNumber), 253, 0, n.Dst6)
	if len(ext) != 24 || ext[1] != 2 {
		t.Fatalf("routing header %x: want 24 bytes, length field 2", ext)
	}
	f := n.FrameV6(uint8(header.IPv6RoutingExtHdrIdentifier), ext, l4)
	ip6 := header.IPv6(f[header.EthernetMinimumSize:])
	it := header.MakeIPv6PayloadIterator(header.IPv6RoutingExtHdrIdentifier, buffer.MakeWithData(ip6.Payload()))
	defer it.Release()
	h, done, err := it.Next()
	if err != nil || done {
		t.Fatalf("Next: %v, done=%v", err, done)
	}
	r, ok := h.(header.IPv6RoutingExtHdr)
	if !ok {
		t.Fatalf("got %T, want a routing header", h)
	}
	defer r.Release()
	if r.SegmentsLeft() != 0 || it.NextHeaderIdentifier() != header.IPv6ExtensionHeaderIdentifier(header.UDPProtocolNumber) {
		t.Fatalf("segments left %d, next %d", r.SegmentsLeft(), it.NextHeaderIdentifier())
	}
	raw, done, err := it.Next()
	if err != nil || done {
		t.Fatalf("Next after the routing header: %v, done=%v", err, done)
	}
	defer raw.Release()
	if p, ok := raw.(header.IPv6RawPayloadHeader); !ok || !bytes.Equal(p.Buf.Flatten(), l4) {
		t.Fatalf("after the routing header: %T, want the UDP datagram", raw)
	}
}
