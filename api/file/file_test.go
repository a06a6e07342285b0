//go:build linux

package file_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/api/file/filetest"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/stack"
)

func newPool(t testing.TB, size, slot int) *dmapool.Pool {
	t.Helper()
	pool, err := dmapool.New(dmapool.Config{Size: size, SlotSize: slot, Pin: dmapool.PinOff})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Errorf("pool not empty at the end (a Buf leaked): %v", err)
		}
	})
	return pool
}

// events collects completions from ec until want have arrived (or the
// test's deadline), keyed by Cookie.
func events(t testing.TB, ec *evchan.Channel, want int) map[uint64]evchan.Event {
	t.Helper()
	got := make(map[uint64]evchan.Event, want)
	buf := make([]evchan.Event, 64)
	ctx := evchantest.Context(t)
	for len(got) < want {
		n, err := ec.Next(ctx, buf)
		if err != nil {
			t.Fatalf("waiting for %d completions, have %d: %v", want, len(got), err)
		}
		for _, ev := range buf[:n] {
			if _, dup := got[ev.Cookie]; dup {
				t.Fatalf("two completions with cookie %d: %v", ev.Cookie, ev)
			}
			got[ev.Cookie] = ev
		}
	}
	return got
}

// one submits op and returns its completion.
func one(t testing.TB, s *api.Stack, ec *evchan.Channel, op *api.Op) evchan.Event {
	t.Helper()
	op.EC = ec
	if err := s.Submit(evchantest.Context(t), false, op); err != nil {
		t.Fatalf("Submit %v: %v", op.Kind, err)
	}
	return evchantest.Next(t, ec)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestFileRandomIO runs batches of random reads and writes — plain,
// vectored, into and from pool Bufs — at random offsets against a file and
// an in-memory model of it. Ops of one batch touch disjoint ranges, so
// each read must see the model as it was before the batch.
func TestFileRandomIO(t *testing.T) {
	rounds := 60
	if raceEnabled {
		rounds = 25
	}
	for _, k := range filetest.Engines {
		t.Run(k.String(), func(t *testing.T) {
			pool := newPool(t, 16<<20, 0)
			s := filetest.NewStack(t, file.Config{Engine: k, Entries: 8}, pool)
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			r := rand.New(rand.NewPCG(seed, 1))
			model := randBytes(r, 1<<20)
			f := filetest.TempFile(t, "", model)
			ec := evchantest.New(t, 64)
			var wantRead, wantWritten uint64
			for round := 0; round < rounds; round++ {
				type span struct{ off, n int }
				var spans []span
				overlaps := func(a span) bool {
					for _, b := range spans {
						if a.off < b.off+b.n && b.off < a.off+a.n {
							return true
						}
					}
					return false
				}
				var ops []*api.Op
				var checks []func(ev evchan.Event)
				var writes []func()
				// Reads past the end and writes that extend the file do not
				// mix in a batch: the read would find a hole or the end,
				// depending on the order.
				readsPast, writesPast := false, false
				for len(ops) < 24 {
					sp := span{r.IntN(len(model) + 64<<10), r.IntN(64 << 10)}
					kind := r.IntN(6)
					if sp.n == 0 && kind == 1 {
						kind = 0 // a pool Buf is never empty
					}
					past := sp.off+sp.n > len(model)
					if overlaps(sp) || (past && kind < 3 && writesPast) || (past && kind >= 3 && readsPast) {
						continue
					}
					readsPast = readsPast || (past && kind < 3)
					writesPast = writesPast || (past && kind >= 3)
					spans = append(spans, sp)
					cookie := uint64(len(ops))
					// What a read of sp finds in the model now.
					end := min(sp.off+sp.n, len(model))
					want := []byte{}
					if sp.off < len(model) {
						want = bytes.Clone(model[sp.off:end])
					}
					op := &api.Op{File: file.Request{File: f, Offset: int64(sp.off)}, EC: ec, Cookie: cookie}
					switch kind {
					case 0: // read into the caller's slice
						op.Kind, op.File.Mem = api.OpRead, make([]byte, sp.n)
						checks = append(checks, func(ev evchan.Event) {
							checkRead(t, ev, op, want, op.File.Mem[:ev.Result], sp.n)
						})
					case 1: // read into a pool Buf, handed back
						b, err := s.Reserve(sp.n)
						if err != nil {
							t.Fatal(err)
						}
						b.Bytes()[0] = 0xee
						op.Kind, op.Buf = api.OpRead, b
						checks = append(checks, func(ev evchan.Event) {
							rb, ok := api.BufOf(ev)
							if !ok || rb.Len() != sp.n {
								t.Fatalf("read into a Buf: completion %v carries no Buf of %d", ev, sp.n)
							}
							checkRead(t, ev, op, want, rb.Bytes()[:ev.Result], sp.n)
							if err := rb.Release(); err != nil {
								t.Fatal(err)
							}
						})
					case 2: // vectored read
						iov := splitIov(r, make([]byte, sp.n))
						op.Kind, op.File.Iov = api.OpReadv, iov
						checks = append(checks, func(ev evchan.Event) {
							checkRead(t, ev, op, want, bytes.Join(iov, nil)[:ev.Result], sp.n)
						})
					case 3, 4, 5: // write: the caller's slice, a pool Buf, or vectored
						data := randBytes(r, sp.n)
						switch r.IntN(3) {
						case 0:
							op.Kind, op.File.Mem = api.OpWrite, data
						case 1:
							if sp.n == 0 {
								op.Kind, op.File.Mem = api.OpWrite, data
								break
							}
							b, err := s.Reserve(sp.n)
							if err != nil {
								t.Fatal(err)
							}
							copy(b.Bytes(), data)
							op.Kind, op.Buf = api.OpWrite, b
						default:
							op.Kind, op.File.Iov = api.OpWritev, splitIov(r, data)
						}
						off := sp.off
						checks = append(checks, func(ev evchan.Event) {
							if ev.Errno != 0 || ev.Result != int64(len(data)) {
								t.Fatalf("%v of %d at %d: %v", op.Kind, len(data), off, ev)
							}
							if api.OpKind(ev.Op) == api.OpWrite && ev.Buffer != nil {
								t.Fatalf("write completion carries a buffer: %v", ev)
							}
						})
						writes = append(writes, func() {
							if grow := off + len(data) - len(model); grow > 0 {
								model = append(model, make([]byte, grow)...)
							}
							copy(model[off:], data)
						})
						wantWritten += uint64(len(data))
					}
					ops = append(ops, op)
				}
				if err := s.Submit(evchantest.Context(t), false, ops...); err != nil {
					t.Fatal(err)
				}
				got := events(t, ec, len(ops))
				for i, op := range ops {
					ev := got[uint64(i)]
					if ev.Source != evchan.SourceFileOp || api.OpKind(ev.Op) != op.Kind {
						t.Fatalf("op %d (%v): event %v", i, op.Kind, ev)
					}
					if res, err := op.Result(); res != ev.Result || (err == nil) != (ev.Errno == 0 && ev.Flags&api.FlagEOF == 0) {
						t.Fatalf("op %d: Result() = %d, %v; event %v", i, res, err, ev)
					}
					if op.Kind == api.OpRead || op.Kind == api.OpReadv {
						wantRead += uint64(ev.Result)
					}
					checks[i](ev)
				}
				for _, w := range writes {
					w()
				}
			}
			disk, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(disk, model) {
				t.Fatalf("file (%d bytes) differs from the model (%d bytes)", len(disk), len(model))
			}
			c := s.FileCounters()
			if c.BytesRead != wantRead || c.BytesWritten != wantWritten || c.Errors != 0 {
				t.Fatalf("counters %+v, want %d read, %d written, no errors", c, wantRead, wantWritten)
			}
			t.Logf("%d ops, %d inline; counters %+v", c.Ops, c.Inline, c)
		})
	}
}

// checkRead checks a read's completion against what the model held.
func checkRead(t testing.TB, ev evchan.Event, op *api.Op, want, got []byte, asked int) {
	t.Helper()
	if ev.Errno != 0 {
		t.Fatalf("%v of %d at %d: %v", op.Kind, asked, op.File.Offset, ev)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%v of %d at %d: got %d bytes, want %d (equal prefix %v)", op.Kind, asked, op.File.Offset, len(got), len(want), bytes.HasPrefix(want, got))
	}
	eof := ev.Flags&api.FlagEOF != 0
	if eof != (len(want) == 0 && asked > 0) {
		t.Fatalf("%v of %d at %d: FlagEOF %v with %d bytes", op.Kind, asked, op.File.Offset, eof, len(want))
	}
	if eof && !errors.Is(op.Err(), io.EOF) {
		t.Fatalf("read at the end: Err() = %v, want io.EOF", op.Err())
	}
}

// splitIov cuts b into 1 to 4 random pieces (some empty).
func splitIov(r *rand.Rand, b []byte) [][]byte {
	n := 1 + r.IntN(4)
	var iov [][]byte
	for i := 0; i < n-1; i++ {
		k := r.IntN(len(b) + 1)
		iov = append(iov, b[:k])
		b = b[k:]
	}
	return append(iov, b)
}

// TestFileShortReads reads across and beyond the end of a file.
func TestFileShortReads(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		data := randBytes(rand.New(rand.NewPCG(1, 2)), 10000)
		f := filetest.TempFile(t, "", data)
		ec := evchantest.New(t, 8)
		for _, tc := range []struct {
			off, n, want int
			eof          bool
		}{
			{8192, 4096, 1808, false},
			{9999, 10, 1, false},
			{10000, 4096, 0, true},
			{20000, 1, 0, true},
			{0, 0, 0, false},
			{10000, 0, 0, false},
		} {
			op := &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: int64(tc.off), Mem: make([]byte, tc.n)}, Cookie: 7, Data: "d"}
			ev := one(t, s, ec, op)
			if ev.Result != int64(tc.want) || ev.Errno != 0 || (ev.Flags&api.FlagEOF != 0) != tc.eof || ev.Cookie != 7 || ev.Data != "d" {
				t.Fatalf("read %d at %d: %v, want %d bytes, EOF %v", tc.n, tc.off, ev, tc.want, tc.eof)
			}
			if lo := min(tc.off, len(data)); !bytes.Equal(op.File.Mem[:ev.Result], data[lo:lo+tc.want]) {
				t.Fatalf("read %d at %d: wrong bytes", tc.n, tc.off)
			}
			if err := op.Err(); tc.eof != errors.Is(err, io.EOF) || (!tc.eof && err != nil) {
				t.Fatalf("read %d at %d: Err() = %v", tc.n, tc.off, err)
			}
		}
		// A vectored read across the end fills the first iovec, part of
		// the second, none of the third.
		iov := [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 100)}
		ev := one(t, s, ec, &api.Op{Kind: api.OpReadv, File: file.Request{File: f, Offset: 9850, Iov: iov}})
		if ev.Result != 150 || !bytes.Equal(append(iov[0], iov[1][:50]...), data[9850:]) {
			t.Fatalf("readv across the end: %v", ev)
		}
	})
}

// TestFileErrors checks that failures arrive as completions with the
// errno the system call gives.
func TestFileErrors(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		ec := evchantest.New(t, 8)
		expect := func(name string, op *api.Op, errno syscall.Errno) {
			t.Helper()
			ev := one(t, s, ec, op)
			if ev.Errno != errno || ev.Result != 0 || ev.Source != evchan.SourceFileOp {
				t.Fatalf("%s: %v, want errno %v", name, ev, errno)
			}
			if err := op.Err(); !errors.Is(err, errno) {
				t.Fatalf("%s: Err() = %v, want %v", name, err, errno)
			}
		}
		// A descriptor number that is not open.
		bad := os.NewFile(uintptr(1<<20+77), "bad")
		expect("bad fd", &api.Op{Kind: api.OpRead, File: file.Request{File: bad, Mem: make([]byte, 8)}}, syscall.EBADF)
		expect("bad fd fsync", &api.Op{Kind: api.OpFsync, File: file.Request{File: bad}}, syscall.EBADF)

		// A File closed before Submit.
		f := filetest.TempFile(t, "", []byte("data"))
		closed, err := os.Open(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		closed.Close()
		expect("closed file", &api.Op{Kind: api.OpRead, File: file.Request{File: closed, Mem: make([]byte, 8)}}, syscall.EBADF)
		expect("closed file write", &api.Op{Kind: api.OpWrite, File: file.Request{File: closed, Mem: []byte("x")}}, syscall.EBADF)

		// Writing a file opened read-only; reading a write-only one.
		ro, err := os.Open(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		expect("write read-only", &api.Op{Kind: api.OpWrite, File: file.Request{File: ro, Mem: []byte("x")}}, syscall.EBADF)
		wo, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer wo.Close()
		expect("read write-only", &api.Op{Kind: api.OpReadv, File: file.Request{File: wo, Iov: [][]byte{make([]byte, 4)}}}, syscall.EBADF)

		// Reading a directory; syncing a pipe; writing a pipe nobody reads.
		dir, err := os.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		expect("read a directory", &api.Op{Kind: api.OpRead, File: file.Request{File: dir, Mem: make([]byte, 8)}}, syscall.EISDIR)
		sr, sw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer sr.Close()
		defer sw.Close()
		expect("fsync a pipe", &api.Op{Kind: api.OpFsync, File: file.Request{File: sr}}, syscall.EINVAL)
		// A fresh pipe: io_uring may drop its reference to a file it used
		// a little after the completion, which would keep a reader alive.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		pr.Close()
		expect("broken pipe", &api.Op{Kind: api.OpWrite, File: file.Request{File: pw, Offset: -1, Mem: []byte("x")}}, syscall.EPIPE)

		c := s.FileCounters()
		if c.Errors != 9 || c.Ops != 9 {
			t.Fatalf("counters %+v, want 9 errors of 9 ops", c)
		}
	})
}

// TestFileENOSPC fills a small tmpfs, mounted in a private mount namespace
// on a thread of its own (root only).
func TestFileENOSPC(t *testing.T) {
	f := smallTmpfsFile(t, 64<<10)
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		ec := evchantest.New(t, 4)
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 256<<10)
		ev := one(t, s, ec, &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Mem: data}})
		if ev.Errno != 0 || ev.Result <= 0 || ev.Result >= int64(len(data)) {
			t.Fatalf("write of %d to a 64 KiB file system: %v, want a short write", len(data), ev)
		}
		ev = one(t, s, ec, &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: ev.Result, Mem: data}})
		if ev.Errno != syscall.ENOSPC {
			t.Fatalf("write to a full file system: %v, want ENOSPC", ev)
		}
	})
}

// smallTmpfsFile returns a file on a size-limited tmpfs mounted in a mount
// namespace that only one (discarded) thread enters; it skips the test
// when that cannot be done (not root, no namespaces).
func smallTmpfsFile(t *testing.T, size int) *os.File {
	t.Helper()
	if os.Geteuid() != 0 {
		nstest.Skip(t, "ENOSPC test needs root to mount a small tmpfs in a private mount namespace")
	}
	dir := t.TempDir()
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is never unlocked: it dies with this goroutine, and
		// its mount namespace with it. The open file keeps the tmpfs.
		runtime.LockOSThread()
		f, err := func() (*os.File, error) {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return nil, fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return nil, fmt.Errorf("make mounts private: %w", err)
			}
			if err := unix.Mount("zcnet-enospc", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
				return nil, fmt.Errorf("mount tmpfs: %w", err)
			}
			return os.Create(filepath.Join(dir, "full"))
		}()
		ch <- result{f, err}
	}()
	res := <-ch
	if res.err != nil {
		nstest.Skip(t, "ENOSPC test: cannot make a small tmpfs: %v", res.err)
	}
	t.Cleanup(func() { res.f.Close() })
	return res.f
}

// TestFilePipes moves data through a pipe, a blocking pipe and a FIFO
// with reads and writes at the file position (-1), both ends on one
// channel, until the reader sees EOF.
func TestFilePipes(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		t.Run("os.Pipe", func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			pipeStream(t, s, pr, pw)
		})
		t.Run("blocking", func(t *testing.T) {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			pr, pw := os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
			defer pr.Close()
			pipeStream(t, s, pr, pw)
		})
		t.Run("fifo", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			pr, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			pw, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			pipeStream(t, s, pr, pw)
		})
	})
}

// pipeStream writes 1 MiB into pw in 100 KiB ops (resubmitting what a
// full pipe leaves) while 24 KiB reads on pr collect it, and closes pw at
// the end; the reader must see every byte, in order, then EOF.
func pipeStream(t *testing.T, s *api.Stack, pr, pw *os.File) {
	ctx := evchantest.Context(t)
	ec := evchantest.New(t, 8)
	// A read of an empty pipe waits.
	rbuf := make([]byte, 24<<10)
	// A stream has no offset: one given is ignored.
	read := &api.Op{Kind: api.OpRead, File: file.Request{File: pr, Offset: 4096, Mem: rbuf}, EC: ec, Cookie: 'r'}
	if err := s.Submit(ctx, false, read); err != nil {
		t.Fatal(err)
	}
	if err := api.Suspend(ctx, 20*time.Millisecond, read); !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read of an empty pipe: Suspend = %v, want a timeout", err)
	}
	evchantest.Empty(t, ec)
	data := randBytes(rand.New(rand.NewPCG(3, 4)), 1<<20)
	sent := 0
	writeNext := func() {
		n := min(100<<10, len(data)-sent)
		op := &api.Op{Kind: api.OpWrite, File: file.Request{File: pw, Offset: -1, Mem: data[sent : sent+n]}, EC: ec, Cookie: 'w'}
		if err := s.Submit(ctx, false, op); err != nil {
			t.Fatal(err)
		}
	}
	writeNext()
	var got []byte
	for {
		ev := evchantest.Next(t, ec)
		if ev.Errno != 0 {
			t.Fatalf("%v", ev)
		}
		switch ev.Cookie {
		case 'w':
			sent += int(ev.Result)
			if sent < len(data) {
				writeNext()
			} else if err := pw.Close(); err != nil {
				t.Fatal(err)
			}
		case 'r':
			if ev.Flags&api.FlagEOF != 0 {
				if sent != len(data) || !bytes.Equal(got, data) {
					t.Fatalf("EOF after %d bytes of %d sent; equal %v", len(got), sent, bytes.Equal(got, data))
				}
				return
			}
			got = append(got, rbuf[:ev.Result]...)
			read = &api.Op{Kind: api.OpRead, File: file.Request{File: pr, Offset: -1, Mem: rbuf}, EC: ec, Cookie: 'r'}
			if err := s.Submit(ctx, false, read); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFileCancel cancels reads waiting on an empty pipe — on io_uring some
// in the ring and some in the engine's backlog (two entries) — and checks
// that each completes with ECANCELED and that none consumed data.
func TestFileCancel(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{Rings: 1, Entries: 2, Workers: 1}, func(t *testing.T, s *api.Stack) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		ec := evchantest.New(t, 16)
		ops := make([]*api.Op, 6)
		for i := range ops {
			ops[i] = &api.Op{Kind: api.OpRead, File: file.Request{File: pr, Offset: -1, Mem: make([]byte, 16)}, EC: ec, Cookie: uint64(i)}
		}
		if err := s.Submit(evchantest.Context(t), false, ops...); err != nil {
			t.Fatal(err)
		}
		evchantest.Empty(t, ec)
		for _, i := range []int{5, 0, 3, 1, 4, 2} { // backlog and ring alike
			if err := cancelWaiting(t, ops[i]); err != nil {
				t.Fatalf("Cancel op %d: %v", i, err)
			}
			if err := ops[i].Err(); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled op %d: Err() = %v", i, err)
			}
			if err := ops[i].Cancel(); !errors.Is(err, api.ErrNotCancelable) {
				t.Fatalf("second Cancel: %v", err)
			}
		}
		got := events(t, ec, len(ops))
		for i := range ops {
			if ev := got[uint64(i)]; ev.Errno != syscall.ECANCELED || ev.Result != 0 {
				t.Fatalf("op %d: %v, want ECANCELED", i, ev)
			}
		}
		// The data written now is all still there: no cancelled read took any.
		if _, err := pw.Write([]byte("intact")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 16)
		n, err := pr.Read(b)
		if err != nil || string(b[:n]) != "intact" {
			t.Fatalf("pipe holds %q, %v", b[:n], err)
		}
		// Cancelling a completed op is refused.
		op := &api.Op{Kind: api.OpWrite, File: file.Request{File: pw, Offset: -1, Mem: []byte("x")}, EC: ec}
		if ev := one(t, s, ec, op); ev.Errno != 0 {
			t.Fatal(ev)
		}
		if err := op.Cancel(); !errors.Is(err, api.ErrNotCancelable) {
			t.Fatalf("Cancel after completion: %v", err)
		}
		if c := s.FileCounters(); c.Canceled != uint64(len(ops)) {
			t.Fatalf("counters %+v, want %d cancelled", c, len(ops))
		}
	})
}

// TestFileMisuse checks the errors Submit gives before queuing anything.
func TestFileMisuse(t *testing.T) {
	pool := newPool(t, 1<<20, 0)
	s := filetest.NewStack(t, file.Config{MaxPending: 2}, pool)
	ec := evchantest.New(t, 8)
	f := filetest.TempFile(t, "", []byte("data"))
	released, err := s.Reserve(64)
	if err != nil {
		t.Fatal(err)
	}
	released.Release()
	live, err := s.Reserve(64)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	closedEC := evchantest.New(t, 1)
	closedEC.Close()
	for _, tc := range []struct {
		name string
		op   *api.Op
	}{
		{"no file", &api.Op{Kind: api.OpRead, File: file.Request{Mem: make([]byte, 1)}}},
		{"no channel", &api.Op{Kind: api.OpRead, File: file.Request{File: f}}},
		{"closed channel", &api.Op{Kind: api.OpRead, File: file.Request{File: f, Mem: make([]byte, 1)}, EC: closedEC}},
		{"offset -2", &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: -2, Mem: make([]byte, 1)}}},
		{"Mem and Buf", &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Mem: make([]byte, 1)}, Buf: live}},
		{"read with Iov", &api.Op{Kind: api.OpRead, File: file.Request{File: f, Iov: [][]byte{{1}}}}},
		{"readv without Iov", &api.Op{Kind: api.OpReadv, File: file.Request{File: f}}},
		{"writev with Mem", &api.Op{Kind: api.OpWritev, File: file.Request{File: f, Mem: []byte{1}}}},
		{"fsync with memory", &api.Op{Kind: api.OpFsync, File: file.Request{File: f, Mem: []byte{1}}}},
		{"released Buf", &api.Op{Kind: api.OpWrite, File: file.Request{File: f}, Buf: released}},
		{"unknown kind", &api.Op{Kind: api.OpFdatasync + 1, File: file.Request{File: f}}},
	} {
		if tc.op.EC == nil && tc.name != "no channel" {
			tc.op.EC = ec
		}
		if err := s.Submit(context.Background(), false, tc.op); !errors.Is(err, api.ErrInvalidOp) {
			t.Errorf("%s: Submit = %v, want ErrInvalidOp", tc.name, err)
		}
	}
	evchantest.Empty(t, ec)
	// A read into a Buf hands the Buf back even when it fails.
	closed, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	rb, err := s.Reserve(64)
	if err != nil {
		t.Fatal(err)
	}
	ev := one(t, s, ec, &api.Op{Kind: api.OpRead, File: file.Request{File: closed}, Buf: rb})
	back, ok := api.BufOf(ev)
	if ev.Errno != syscall.EBADF || !ok || rb.Valid() == nil {
		t.Fatalf("failed read into a Buf: %v (Buf back %v; the caller's copy still valid: %v)", ev, ok, rb.Valid() == nil)
	}
	if err := back.Release(); err != nil {
		t.Fatal(err)
	}
	if err := s.ConfigureFiles(file.Config{}); !errors.Is(err, file.ErrEngine) {
		t.Fatalf("ConfigureFiles after start: %v", err)
	}
	// MaxPending: two reads wait on a pipe, a third is refused, for now.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	var ops []*api.Op
	for i := 0; i < 3; i++ {
		ops = append(ops, &api.Op{Kind: api.OpRead, File: file.Request{File: pr, Offset: -1, Mem: make([]byte, 1)}, EC: ec, Cookie: uint64(i)})
	}
	if err := s.Submit(context.Background(), false, ops[:2]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Submit(context.Background(), false, ops[2]); !errors.Is(err, evchan.ErrFull) {
		t.Fatalf("third op with MaxPending 2: %v, want ErrFull", err)
	}
	pw.Write([]byte("ab"))
	events(t, ec, 2)
	if err := s.Submit(context.Background(), false, ops[2]); err != nil {
		t.Fatalf("after completions: %v", err)
	}
	pw.Write([]byte("c"))
	if ev := evchantest.Next(t, ec); ev.Result != 1 {
		t.Fatal(ev)
	}
}

// TestFileSyncAndWait runs a batch with wait (lio_listio LIO_WAIT):
// writes, fsync, fdatasync.
func TestFileSyncAndWait(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		f := filetest.TempFile(t, "", nil)
		ec := evchantest.New(t, 8)
		ops := []*api.Op{
			{Kind: api.OpWrite, File: file.Request{File: f, Offset: 0, Mem: []byte("hello, ")}, EC: ec, Cookie: 1},
			{Kind: api.OpWritev, File: file.Request{File: f, Offset: 7, Iov: [][]byte{[]byte("wor"), []byte("ld")}}, EC: ec, Cookie: 2},
		}
		if err := s.Submit(evchantest.Context(t), true, ops...); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if res, err := op.Result(); err != nil || res == 0 {
				t.Fatalf("after Submit with wait: %d, %v", res, err)
			}
		}
		sync := []*api.Op{{Kind: api.OpFsync, File: file.Request{File: f}, EC: ec, Cookie: 3}, {Kind: api.OpFdatasync, File: file.Request{File: f}, EC: ec, Cookie: 4}}
		if err := s.Submit(evchantest.Context(t), true, sync...); err != nil {
			t.Fatal(err)
		}
		got := events(t, ec, 4)
		for c := uint64(1); c <= 4; c++ {
			if got[c].Errno != 0 {
				t.Fatal(got[c])
			}
		}
		if api.OpKind(got[3].Op) != api.OpFsync || api.OpKind(got[4].Op) != api.OpFdatasync || got[3].Op == got[4].Op {
			t.Fatalf("sync events %v %v", got[3], got[4])
		}
		b, _ := os.ReadFile(f.Name())
		if string(b) != "hello, world" {
			t.Fatalf("file holds %q", b)
		}
	})
}

// TestFileStackClose closes the stack with reads waiting on a pipe: they
// complete with ECANCELED, and later file ops are refused.
func TestFileStackClose(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{Entries: 2, Rings: 1}, func(t *testing.T, s *api.Stack) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		ec := evchantest.New(t, 8)
		ops := make([]*api.Op, 4)
		for i := range ops {
			ops[i] = &api.Op{Kind: api.OpRead, File: file.Request{File: pr, Offset: -1, Mem: make([]byte, 8)}, EC: ec, Cookie: uint64(i)}
		}
		if err := s.Submit(context.Background(), false, ops...); err != nil {
			t.Fatal(err)
		}
		s.Close()
		got := events(t, ec, len(ops))
		for i, op := range ops {
			if got[uint64(i)].Errno != syscall.ECANCELED || !errors.Is(op.Err(), file.ErrClosed) {
				t.Fatalf("op %d after Close: %v, Err() %v", i, got[uint64(i)], op.Err())
			}
		}
		err = s.Submit(context.Background(), false, &api.Op{Kind: api.OpRead, File: file.Request{File: pr, Mem: make([]byte, 1)}, EC: ec})
		if !errors.Is(err, api.ErrInvalidOp) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Submit after Close: %v", err)
		}
	})
}

// TestFileEngineChoice checks the automatic choice and the environment
// override.
func TestFileEngineChoice(t *testing.T) {
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, env := range []string{"", "workers", "io_uring", "bogus"} {
		t.Run("env="+env, func(t *testing.T) {
			t.Setenv(file.EngineEnv, env)
			s, err := api.New(st, api.Options{FilesOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			name := s.FileEngine()
			t.Logf("%s=%q: %s", file.EngineEnv, env, name)
			switch env {
			case "":
				if name != "io_uring" && !strings.HasPrefix(name, "workers") {
					t.Fatalf("auto chose %q", name)
				}
			case "workers":
				if name != "workers" {
					t.Fatalf("forced workers, got %q", name)
				}
			case "io_uring":
				if name != "io_uring" && !strings.Contains(name, "none") {
					t.Fatalf("forced io_uring, got %q", name)
				}
			case "bogus":
				if !strings.HasPrefix(name, "none") {
					t.Fatalf("bad %s gave %q", file.EngineEnv, name)
				}
			}
		})
	}
}

// cancelWaiting cancels op, which is waiting for data. A worker may be in
// the middle of its (non-blocking) attempt, when Cancel answers
// ErrNotCancelable; the op then parks at once, so Cancel is asked again
// while the op is still in progress.
func cancelWaiting(t testing.TB, op *api.Op) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := op.Cancel()
		if !errors.Is(err, api.ErrNotCancelable) || !errors.Is(op.Err(), api.ErrInProgress) || time.Now().After(deadline) {
			return err
		}
		runtime.Gosched()
	}
}

// TestFilePosition reads and writes a regular file at its position (-1),
// one op at a time: the position advances as with read(2) and write(2).
func TestFilePosition(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		f := filetest.TempFile(t, "", nil)
		ec := evchantest.New(t, 4)
		for _, w := range []string{"abc", "defg", "h"} {
			if ev := one(t, s, ec, &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: -1, Mem: []byte(w)}}); ev.Errno != 0 || ev.Result != int64(len(w)) {
				t.Fatalf("write %q at the position: %v", w, ev)
			}
		}
		if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos != 8 {
			t.Fatalf("position after the writes: %d, %v", pos, err)
		}
		if _, err := f.Seek(2, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		iov := [][]byte{make([]byte, 3), make([]byte, 10)}
		if ev := one(t, s, ec, &api.Op{Kind: api.OpReadv, File: file.Request{File: f, Offset: -1, Iov: iov}}); ev.Result != 6 || string(iov[0])+string(iov[1][:3]) != "cdefgh" {
			t.Fatalf("readv at the position: %v %q", ev, iov)
		}
		if ev := one(t, s, ec, &api.Op{Kind: api.OpRead, File: file.Request{File: f, Offset: -1, Mem: make([]byte, 4)}}); ev.Flags&api.FlagEOF == 0 {
			t.Fatalf("read at the end position: %v", ev)
		}
	})
}
