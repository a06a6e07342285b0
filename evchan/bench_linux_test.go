package evchan

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkEventfdPerEvent is the baseline of signalling every event
// through the kernel: one eventfd write by the producer and one read by
// the consumer per event (semaphore mode, blocking).
func BenchmarkEventfdPerEvent(b *testing.B) {
	for _, producers := range []int{1, 4} {
		b.Run(fmt.Sprintf("%dP1C", producers), func(b *testing.B) {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_SEMAPHORE)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					var one [8]byte
					binary.NativeEndian.PutUint64(one[:], 1)
					for left := split(b.N, producers, p); left > 0; left-- {
						if _, err := unix.Write(fd, one[:]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			var buf [8]byte
			for range b.N {
				if _, err := unix.Read(fd, buf[:]); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, start)
			wg.Wait()
		})
	}
}
