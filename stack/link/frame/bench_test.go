package frame

import "testing"

// BenchmarkParse parses small frames whole: TCP over IPv4 with options,
// UDP over IPv6, and UDP over IPv6 behind a hop-by-hop header.
func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"TCP4", build(false, ProtoTCP, nil, nil, tcpHdr(40000, 80, 1, 2, 0x18, 12), 64)},
		{"UDP6", build(true, ProtoUDP, nil, nil, udpHdr(1, 2), 64)},
		{"UDP6HBH", build(true, ProtoUDP, [][]byte{hbh}, []uint8{0}, udpHdr(1, 2), 64)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var r Repr
			for b.Loop() {
				if err := r.Parse(tc.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
