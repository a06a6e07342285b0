//go:build linux

package file_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/api/file/filetest"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
)

// File benchmarks, each engine beside its baseline, plain os.File
// (ReadAt/WriteAt) from the same number of goroutines:
//
//	BenchmarkFileRandRead4K     4 KiB reads at random 4 KiB-aligned offsets
//	                            of a 64 MiB file in the page cache (buffered)
//	BenchmarkFileSeqWrite1M     1 MiB buffered writes, each goroutine
//	                            appending to its own file (wrapping at 32 MiB)
//	BenchmarkFileDirectRead4K   the same reads with O_DIRECT: the disk
//	BenchmarkFileDirectRead64K  64 KiB reads with O_DIRECT
//	BenchmarkFileFixed          io_uring alone, pool memory registered as
//	                            fixed buffers or not (Config.FixedBuffers)
//
// Sub-benchmarks are engine/g=goroutines/qd=ops each keeps in flight (os.File
// is always qd=1: a goroutine per outstanding call). Besides ns/op they
// report ops/s and cpu-ns/op: user+system CPU time of the whole process
// (io_uring's kernel workers included) per op. The engines read into and
// write from the caller's slices (Op.Mem), as os.File does, except in
// BenchmarkFileFixed, which uses pool Bufs.
//
//	go test -run '^$' -bench 'BenchmarkFile' -count 5 ./api/file/

var benchEngines = []string{"io_uring", "workers", "os.File"}

func BenchmarkFileRandRead4K(b *testing.B) {
	const fileSize, blk = 64 << 20, 4 << 10
	f := benchFile(b, fileSize)
	for _, eng := range benchEngines {
		b.Run(eng, func(b *testing.B) {
			s := benchStack(b, eng)
			for _, sh := range []struct{ g, qd int }{{1, 1}, {8, 1}, {1, 32}} {
				if eng == "os.File" && sh.qd > 1 {
					sh.g, sh.qd = sh.qd, 1 // the same number of reads in flight
				}
				b.Run(fmt.Sprintf("g=%d/qd=%d", sh.g, sh.qd), func(b *testing.B) {
					runFileBench(b, s, sh.g, sh.qd, blk, func(int) *os.File { return f }, false,
						func(r *rand.Rand, _ *int64) int64 { return int64(r.IntN(fileSize/blk)) * blk })
				})
			}
		})
	}
}

func BenchmarkFileSeqWrite1M(b *testing.B) {
	const blk, wrap = 1 << 20, 32 << 20
	dir := b.TempDir()
	files := make([]*os.File, 8)
	for i := range files {
		f, err := os.Create(fmt.Sprintf("%s/w%d", dir, i))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		files[i] = f
	}
	for _, eng := range benchEngines {
		b.Run(eng, func(b *testing.B) {
			s := benchStack(b, eng)
			for _, g := range []int{1, 8} {
				b.Run(fmt.Sprintf("g=%d/qd=1", g), func(b *testing.B) {
					b.SetBytes(blk)
					runFileBench(b, s, g, 1, blk, func(i int) *os.File { return files[i] }, true,
						func(_ *rand.Rand, seq *int64) int64 {
							off := *seq
							*seq = (*seq + blk) % wrap
							return off
						})
				})
			}
		})
	}
}

// BenchmarkFileDirectRead64K reads 64 KiB at random 64 KiB-aligned
// offsets of a 64 MiB file opened with O_DIRECT (the disk, not the page
// cache): where a deep queue from one goroutine pays off.
func BenchmarkFileDirectRead64K(b *testing.B) { benchDirectRead(b, 64<<10) }

// BenchmarkFileDirectRead4K is BenchmarkFileRandRead4K with O_DIRECT.
func BenchmarkFileDirectRead4K(b *testing.B) { benchDirectRead(b, 4<<10) }

// directBenchFile returns a 64 MiB file of random bytes opened read-only
// with O_DIRECT, or skips.
func directBenchFile(b *testing.B) *os.File {
	dir := b.TempDir()
	name := dir + "/direct"
	if err := os.WriteFile(name, randBytes(rand.New(rand.NewPCG(9, 9)), 64<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Skipf("O_DIRECT unavailable in %s: %v", dir, err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// benchDirectRead reads blk bytes (heap slices: Go aligns 4 KiB objects
// and larger to 4 KiB, which O_DIRECT needs) at random blk-aligned
// offsets of directBenchFile.
func benchDirectRead(b *testing.B, blk int) {
	const fileSize = 64 << 20
	f := directBenchFile(b)
	for _, eng := range benchEngines {
		b.Run(eng, func(b *testing.B) {
			s := benchStack(b, eng)
			for _, sh := range []struct{ g, qd int }{{1, 1}, {1, 32}} {
				if eng == "os.File" && sh.qd > 1 {
					sh.g, sh.qd = sh.qd, 1
				}
				b.Run(fmt.Sprintf("g=%d/qd=%d", sh.g, sh.qd), func(b *testing.B) {
					b.SetBytes(int64(blk))
					runFileBench(b, s, sh.g, sh.qd, blk, func(int) *os.File { return f }, false,
						func(r *rand.Rand, _ *int64) int64 { return int64(r.IntN(fileSize/blk) * blk) })
				})
			}
		})
	}
}

// benchFile returns a file of size random bytes, read once so that it is
// in the page cache.
func benchFile(b *testing.B, size int) *os.File {
	f := filetest.TempFile(b, b.TempDir(), randBytes(rand.New(rand.NewPCG(7, 8)), size))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < int64(size); off += int64(len(buf)) {
		if _, err := f.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// benchStack is the API stack for an engine; nil for os.File.
func benchStack(b *testing.B, eng string) *api.Stack {
	switch eng {
	case "io_uring":
		return filetest.NewStack(b, file.Config{Engine: file.EngineURing}, nil)
	case "workers":
		return filetest.NewStack(b, file.Config{Engine: file.EngineWorkers}, nil)
	}
	return nil
}

// runFileBench does b.N ops of size bytes from g goroutines, each keeping
// qd in flight: through s's engine, or with os.File calls when s is nil.
// file(i) is goroutine i's file, off picks each op's offset.
func runFileBench(b *testing.B, s *api.Stack, g, qd, size int, open func(int) *os.File, write bool, off func(*rand.Rand, *int64) int64) {
	runFileBenchOn(b, g, func(i int, claim func() bool, off func() int64) error {
		if s == nil {
			return benchOSFile(open(i), size, write, claim, off)
		}
		return benchEngine(s, open(i), qd, size, write, claim, off)
	}, off)
}

// runFileBenchWith runs one goroutine doing run.
func runFileBenchWith(b *testing.B, run func(claim func() bool, off func() int64) error, off func(*rand.Rand, *int64) int64) {
	runFileBenchOn(b, 1, func(_ int, claim func() bool, off func() int64) error { return run(claim, off) }, off)
}

// runFileBenchOn has g goroutines share b.N ops: goroutine i calls run,
// which does ops while claim says so, at offsets off picks. It reports
// ops/s and cpu-ns/op.
func runFileBenchOn(b *testing.B, g int, run func(i int, claim func() bool, off func() int64) error, off func(*rand.Rand, *int64) int64) {
	var left atomic.Int64
	left.Store(int64(b.N))
	claim := func() bool { return left.Add(-1) >= 0 }
	var wg sync.WaitGroup
	errs := make(chan error, g)
	var ru0 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 9))
			var seq int64
			errs <- run(i, claim, func() int64 { return off(r, &seq) })
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func benchOSFile(f *os.File, size int, write bool, claim func() bool, off func() int64) error {
	buf := make([]byte, size)
	for claim() {
		var n int
		var err error
		if write {
			n, err = f.WriteAt(buf, off())
		} else {
			n, err = f.ReadAt(buf, off())
		}
		if err != nil || n != size {
			return fmt.Errorf("%d bytes: %v", n, err)
		}
	}
	return nil
}

func benchEngine(s *api.Stack, f *os.File, qd, size int, write bool, claim func() bool, off func() int64) error {
	ec, err := evchan.New(evchan.Config{Capacity: 2 * qd})
	if err != nil {
		return err
	}
	defer ec.Close()
	kind := api.OpRead
	if write {
		kind = api.OpWrite
	}
	// One Submit per batch of completions (lio_listio), as a program
	// keeping qd ops in flight would.
	bufs := make([][]byte, qd)
	batch := make([]*api.Op, 0, qd)
	add := func(i int) {
		batch = append(batch, &api.Op{Kind: kind, File: file.Request{File: f, Offset: off(), Mem: bufs[i]}, EC: ec, Cookie: uint64(i)})
	}
	inflight := 0
	flush := func() error {
		inflight += len(batch)
		err := s.Submit(context.Background(), false, batch...)
		batch = batch[:0]
		return err
	}
	for i := range bufs {
		bufs[i] = make([]byte, size)
		if claim() {
			add(i)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	evs := make([]evchan.Event, qd)
	for inflight > 0 {
		n, err := ec.Next(context.Background(), evs)
		if err != nil {
			return err
		}
		for _, ev := range evs[:n] {
			inflight--
			if ev.Errno != 0 || ev.Result != int64(size) {
				return fmt.Errorf("completion %v", ev)
			}
			if claim() {
				add(int(ev.Cookie))
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkFileFixed compares io_uring with the pool registered as fixed
// buffers (READ_FIXED, WRITE_FIXED) against the same ops without
// (Config.FixedBuffers), both from pool Bufs (4 KiB slots) and one
// goroutine:
//
//	read4K-direct/qd=32    O_DIRECT 4 KiB reads at random offsets, 32 in flight
//	read64K-direct/qd=32   O_DIRECT 64 KiB reads, 32 in flight
//	write1M-direct/qd=1    O_DIRECT 1 MiB sequential writes (wrapping at 32 MiB)
//	write1M/qd=1           buffered 1 MiB sequential writes
//
// Reads hand their Buf back in the completion and it goes into the next
// read; each write reserves a Buf, which the write releases.
func BenchmarkFileFixed(b *testing.B) {
	const fileSize, wrap = 64 << 20, 32 << 20
	rf := directBenchFile(b)
	dir := b.TempDir()
	wf, err := os.OpenFile(dir+"/w-direct", os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
	if err != nil {
		b.Skipf("O_DIRECT unavailable in %s: %v", dir, err)
	}
	b.Cleanup(func() { wf.Close() })
	bf, err := os.Create(dir + "/w-buffered")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bf.Close() })
	randOff := func(blk int) func(*rand.Rand, *int64) int64 {
		return func(r *rand.Rand, _ *int64) int64 { return int64(r.IntN(fileSize/blk)) * int64(blk) }
	}
	seqOff := func(blk int) func(*rand.Rand, *int64) int64 {
		return func(_ *rand.Rand, seq *int64) int64 {
			off := *seq
			*seq = (*seq + int64(blk)) % wrap
			return off
		}
	}
	for _, w := range []struct {
		name     string
		f        *os.File
		size, qd int
		write    bool
		off      func(*rand.Rand, *int64) int64
	}{
		{"read4K-direct/qd=32", rf, 4 << 10, 32, false, randOff(4 << 10)},
		{"read64K-direct/qd=32", rf, 64 << 10, 32, false, randOff(64 << 10)},
		{"write1M-direct/qd=1", wf, 1 << 20, 1, true, seqOff(1 << 20)},
		{"write1M/qd=1", bf, 1 << 20, 1, true, seqOff(1 << 20)},
	} {
		b.Run(w.name, func(b *testing.B) {
			for _, noFixed := range []bool{false, true} {
				b.Run(map[bool]string{false: "fixed", true: "unfixed"}[noFixed], func(b *testing.B) {
					pool, err := dmapool.New(dmapool.Config{Size: 16 << 20, SlotSize: 4096, Pin: dmapool.PinPrefer})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { pool.Close() })
					s := filetest.NewStack(b, file.Config{Engine: file.EngineURing, FixedBuffers: !noFixed}, pool)
					b.SetBytes(int64(w.size))
					runFileBenchWith(b, func(claim func() bool, off func() int64) error {
						return benchEngineBufs(s, w.f, w.qd, w.size, w.write, claim, off)
					}, w.off)
					c := s.FileCounters()
					if fixed := c.FixedOps > 0; fixed == noFixed || c.Errors != 0 {
						b.Fatalf("counters %+v", c)
					}
				})
			}
		})
	}
}

// benchEngineBufs is benchEngine with pool Bufs instead of the caller's
// slices.
func benchEngineBufs(s *api.Stack, f *os.File, qd, size int, write bool, claim func() bool, off func() int64) error {
	ec, err := evchan.New(evchan.Config{Capacity: 2 * qd})
	if err != nil {
		return err
	}
	defer ec.Close()
	kind := api.OpRead
	if write {
		kind = api.OpWrite
	}
	batch := make([]*api.Op, 0, qd)
	add := func(buf api.Buf) error {
		if buf.Len() == 0 {
			var err error
			if buf, err = s.Reserve(size); err != nil {
				return err
			}
		}
		batch = append(batch, &api.Op{Kind: kind, File: file.Request{File: f, Offset: off()}, Buf: buf, EC: ec})
		return nil
	}
	inflight := 0
	flush := func() error {
		inflight += len(batch)
		err := s.Submit(context.Background(), false, batch...)
		batch = batch[:0]
		return err
	}
	for i := 0; i < qd && claim(); i++ {
		if err := add(api.Buf{}); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	evs := make([]evchan.Event, qd)
	for inflight > 0 {
		n, err := ec.Next(context.Background(), evs)
		if err != nil {
			return err
		}
		for _, ev := range evs[:n] {
			inflight--
			buf, _ := api.BufOf(ev) // a read's, handed back; zero for a write
			if ev.Errno != 0 || ev.Result != int64(size) {
				buf.Release()
				return fmt.Errorf("completion %v", ev)
			}
			if !claim() {
				buf.Release()
				continue
			}
			if err := add(buf); err != nil {
				return err
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}
