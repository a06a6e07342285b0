//go:build linux

package api_test

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
	"github.com/zcnet/zcnet/evchan"
)

// File benchmarks, each engine beside its baseline, plain os.File
// (ReadAt/WriteAt) from the same number of goroutines:
//
//	BenchmarkFileRandRead4K   4 KiB reads at random 4 KiB-aligned offsets of
//	                          a 64 MiB file in the page cache
//	BenchmarkFileSeqWrite1M   1 MiB writes, each goroutine appending to its
//	                          own file (wrapping at 32 MiB)
//
// Sub-benchmarks are engine/g=goroutines/qd=ops each keeps in flight (os.File
// is always qd=1: a goroutine per outstanding call). Besides ns/op they
// report ops/s and cpu-ns/op: user+system CPU time of the whole process
// (io_uring's kernel workers included) per op.
//
//	go test -run '^$' -bench 'BenchmarkFile' -benchtime 2s ./api/

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
// cache) into pool memory (4 KiB slots): where a deep queue from one
// goroutine pays off.
func BenchmarkFileDirectRead64K(b *testing.B) {
	const fileSize, blk = 64 << 20, 64 << 10
	dir := b.TempDir()
	name := dir + "/direct"
	if err := os.WriteFile(name, randBytes(rand.New(rand.NewPCG(9, 9)), fileSize), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Skipf("O_DIRECT unavailable in %s: %v", dir, err)
	}
	b.Cleanup(func() { f.Close() })
	for _, eng := range benchEngines {
		b.Run(eng, func(b *testing.B) {
			s := benchStack(b, eng)
			for _, sh := range []struct{ g, qd int }{{1, 1}, {1, 32}} {
				if eng == "os.File" && sh.qd > 1 {
					sh.g, sh.qd = sh.qd, 1
				}
				b.Run(fmt.Sprintf("g=%d/qd=%d", sh.g, sh.qd), func(b *testing.B) {
					b.SetBytes(blk)
					runFileBench(b, s, sh.g, sh.qd, blk, func(int) *os.File { return f }, false,
						func(r *rand.Rand, _ *int64) int64 { return int64(r.IntN(fileSize/blk)) * blk })
				})
			}
		})
	}
}

// benchFile returns a file of size random bytes, read once so that it is
// in the page cache.
func benchFile(b *testing.B, size int) *os.File {
	f := tempFile(b, b.TempDir(), randBytes(rand.New(rand.NewPCG(7, 8)), size))
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
		return newFileStack(b, api.FileConfig{Engine: api.FileEngineURing}, nil)
	case "workers":
		return newFileStack(b, api.FileConfig{Engine: api.FileEngineWorkers}, nil)
	}
	return nil
}

// runFileBench does b.N ops of size bytes from g goroutines, each keeping
// qd in flight: through s's engine, or with os.File calls when s is nil.
// file(i) is goroutine i's file, off picks each op's offset.
func runFileBench(b *testing.B, s *api.Stack, g, qd, size int, file func(int) *os.File, write bool, off func(*rand.Rand, *int64) int64) {
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
			f := file(i)
			if s == nil {
				errs <- benchOSFile(f, size, write, claim, func() int64 { return off(r, &seq) })
				return
			}
			errs <- benchEngine(s, f, qd, size, write, claim, func() int64 { return off(r, &seq) })
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
		batch = append(batch, &api.Op{Kind: kind, File: f, Offset: off(), Mem: bufs[i], EC: ec, Cookie: uint64(i)})
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
