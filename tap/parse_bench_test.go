package tap

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/stack/link"
)

// BenchmarkParse measures the per-frame header walks of the receive path
// on their own, for small TCP and UDP frames over IPv4 and IPv6 (one with
// a hop-by-hop header): the header split's HeaderLen, the software
// checksum check of an unvouched frame (verifyChecksums, which also sums
// the bytes), and the admission's tcpSegment.
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"TCP4", frameBuilder{proto: header.TCPProtocolNumber, payload: 64}.build()},
		{"UDP6", frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 64}.build()},
		{"UDP6HBH", frameBuilder{v6: true, proto: header.UDPProtocolNumber, payload: 64, hopByHop: true}.build()},
	} {
		b.Run(tc.name+"/HeaderLen", func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n += link.HeaderLen(tc.frame)
			}
			sinkInt = n
		})
		b.Run(tc.name+"/Verify", func(b *testing.B) {
			b.ReportAllocs()
			var fi fragInfo
			for b.Loop() {
				if v := verifyChecksums(tc.frame, nil, false, &fi); v != csumGood {
					b.Fatalf("verdict %d", v)
				}
			}
		})
		b.Run(tc.name+"/TCPSegment", func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				_, _, off, _ := tcpSegment(tc.frame, len(tc.frame))
				n += off
			}
			sinkInt = n
		})
	}
}

var sinkInt int
