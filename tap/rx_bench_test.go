package tap

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// BenchmarkRxVouched measures what the receive checks cost a TSO
// super-frame (NEEDS_CSUM, 20 000 bytes), the GSO fast path: the checks
// alone (an IPv4 header checksum and the fragment test) beside the whole
// receive path of the same frame (header decode, checks, header split,
// delivery to a dispatcher that counts), its baseline.
func BenchmarkRxVouched(b *testing.B) {
	tcp4 := frameBuilder{proto: header.TCPProtocolNumber, payload: 20000}.build()
	tcp6 := frameBuilder{v6: true, proto: header.TCPProtocolNumber, payload: 20000}.build()
	tso4 := withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 16}, tcp4)
	tso6 := withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv6, gsoSize: 1428, csumStart: 54, csumOffset: 16}, tcp6)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{{"TSO4", tso4}, {"TSO6", tso6}} {
		frame := tc.frame[VnetHdrLen:]
		b.Run(tc.name+"/checks", func(b *testing.B) {
			var fi fragInfo
			head, tail := frame[:1536], frame[1536:]
			for b.Loop() {
				if verifyChecksums(head, tail, true, &fi) != csumNone {
					b.Fatal("verdict")
				}
			}
		})
		b.Run(tc.name+"/receive-path", func(b *testing.B) {
			q := fuzzLink(b, &countingDispatcher{})
			for b.Loop() {
				inject(q, tc.frame)
			}
			if st := q.link.Stats(); st.RxGSOFrames == 0 || st.RxDropBadCsum != 0 {
				b.Fatalf("stats %+v", st)
			}
		})
	}
}

// BenchmarkRxSmall measures the receive path (header decode, checks,
// split, delivery to a dispatcher that counts, the payload hook) of small
// frames: a 64-byte UDP datagram verified in software and a bare TCP ACK
// with NEEDS_CSUM, each with the copy-break (the frame copied into views of
// its size, the head view kept for the next read) and, as the baseline
// beside it, without (the frame delivered in the head view, which is
// replaced by a freshly cleared one for the next read).
func BenchmarkRxSmall(b *testing.B) {
	udp := withVnet(vnetHdr{}, frameBuilder{proto: header.UDPProtocolNumber, payload: 64}.build())
	ack := withVnet(vnetHdr{flags: vnetFNeedsCsum, csumStart: 34, csumOffset: 16}, frameBuilder{proto: header.TCPProtocolNumber}.build())
	for _, tc := range []struct {
		name  string
		frame []byte
	}{{"UDP64", udp}, {"ACK", ack}} {
		for _, mode := range []struct {
			name string
			cb   int
		}{{"copybreak", copyBreak}, {"view", 0}} {
			b.Run(tc.name+"/"+mode.name, func(b *testing.B) {
				q := fuzzLink(b, &countingDispatcher{})
				q.link.copyBreak = mode.cb
				hooked := 0
				q.link.SetPayloadHook(func(_ []byte, v *buffer.View, _ int) { hooked += v.Size() })
				b.ReportAllocs()
				for b.Loop() {
					inject(q, tc.frame)
				}
				if st := q.link.Stats(); st.RxDropBadCsum+st.RxDropBadVnetHdr != 0 {
					b.Fatalf("stats %+v", st)
				}
			})
		}
	}
}
