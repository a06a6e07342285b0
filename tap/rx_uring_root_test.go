//go:build linux

package tap

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/integration/nstest"
)

// burstLink opens a one-queue TAP link in a namespace of its own, with the
// kernel side at 192.0.2.1 and a static neighbour entry for 192.0.2.2 at the
// link's MAC, so the kernel sends datagrams to the link without ARP. The
// link is not attached: frames the kernel sends wait in the device's queue.
// send(n) sends n 64-byte UDP datagrams from the kernel side.
func burstLink(tb testing.TB, cfg Config) (l *Link, send func(n int)) {
	tb.Helper()
	ns := nstest.New(tb)
	name := nstest.UniqueName(tb, "zu")
	cfg.Name = name
	cfg.Queues = 1
	if err := ns.Do(func() (err error) {
		l, err = Open(cfg)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(l.Close)
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", name)
	ns.MustRun("ip", "link", "set", name, "up")
	ns.MustRun("ip", "neigh", "replace", "192.0.2.2", "lladdr", l.HardwareAddr().String(), "dev", name, "nud", "permanent")
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{192, 0, 2, 2}}
	payload := make([]byte, 64)
	return l, func(n int) {
		for i := 0; i < n; i++ {
			if err := unix.Sendto(fd, payload, 0, to); err != nil {
				tb.Fatalf("datagram %d of %d: %v", i, n, err)
			}
		}
	}
}

// ioWorkers lists the process's io_uring worker threads (iou-wrk-*), which
// exist only when the kernel punts requests to io-wq.
func ioWorkers(tb testing.TB) []string {
	tb.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		tb.Fatal(err)
	}
	var w []string
	for _, t := range tasks {
		comm, err := os.ReadFile("/proc/self/task/" + t.Name() + "/comm")
		if err == nil && strings.HasPrefix(string(comm), "iou-") {
			w = append(w, strings.TrimSpace(string(comm)))
		}
	}
	return w
}

// TestRingBurst queues a burst of frames in the TAP device before the link
// is attached, then attaches it: with Config.IOURing the reader must move
// them in batches of several reads per system call, all inline (no
// fallback, no io-wq worker thread), and deliver every one; by default, and
// when io_uring is asked for but refused (forced here as the kernel's
// ENOSYS), the same burst goes through readv, with no ring batch counted.
func TestRingBurst(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const burst = 500
	for _, mode := range []string{"io_uring", "readv", "refused"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "refused" {
				newRxRingFn = func() (*rxRing, error) { return nil, fmt.Errorf("io_uring_setup: %w", syscall.ENOSYS) }
				defer func() { newRxRingFn = newRxRing }()
			}
			l, send := burstLink(t, Config{IOURing: mode != "readv"})
			info := l.Info()
			ring := mode == "io_uring"
			want := map[string]string{"io_uring": "io_uring (up to 64 reads", "readv": "readv", "refused": "readv (io_uring unavailable: io_uring_setup: function not implemented)"}[mode]
			if !strings.HasPrefix(info.RxBatch, want) || !strings.Contains(info.String(), info.RxBatch) {
				t.Fatalf("Info.RxBatch %q, want %q; String %q", info.RxBatch, want, info.String())
			}
			send(burst)
			d := &countingDispatcher{}
			l.Attach(d)
			if !evchantest.Poll(10*time.Second, func() bool { return d.n.Load() >= burst }) {
				t.Fatalf("delivered %d of %d; %+v", d.n.Load(), burst, l.Stats())
			}
			st := l.Stats()
			if st.RxFrames < burst || st.RxRingFallbacks != 0 || st.RxReadErrors != 0 {
				t.Fatalf("stats %+v", st)
			}
			if !ring {
				if st.RxRingBatches != 0 {
					t.Fatalf("readv link counted %d ring batches", st.RxRingBatches)
				}
			} else {
				// The burst was waiting whole: batches grow to
				// rxBatchMax, so far fewer calls than frames.
				if st.RxRingBatches == 0 || st.RxFrames < 4*st.RxRingBatches {
					t.Fatalf("%d frames in %d ring batches", st.RxFrames, st.RxRingBatches)
				}
				if w := ioWorkers(t); len(w) != 0 {
					t.Fatalf("io-wq workers %v: reads were not inline", w)
				}
			}
			l.Close()
		})
	}
}

// BenchmarkTAPRead measures the receive path of a TAP queue per frame, with
// the frames already waiting: one readv per frame against batches of reads
// per io_uring_enter. Each op reads a burst of 256 64-byte UDP datagrams the
// kernel queued in the device beforehand (their sending is not timed), by
// calling the reader's callback directly until the queue is empty; the
// delivery goes to a dispatcher that counts. Needs root:
//
//	go test -run '^$' -bench BenchmarkTAPRead -benchtime 200x ./tap/
func BenchmarkTAPRead(b *testing.B) {
	for _, mode := range []string{"readv", "io_uring", "readv/read-only", "io_uring/read-only"} {
		b.Run(mode, func(b *testing.B) {
			// read-only: no dispatcher, so every frame is read and
			// dropped at once (RxDropNotAttached): the cost of the
			// reads alone.
			readOnly := strings.HasSuffix(mode, "/read-only")
			mode, _, _ := strings.Cut(mode, "/")
			l, send := burstLink(b, Config{IOURing: mode == "io_uring"})
			q := l.queues[0]
			if (q.rxr != nil) != (mode == "io_uring") {
				b.Fatalf("%s: %s", mode, l.Info().RxBatch)
			}
			d := &countingDispatcher{}
			if !readOnly {
				l.dispatch.Store(&dispatcherBox{d})
			}
			fd := q.file.Fd()
			defer q.rx.release()
			defer q.rxr.releaseSlots()
			const burst = 256
			for b.Loop() {
				b.StopTimer()
				send(burst)
				want := q.c.rxFrames.Load() + burst
				deadline := time.Now().Add(time.Second)
				b.StartTimer()
				// Read until the queue is empty and the burst is in,
				// or a second has passed (the kernel drops nothing
				// here, but the loop is bounded anyway).
				for q.readFn(fd) || q.c.rxFrames.Load() < want && time.Now().Before(deadline) {
				}
			}
			// End the deliverer goroutine the hand-off started (the
			// reader's run would on return) and let it finish.
			q.stopHandoff()
			l.wg.Wait()
			st := l.Stats()
			delivered := uint64(d.n.Load())
			if readOnly {
				delivered = st.RxDropNotAttached
			}
			if st.RxFrames == 0 || delivered != st.RxFrames {
				b.Fatalf("delivered %d of %d frames read; %+v", delivered, st.RxFrames, st)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(st.RxFrames), "ns/frame")
			if st.RxRingBatches > 0 {
				b.ReportMetric(float64(st.RxFrames)/float64(st.RxRingBatches), "frames/syscall")
			}
			if w := ioWorkers(b); len(w) != 0 {
				b.Fatalf("io-wq workers %v", w)
			}
			if st.RxRingFallbacks != 0 {
				b.Fatalf("fell back: %v", q.ringErr)
			}
			if q.rxr != nil {
				b.Logf("rw_flags %#x (RWF_NOWAIT %#x)", q.rxr.rwFlags, unix.RWF_NOWAIT)
			}
		})
	}
}
