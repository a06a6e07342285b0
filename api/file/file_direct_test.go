//go:build linux

package file_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/api/file/filetest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// directFile opens a new file with O_DIRECT in the test's temporary
// directory, or in /var/tmp when that is a file system without direct I/O
// (tmpfs); it skips the test when neither has it.
func directFile(t *testing.T) *os.File {
	t.Helper()
	var why []error
	for _, dir := range []string{t.TempDir(), "/var/tmp"} {
		d, err := os.MkdirTemp(dir, "zcnet-direct-")
		if err != nil {
			why = append(why, err)
			continue
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		f, err := os.OpenFile(filepath.Join(d, "direct"), os.O_RDWR|os.O_CREATE|syscall.O_DIRECT, 0o600)
		if err != nil {
			why = append(why, err)
			continue
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	t.Skipf("no file system here supports O_DIRECT: %v", errors.Join(why...))
	return nil
}

// TestFileODirect writes and reads a file opened with O_DIRECT from and
// into pool Bufs (4 KiB slots, so every Buf starts on a page), and checks
// that misaligned memory, offsets and lengths fail with EINVAL.
func TestFileODirect(t *testing.T) {
	for _, k := range filetest.Engines {
		t.Run(k.String(), func(t *testing.T) {
			pool := newPool(t, 8<<20, 4096)
			s := filetest.NewStack(t, file.Config{Engine: k, FixedBuffers: true}, pool)
			f := directFile(t)
			memAlign, offAlign, err := file.DirectAlign(f)
			t.Logf("%s: O_DIRECT alignment: memory %d, offset %d (%v)", f.Name(), memAlign, offAlign, err)
			ec := evchantest.New(t, 64)
			const block, blocks = 64 << 10, 16
			r := rand.New(rand.NewPCG(5, 6))
			want := randBytes(r, block*blocks)
			var ops []*api.Op
			for i := 0; i < blocks; i++ {
				b, err := s.Reserve(block)
				if err != nil {
					t.Fatal(err)
				}
				copy(b.Bytes(), want[i*block:])
				ops = append(ops, &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: int64(i * block)}, Buf: b, EC: ec, Cookie: uint64(i)})
			}
			if err := s.Submit(evchantest.Context(t), false, ops...); err != nil {
				t.Fatal(err)
			}
			for c, ev := range events(t, ec, blocks) {
				if ev.Errno != 0 || ev.Result != block {
					t.Fatalf("O_DIRECT write %d: %v", c, ev)
				}
			}
			ops = ops[:0]
			for i := blocks - 1; i >= 0; i-- {
				b, err := s.Reserve(block)
				if err != nil {
					t.Fatal(err)
				}
				ops = append(ops, &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: int64(i * block)}, Buf: b, EC: ec, Cookie: uint64(i)})
			}
			if err := s.Submit(evchantest.Context(t), false, ops...); err != nil {
				t.Fatal(err)
			}
			for c, ev := range events(t, ec, blocks) {
				b, ok := api.BufOf(ev)
				if ev.Errno != 0 || ev.Result != block || !ok {
					t.Fatalf("O_DIRECT read %d: %v", c, ev)
				}
				if !bytes.Equal(b.Bytes(), want[c*block:(c+1)*block]) {
					t.Fatalf("O_DIRECT read %d: wrong bytes", c)
				}
				b.Release()
			}
			// Reading through the page cache sees the same file.
			plain, err := os.ReadFile(f.Name())
			if err != nil || !bytes.Equal(plain, want) {
				t.Fatalf("buffered read of the O_DIRECT file: %d bytes, %v", len(plain), err)
			}
			c := s.FileCounters()
			if c.WrittenFromBufs != block*blocks || c.ReadIntoBufs != block*blocks {
				t.Fatalf("counters %+v", c)
			}
			// On io_uring the pool is registered (FixedBuffers): every Buf
			// op went fixed; the workers ignore the option.
			if wantFixed := map[file.EngineKind]uint64{file.EngineURing: 2 * blocks}[k]; c.FixedOps != wantFixed {
				t.Fatalf("%d ops on fixed buffers, want %d: %+v", c.FixedOps, wantFixed, c)
			}

			// Misalignment: the kernel refuses, the completion says so.
			b, err := s.Reserve(2 * 4096)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Release()
			expectEINVAL := func(name string, op *api.Op) {
				t.Helper()
				if ev := one(t, s, ec, op); ev.Errno != syscall.EINVAL {
					t.Fatalf("%s: %v, want EINVAL", name, ev)
				}
			}
			if offAlign != 1 {
				expectEINVAL("length 4095", &api.Op{Kind: api.OpRead, File: file.Request{File: f, Mem: b.Bytes()[:4095]}})
				expectEINVAL("offset 100", &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: 100, Mem: b.Bytes()[:4096]}})
			}
			if memAlign != 1 {
				expectEINVAL("memory one byte off", &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Mem: b.Bytes()[1 : 1+4096]}})
			}
			// The pool Buf's own bytes, lent as Mem, are fine.
			if ev := one(t, s, ec, &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: 4096, Mem: b.Bytes()[:4096]}}); ev.Errno != 0 || ev.Result != 4096 || !bytes.Equal(b.Bytes()[:4096], want[4096:8192]) {
				t.Fatalf("aligned read into a lent Buf: %v", ev)
			}
		})
	}
}
