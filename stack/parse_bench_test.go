package stack

import (
	"net/netip"
	"testing"
)

// BenchmarkParseFlow measures the payload hook's header walk (parseFlow)
// and the admission lookup's (tcpID) on a TCP segment's headers.
func BenchmarkParseFlow(b *testing.B) {
	hdr := tcpFrame(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 40000, 80)
	b.Run("parseFlow", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := parseFlow(hdr); !ok {
				b.Fatal("not parsed")
			}
		}
	})
	b.Run("tcpID", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := tcpID(hdr); !ok {
				b.Fatal("not parsed")
			}
		}
	})
}
