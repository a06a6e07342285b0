package tap

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestCopyBreak runs small and large frames through the receive path: a
// frame of at most copyBreak bytes is copied (every byte counted), split
// the same way (the hook sees the payload, in a view of its own), delivered
// intact, and leaves the head view with the reader; a larger one is
// delivered in the head view and copies only its headers.
func TestCopyBreak(t *testing.T) {
	small := frameBuilder{proto: header.UDPProtocolNumber, payload: 64}.build()
	ack := frameBuilder{proto: header.TCPProtocolNumber}.build()
	large := frameBuilder{proto: header.UDPProtocolNumber, payload: 1000}.build()
	for _, tc := range []struct {
		name      string
		frame     []byte
		copied    bool
		hookBytes int
	}{
		{"UDP 64", small, true, 64},
		{"bare ACK", ack, true, 0},
		{"UDP 1000", large, false, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &recordingDispatcher{}
			q := fuzzLink(t, d)
			var hooked [][]byte
			q.link.SetPayloadHook(func(_ []byte, v *buffer.View, _ int) {
				hooked = append(hooked, append([]byte(nil), v.AsSlice()...))
			})
			q.rx.refill(q.link)
			head := q.rx.head
			inject(q, withVnet(vnetHdr{}, tc.frame))
			st := q.link.Stats()
			if len(d.pkts) != 1 || !bytes.HasSuffix(d.pkts[0], tc.frame[header.EthernetMinimumSize:]) {
				t.Fatalf("delivered %d packets, want the frame's IP packet: %+v", len(d.pkts), st)
			}
			hb := 0
			for _, h := range hooked {
				hb += len(h)
			}
			if hb != tc.hookBytes || (hb > 0 && !bytes.Equal(hooked[0], tc.frame[len(tc.frame)-hb:])) {
				t.Fatalf("hook saw %d bytes %x, want the %d payload bytes", hb, hooked, tc.hookBytes)
			}
			if tc.copied {
				if st.RxCopyBreakFrames != 1 || st.RxCopiedBytes != uint64(len(tc.frame)) {
					t.Fatalf("copy-break frames %d, copied %d bytes; want 1 and %d", st.RxCopyBreakFrames, st.RxCopiedBytes, len(tc.frame))
				}
				if q.rx.head != head {
					t.Fatal("the head view left the reader")
				}
				return
			}
			if st.RxCopyBreakFrames != 0 || st.RxCopiedBytes != uint64(len(tc.frame)-tc.hookBytes) {
				t.Fatalf("copy-break frames %d, copied %d bytes; want 0 and the headers", st.RxCopyBreakFrames, st.RxCopiedBytes)
			}
			if q.rx.head == head {
				t.Fatal("the head view stayed with the reader")
			}
		})
	}
}
