package tap

import (
	"testing"

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
