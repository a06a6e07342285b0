//go:build linux

package tap

import (
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/evchan/uring"
	"github.com/zcnet/zcnet/integration/nstest"
)

// BenchmarkTAPWrite measures what writing a batch of frames to a TAP queue
// costs per frame: one writev per frame (the link's transmit path) against
// one io_uring_enter carrying a WRITEV entry per frame (what coalescing the
// stack's writes would do). Each op writes 32 64-byte UDP datagrams with a
// virtio-net header to the kernel side of the device (192.0.2.2, its MAC),
// which receives them (no socket listens: the kernel drops them after its
// receive path). Needs root:
//
//	go test -run '^$' -bench BenchmarkTAPWrite ./tap/
func BenchmarkTAPWrite(b *testing.B) {
	for _, mode := range []string{"writev", "io_uring"} {
		b.Run(mode, func(b *testing.B) {
			ns := nstest.New(b)
			name := nstest.UniqueName(b, "zw")
			var l *Link
			if err := ns.Do(func() (err error) {
				l, err = Open(Config{Name: name, Queues: 1})
				return err
			}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(l.Close)
			ns.MustRun("ip", "link", "set", name, "address", "02:00:00:00:00:02")
			ns.MustRun("ip", "addr", "add", "192.0.2.2/24", "dev", name)
			ns.MustRun("ip", "link", "set", name, "up")
			// The kernel's ICMP replies need no ARP.
			ns.MustRun("ip", "neigh", "replace", "192.0.2.1", "lladdr", "02:00:00:00:00:01", "dev", name, "nud", "permanent")
			frame := withVnet(vnetHdr{}, frameBuilder{proto: header.UDPProtocolNumber, payload: 64}.build())
			fd := int(l.queues[0].file.Fd())
			const batch = 32
			iovs := make([][2]unix.Iovec, batch)
			for i := range iovs {
				setIovec(&iovs[i][0], frame[:VnetHdrLen])
				setIovec(&iovs[i][1], frame[VnetHdrLen:])
			}
			var r *uring.Ring
			if mode == "io_uring" {
				var err error
				if r, err = uring.New(batch); err != nil {
					b.Skipf("io_uring: %v", err)
				}
				defer r.Close()
			}
			cqes := make([]uring.CQE, 2*batch)
			cpu0 := cpuTime(b)
			for b.Loop() {
				if r == nil {
					for i := range iovs {
						if n, errno := writev(fd, iovs[i][:]); errno != 0 || n != len(frame) {
							b.Fatalf("writev: %d, %v", n, errno)
						}
					}
					continue
				}
				for i := range iovs {
					e := r.Next()
					e.PrepWritev(fd, iovs[i][:], -1)
					e.SetUserData(uint64(i))
				}
				if n, err := r.SubmitOnly(); n != batch || err != nil {
					b.Fatalf("submit: %d, %v", n, err)
				}
				if err := r.Wait(batch); err != nil {
					b.Fatal(err)
				}
				if n := r.Reap(cqes); n != batch {
					b.Fatalf("%d completions", n)
				}
				for _, c := range cqes[:batch] {
					if c.Res != int32(len(frame)) {
						b.Fatalf("write: %+v", c)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/frame")
			// CPU time of every thread of the process, io-wq workers
			// included, so work moved off the caller is still counted.
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N*batch), "cpu-ns/frame")
			if w := ioWorkers(b); len(w) != 0 {
				b.Logf("io-wq workers: %v", w)
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime(tb testing.TB) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
