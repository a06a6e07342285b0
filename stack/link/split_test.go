package link

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/stack/link/linktest"
)

func TestHeaderLen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		frame   []byte
		want    int
		wantErr bool
	}{
		{"tcp4", linktest.Frame(false, header.TCPProtocolNumber, 0, 100), 14 + 20 + 20, false},
		{"tcp4 options", linktest.Frame(false, header.TCPProtocolNumber, 12, 100), 14 + 20 + 32, false},
		{"udp4", linktest.Frame(false, header.UDPProtocolNumber, 0, 100), 14 + 20 + 8, false},
		{"tcp6", linktest.Frame(true, header.TCPProtocolNumber, 0, 100), 14 + 40 + 20, false},
		{"udp6", linktest.Frame(true, header.UDPProtocolNumber, 0, 1), 14 + 40 + 8, false},
		{"headers only", linktest.Frame(false, header.TCPProtocolNumber, 0, 0), 0, false},
		{"short", linktest.Frame(false, header.TCPProtocolNumber, 0, 100)[:40], 0, false},
		{"empty", nil, 0, false},
	} {
		if got := HeaderLen(tc.frame); got != tc.want {
			t.Errorf("%s: HeaderLen = %d, want %d", tc.name, got, tc.want)
		}
	}
	// A fragment is not split: its transport header may not be there.
	f := linktest.Frame(false, header.UDPProtocolNumber, 0, 100)
	ip := header.IPv4(f[14:])
	ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	if got := HeaderLen(f); got != 0 {
		t.Errorf("fragment: HeaderLen = %d, want 0", got)
	}
	// Ethernet padding after a segment without payload is not payload.
	f = append(linktest.Frame(false, header.TCPProtocolNumber, 0, 0), make([]byte, 6)...)
	if got := HeaderLen(f); got != 0 {
		t.Errorf("padded, no payload: HeaderLen = %d, want 0", got)
	}
	// A TCP data offset pointing past the frame is not trusted.
	f = linktest.Frame(false, header.TCPProtocolNumber, 0, 4)
	f[14+20+12] = 15 << 4
	if got := HeaderLen(f); got != 0 {
		t.Errorf("bad data offset: HeaderLen = %d, want 0", got)
	}
}

func TestSplitPayloadKeepsPayloadInPlace(t *testing.T) {
	frame := linktest.Frame(false, header.TCPProtocolNumber, 0, 1000)
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
	f.Add(linktest.Frame(false, header.TCPProtocolNumber, 12, 10))
	f.Add(linktest.Frame(true, header.UDPProtocolNumber, 0, 10))
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
