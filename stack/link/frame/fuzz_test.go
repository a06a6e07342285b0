package frame

import (
	"bytes"
	"testing"
)

// FuzzParse parses any input whole and cut at every length of head: it
// never panics or changes its input, every offset it reports lies in the
// frame and in the order the layers come, the payload ends within the
// frame, and a second parse of the same bytes gives the same Repr.
//
//	go test -run X -fuzz FuzzParse -fuzztime 60s ./stack/link/frame/
func FuzzParse(f *testing.F) {
	f.Add(build(false, ProtoTCP, nil, nil, tcpHdr(40000, 80, 1, 2, 0x18, 12), 10), 40)
	f.Add(build(false, ProtoUDP, nil, nil, udpHdr(1, 2), 3), 0)
	f.Add(build(true, ProtoUDP, [][]byte{hbh, dst16, route0, atomic}, []uint8{0, 60, 43, 44}, udpHdr(7, 9), 3), 90)
	f.Add(build(true, ProtoTCP, [][]byte{hbh, fragLast}, []uint8{0, 44}, nil, 16), 0)
	f.Add(build(true, ProtoTCP, [][]byte{route1}, []uint8{43}, nil, 16), 0)
	f.Add(build(true, ProtoICMPv6, nil, nil, []byte{128, 0, 0, 0}, 4), 0)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, frame []byte, cut int) {
		orig := bytes.Clone(frame)
		var r, r2 Repr
		err := r.Parse(frame)
		if !bytes.Equal(frame, orig) {
			t.Fatal("Parse changed its input")
		}
		checkRepr(t, &r, err, frame)
		err2 := r2.Parse(frame)
		if err2 != err || r != r2 {
			t.Fatalf("second parse differs: %v %+v / %v %+v", err, r, err2, r2)
		}
		// The same frame with fewer bytes at hand: the same result, or
		// ErrBeyondHead at no greater depth.
		if len(frame) > 0 {
			cut = int(uint(cut) % uint(len(frame)+1))
			var h Repr
			herr := h.ParseHead(frame[:cut], len(frame))
			checkRepr(t, &h, herr, frame)
			if herr != ErrBeyondHead && (herr != err || h != r) {
				t.Fatalf("head of %d bytes: %v %+v, whole: %v %+v", cut, herr, h, err, r)
			}
			if h.Depth > r.Depth {
				t.Fatalf("head parse deeper (%d) than the whole (%d)", h.Depth, r.Depth)
			}
		}
	})
}

func checkRepr(t *testing.T, r *Repr, err error, frame []byte) {
	t.Helper()
	n := len(frame)
	switch err {
	case nil, ErrTruncated, ErrBeyondHead, ErrBadHeader:
	default:
		t.Fatalf("unknown error %v", err)
	}
	if r.FrameLen != n {
		t.Fatalf("FrameLen %d of a %d-byte frame", r.FrameLen, n)
	}
	if r.Depth >= DepthIP {
		if r.IPEnd > n || r.IPEnd < EthernetLen+r.IPHdrLen {
			t.Fatalf("IPEnd %d, header %d, frame %d", r.IPEnd, r.IPHdrLen, n)
		}
		if l := len(r.SrcBytes()); l != len(r.DstBytes()) || l != map[uint8]int{4: 4, 6: 16}[r.IPVersion] || r.SrcAddr().BitLen() != 8*l {
			t.Fatalf("addresses %x %x of IPv%d", r.SrcBytes(), r.DstBytes(), r.IPVersion)
		}
	}
	if r.Depth >= DepthNetwork {
		if r.L4Off < EthernetLen+r.IPHdrLen+r.ExtLen || r.L4Off > r.IPEnd || r.L4Len() < 0 {
			t.Fatalf("L4Off %d, IP header %d+%d, IPEnd %d", r.L4Off, r.IPHdrLen, r.ExtLen, r.IPEnd)
		}
	}
	if r.Depth == DepthTransport {
		if r.Fragment || r.Routed {
			t.Fatal("transport parsed in a fragment or routed packet")
		}
		if r.PayloadOff != r.L4Off+r.L4HdrLen || r.PayloadLen < 0 || r.PayloadOff+r.PayloadLen > n || r.PayloadOff+r.PayloadLen != r.IPEnd {
			t.Fatalf("payload [%d,+%d) after L4 %d+%d, IPEnd %d, frame %d", r.PayloadOff, r.PayloadLen, r.L4Off, r.L4HdrLen, r.IPEnd, n)
		}
		if r.PayloadOff > n {
			t.Fatalf("payload offset %d past the frame", r.PayloadOff)
		}
	} else if r.PayloadOff != 0 || r.PayloadLen != 0 || r.SrcPort != 0 || r.DstPort != 0 {
		t.Fatalf("transport fields set at depth %d: %+v", r.Depth, *r)
	}
	if err == nil && r.Depth < DepthTransport && r.Depth >= DepthIP && !r.Fragment && !r.Routed {
		switch r.Proto {
		case ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6:
			t.Fatalf("transport %d not parsed, without an error", r.Proto)
		}
	}
}
