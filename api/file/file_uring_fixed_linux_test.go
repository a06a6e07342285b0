package file

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
)

// fixedStack is an API stack over pool whose file engine is io_uring with
// rings rings; the test is skipped where io_uring is refused.
func fixedStack(t *testing.T, pool *dmapool.Pool, rings int) *Stack {
	t.Helper()
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(st, Options{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.ConfigureFiles(FileConfig{Engine: FileEngineURing, Rings: rings, FixedBuffers: true}); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	return s
}

func fixedPool(t *testing.T) *dmapool.Pool {
	t.Helper()
	p, err := dmapool.New(dmapool.Config{Size: 1 << 20, SlotSize: 4096, Pin: dmapool.PinOff})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("pool: %v", err)
		}
	})
	return p
}

// writeRead writes a pool Buf of n bytes of v at off, then reads them back
// into another Buf, through s, and checks the bytes.
func writeRead(t *testing.T, s *Stack, f *os.File, off int64, n int, v byte) {
	t.Helper()
	ec, err := evchan.New(evchan.Config{Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	w, err := s.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	copy(w.Bytes(), bytes.Repeat([]byte{v}, n))
	r, err := s.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	wop := &Op{Kind: OpWrite, File: f, Offset: off, Buf: w, EC: ec}
	if err := s.Submit(t.Context(), true, wop); err != nil {
		t.Fatal(err)
	}
	if res, err := wop.Result(); res != int64(n) || err != nil {
		t.Fatalf("write: %d, %v", res, err)
	}
	rop := &Op{Kind: OpRead, File: f, Offset: off, Buf: r, EC: ec}
	if err := s.Submit(t.Context(), true, rop); err != nil {
		t.Fatal(err)
	}
	var evs [2]evchan.Event
	if k := ec.TryNext(evs[:]); k != 2 {
		t.Fatalf("%d completions", k)
	}
	rb, ok := BufOf(evs[1])
	if res, err := rop.Result(); res != int64(n) || err != nil || !ok || !bytes.Equal(rb.Bytes(), bytes.Repeat([]byte{v}, n)) {
		t.Fatalf("read back: %d, %v, %v", res, err, evs[1])
	}
	rb.Release()
}

// TestURingFixedRefused plays a kernel that refuses to register the pool
// (RLIMIT_MEMLOCK without CAP_IPC_LOCK gives ENOMEM; EPERM elsewhere):
// ops run unfixed and correctly, the refusal is counted per ring and
// FileEngine names it.
func TestURingFixedRefused(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOMEM, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			saved := registerFixed
			t.Cleanup(func() { registerFixed = saved })
			var calls atomic.Int32
			registerFixed = func(*ring, []fixedBuf) error {
				calls.Add(1)
				return fmt.Errorf("io_uring_register buffers: %w", errno)
			}
			s := fixedStack(t, fixedPool(t), 2)
			f, err := os.CreateTemp(t.TempDir(), "fixed")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := 0; i < 8; i++ {
				writeRead(t, s, f, int64(i)*8192, 8192, byte(i+1))
			}
			c := s.FileCounters()
			if c.FixedOps != 0 || c.FixedRings != 0 || c.FixedRefused == 0 || c.FixedRefused != uint64(calls.Load()) || c.FixedRefused > 2 || c.Errors != 0 {
				t.Fatalf("%d refused registrations, counters %+v", calls.Load(), c)
			}
			if name := s.FileEngine(); !strings.HasPrefix(name, "io_uring (fixed buffers refused: ") || !strings.Contains(name, errno.Error()) {
				t.Fatalf("FileEngine() = %q", name)
			}
		})
	}
}

// TestURingFixedUnregister: each ring that registered the pool
// unregisters it at Stack.Close, after its ops completed, and a Buf of a
// pool other than the registered one runs unfixed.
func TestURingFixedUnregister(t *testing.T) {
	saved := unregisterFixed
	t.Cleanup(func() { unregisterFixed = saved })
	var unregistered atomic.Int32
	unregisterFixed = func(r *ring) error {
		unregistered.Add(1)
		return saved(r)
	}
	s := fixedStack(t, fixedPool(t), 1)
	f, err := os.CreateTemp(t.TempDir(), "fixed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeRead(t, s, f, 0, 4096, 7)
	if c := s.FileCounters(); c.FixedOps != 2 || c.FixedRings != 1 {
		t.Fatalf("counters %+v", c)
	}

	// A Buf of another pool, as a socket associated with that pool would
	// hand over after copying a receive into it.
	other := fixedPool(t)
	pb, err := other.Reserve(4096)
	if err != nil {
		t.Fatal(err)
	}
	copy(pb.Bytes(), bytes.Repeat([]byte{9}, 4096))
	ec, err := evchan.New(evchan.Config{Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	op := &Op{Kind: OpWrite, File: f, Offset: 4096, Buf: newBuf(kindCopied, pb.Bytes(), nil, pb, nil), EC: ec}
	if err := s.Submit(t.Context(), true, op); err != nil {
		t.Fatal(err)
	}
	if res, err := op.Result(); res != 4096 || err != nil {
		t.Fatalf("write from another pool: %d, %v", res, err)
	}
	if c := s.FileCounters(); c.FixedOps != 2 {
		t.Fatalf("a Buf of another pool went fixed: %+v", c)
	}
	if err := pb.Valid(); !errors.Is(err, dmapool.ErrInvalidBuffer) {
		t.Fatalf("the write did not release the other pool's Buf: %v", err)
	}

	if unregistered.Load() != 0 {
		t.Fatal("unregistered before Close")
	}
	s.Close()
	if n := unregistered.Load(); n != 1 {
		t.Fatalf("%d unregistrations at Close, want 1", n)
	}
	disk, _ := os.ReadFile(f.Name())
	if !bytes.Equal(disk, append(bytes.Repeat([]byte{7}, 4096), bytes.Repeat([]byte{9}, 4096)...)) {
		t.Fatal("file content")
	}
}
