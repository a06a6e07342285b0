package evchan

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Benchmarks: events per second from P producers to one consumer, with
// the consumer taking up to `batch` events per call and each producer
// posting `batch` events per reservation. Each shape has its baselines
// beside it: a buffered Go channel of the same capacity carrying the same
// Event values, and one eventfd write plus one read per event.

const benchCapacity = 4096

var benchShapes = []struct {
	producers, batch int
}{
	{1, 1}, {1, 64}, {4, 1}, {4, 64},
}

func reportRate(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// split divides n events among p producers.
func split(n, p, i int) int {
	q := n / p
	if i < n%p {
		q++
	}
	return q
}

func BenchmarkChannel(b *testing.B) {
	for _, sh := range benchShapes {
		b.Run(fmt.Sprintf("%dP1C/batch=%d", sh.producers, sh.batch), func(b *testing.B) {
			c, err := New(Config{Capacity: benchCapacity})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			data := new(int)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range sh.producers {
				wg.Go(func() {
					evs := make([]Event, sh.batch)
					for i := range evs {
						evs[i] = Event{Source: SourceUser, Cookie: uint64(p), Data: data}
					}
					for left := split(b.N, sh.producers, p); left > 0; {
						k := min(sh.batch, left)
						r, err := c.ReserveContext(ctx, k)
						if err != nil {
							b.Error(err)
							return
						}
						if k == 1 {
							err = r.Post(evs[0])
						} else {
							_, err = r.PostBatch(evs[:k])
						}
						if err != nil {
							b.Error(err)
							return
						}
						left -= k
					}
				})
			}
			dst := make([]Event, sh.batch)
			calls := 0
			for got := 0; got < b.N; {
				n, err := c.Next(ctx, dst)
				if err != nil {
					b.Fatal(err)
				}
				got += n
				calls++
			}
			reportRate(b, start)
			b.ReportMetric(float64(b.N)/float64(calls), "events/batch")
			b.ReportMetric(float64(c.Stats().Parks)/float64(b.N), "parks/event")
			wg.Wait()
		})
	}
}

// BenchmarkGoChan is the baseline: a buffered Go channel of Events. The
// consumer takes a batch as one blocking receive followed by as many
// receives as len(ch) promises, the closest a Go channel comes to
// batching.
func BenchmarkGoChan(b *testing.B) {
	for _, sh := range benchShapes {
		b.Run(fmt.Sprintf("%dP1C/batch=%d", sh.producers, sh.batch), func(b *testing.B) {
			ch := make(chan Event, benchCapacity)
			data := new(int)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range sh.producers {
				wg.Go(func() {
					ev := Event{Source: SourceUser, Cookie: uint64(p), Data: data}
					for left := split(b.N, sh.producers, p); left > 0; left-- {
						ch <- ev
					}
				})
			}
			dst := make([]Event, sh.batch)
			for got := 0; got < b.N; {
				dst[0] = <-ch
				n := 1
				// The only consumer: what len reports is there to take.
				for n < len(dst) && len(ch) > 0 {
					dst[n] = <-ch
					n++
				}
				got += n
			}
			reportRate(b, start)
			wg.Wait()
		})
	}
}
