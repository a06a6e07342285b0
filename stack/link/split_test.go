package link

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// frame builds an Ethernet frame carrying an IP packet with a TCP or UDP
// header and payload, using gVisor's header encoders.
func splitTestFrame(t testing.TB, v6 bool, proto tcpip.TransportProtocolNumber, tcpOpts, payload int) []byte {
	l4 := header.UDPMinimumSize
	if proto == header.TCPProtocolNumber {
		l4 = header.TCPMinimumSize + tcpOpts
	}
	l3 := header.IPv4MinimumSize
	if v6 {
		l3 = header.IPv6MinimumSize
	}
	b := make([]byte, header.EthernetMinimumSize+l3+l4+payload)
	eth := header.Ethernet(b)
	src, dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	if v6 {
		src, dst = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}), tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
		eth.Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		header.IPv6(b[14:]).Encode(&header.IPv6Fields{PayloadLength: uint16(l4 + payload), TransportProtocol: proto, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		eth.Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
		header.IPv4(b[14:]).Encode(&header.IPv4Fields{TotalLength: uint16(l3 + l4 + payload), Protocol: uint8(proto), TTL: 64, SrcAddr: src, DstAddr: dst})
	}
	t4 := b[14+l3:]
	if proto == header.TCPProtocolNumber {
		header.TCP(t4).Encode(&header.TCPFields{SrcPort: 1, DstPort: 2, DataOffset: uint8(l4), Flags: header.TCPFlagAck, WindowSize: 100})
	} else {
		header.UDP(t4).Encode(&header.UDPFields{SrcPort: 1, DstPort: 2, Length: uint16(l4 + payload)})
	}
	for i := range payload {
		b[len(b)-payload+i] = byte(i)
	}
	return b
}

func TestHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		frame   []byte
		want    int
		wantErr bool
	}{
		{"tcp4", splitTestFrame(t, false, header.TCPProtocolNumber, 0, 100), 14 + 20 + 20, false},
		{"tcp4 options", splitTestFrame(t, false, header.TCPProtocolNumber, 12, 100), 14 + 20 + 32, false},
		{"udp4", splitTestFrame(t, false, header.UDPProtocolNumber, 0, 100), 14 + 20 + 8, false},
		{"tcp6", splitTestFrame(t, true, header.TCPProtocolNumber, 0, 100), 14 + 40 + 20, false},
		{"udp6", splitTestFrame(t, true, header.UDPProtocolNumber, 0, 1), 14 + 40 + 8, false},
		{"headers only", splitTestFrame(t, false, header.TCPProtocolNumber, 0, 0), 0, false},
		{"short", splitTestFrame(t, false, header.TCPProtocolNumber, 0, 100)[:40], 0, false},
		{"empty", nil, 0, false},
	} {
		if got := HeaderLen(tc.frame); got != tc.want {
			t.Errorf("%s: HeaderLen = %d, want %d", tc.name, got, tc.want)
		}
	}
	// A fragment is not split: its transport header may not be there.
	f := splitTestFrame(t, false, header.UDPProtocolNumber, 0, 100)
	ip := header.IPv4(f[14:])
	ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	if got := HeaderLen(f); got != 0 {
		t.Errorf("fragment: HeaderLen = %d, want 0", got)
	}
	// Ethernet padding after a segment without payload is not payload.
	f = append(splitTestFrame(t, false, header.TCPProtocolNumber, 0, 0), make([]byte, 6)...)
	if got := HeaderLen(f); got != 0 {
		t.Errorf("padded, no payload: HeaderLen = %d, want 0", got)
	}
	// A TCP data offset pointing past the frame is not trusted.
	f = splitTestFrame(t, false, header.TCPProtocolNumber, 0, 4)
	f[14+20+12] = 15 << 4
	if got := HeaderLen(f); got != 0 {
		t.Errorf("bad data offset: HeaderLen = %d, want 0", got)
	}
}

func TestSplitPayloadKeepsPayloadInPlace(t *testing.T) {
	frame := splitTestFrame(t, false, header.TCPProtocolNumber, 0, 1000)
	v := buffer.NewViewWithData(frame)
	base := &v.AsSlice()[54]
	buf := SplitPayload(v, HeaderLen(frame))
	defer buf.Release()
	if buf.Size() != int64(len(frame)) {
		t.Fatalf("size %d, want %d", buf.Size(), len(frame))
	}
	views := buf.AsViewList()
	first := views.Front()
	if first == nil || first.Size() != 54 {
		t.Fatalf("first view holds %d bytes, want the 54 header bytes", first.Size())
	}
	second := first.Next()
	if second == nil || &second.AsSlice()[0] != base {
		t.Fatal("payload view does not start where the payload was received")
	}
	if got := buf.Flatten(); string(got) != string(frame) {
		t.Fatal("split buffer's bytes differ from the frame")
	}
}

func FuzzHeaderLen(f *testing.F) {
	f.Add(splitTestFrame(f, false, header.TCPProtocolNumber, 12, 10))
	f.Add(splitTestFrame(f, true, header.UDPProtocolNumber, 0, 10))
	f.Fuzz(func(t *testing.T, frame []byte) {
		n := HeaderLen(frame)
		if n < 0 || n > MaxSplitHeader || (n > 0 && n >= len(frame)) {
			t.Fatalf("HeaderLen = %d for a %d-byte frame", n, len(frame))
		}
		v := buffer.NewViewWithData(frame)
		buf := SplitPayload(v, n)
		if got := buf.Flatten(); string(got) != string(frame) {
			t.Fatal("SplitPayload changed the frame's bytes")
		}
		buf.Release()
	})
}
