package dmapool

import (
	"sync"
	"testing"
)

// Benchmarks: reserve+release of one buffer, each beside its baselines, a
// sync.Pool of []byte and make. Every variant writes one byte, so that each
// hands out memory the caller can use. See doc.go for figures.

var sink []byte

// benchPool is one setup for all benchmarks: 64 MiB, pinned when the
// memlock limit allows.
func benchPool(b *testing.B) *Pool {
	return newPool(b, Config{Size: 64 << 20, Pin: PinPrefer})
}

func benchSizes(b *testing.B, parallel bool) {
	for _, size := range []struct {
		name string
		n    int
	}{{"2KiB", 2 << 10}, {"64KiB", 64 << 10}} {
		n := size.n
		b.Run(size.name+"/dmapool", func(b *testing.B) {
			p := benchPool(b)
			b.ReportAllocs()
			body := func() {
				buf, err := p.Reserve(n)
				if err != nil {
					b.Fatal(err)
				}
				buf.Bytes()[0] = 1
				if err := buf.Release(); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			run(b, parallel, body)
		})
		b.Run(size.name+"/sync.Pool", func(b *testing.B) {
			sp := sync.Pool{New: func() any { s := make([]byte, n); return &s }}
			b.ReportAllocs()
			run(b, parallel, func() {
				s := sp.Get().(*[]byte)
				(*s)[0] = 1
				sp.Put(s)
			})
		})
		b.Run(size.name+"/make", func(b *testing.B) {
			b.ReportAllocs()
			run(b, parallel, func() {
				s := make([]byte, n)
				s[0] = 1
				sink = s
			})
		})
	}
}

func run(b *testing.B, parallel bool, body func()) {
	if !parallel {
		for b.Loop() {
			body()
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body()
		}
	})
}

func BenchmarkReserveRelease(b *testing.B)         { benchSizes(b, false) }
func BenchmarkReserveReleaseParallel(b *testing.B) { benchSizes(b, true) }
