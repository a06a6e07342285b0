package file

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/uring"
)

// fixedEngine is an io_uring engine with rings rings and fixed buffers;
// the test is skipped where io_uring is refused.
func fixedEngine(t *testing.T, rings int) *Engine {
	t.Helper()
	e := &Engine{}
	t.Cleanup(e.Close)
	if err := e.Configure(Config{Engine: EngineURing, Rings: rings, FixedBuffers: true}); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	return e
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

// run submits an op of kind on f at off over pool Buf pb (from, as api
// would say it) and waits for its completion.
func run(t *testing.T, e *Engine, kind Kind, f *os.File, off int64, pb dmapool.Buf, from Origin) (evchan.Event, error) {
	t.Helper()
	ec, err := evchan.New(evchan.Config{Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	op, c := newTestOp(t, ec, kind, &Request{File: f, Offset: off}, 0)
	op.Buf, op.From, op.Pool = pb.Bytes(), from, pb
	if err := e.Check(kind, op.Req, true); err != nil {
		t.Fatal(err)
	}
	e.Submit(op)
	<-op.Done
	var evs [1]evchan.Event
	if k := ec.TryNext(evs[:]); k != 1 || c.posted != nil {
		t.Fatalf("%d completions, %v", k, c.posted)
	}
	return evs[0], c.err
}

// writeRead writes a pool Buf of n bytes of v at off, then reads them back
// into another Buf, through e, and checks the bytes.
func writeRead(t *testing.T, e *Engine, pool *dmapool.Pool, f *os.File, off int64, n int, v byte) {
	t.Helper()
	w, err := pool.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	copy(w.Bytes(), bytes.Repeat([]byte{v}, n))
	r, err := pool.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if ev, err := run(t, e, Write, f, off, w, FromPool); ev.Result != int64(n) || err != nil {
		t.Fatalf("write: %v, %v", ev, err)
	}
	if ev, err := run(t, e, Read, f, off, r, FromPool); ev.Result != int64(n) || err != nil || !bytes.Equal(r.Bytes(), bytes.Repeat([]byte{v}, n)) {
		t.Fatalf("read back: %v, %v", ev, err)
	}
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
			registerFixed = func(*uring.Ring, []uring.FixedBuf) error {
				calls.Add(1)
				return fmt.Errorf("io_uring_register buffers: %w", errno)
			}
			pool := fixedPool(t)
			e := fixedEngine(t, 2)
			f, err := os.CreateTemp(t.TempDir(), "fixed")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := 0; i < 8; i++ {
				writeRead(t, e, pool, f, int64(i)*8192, 8192, byte(i+1))
			}
			c := e.Counters()
			if c.FixedOps != 0 || c.FixedRings != 0 || c.FixedRefused == 0 || c.FixedRefused != uint64(calls.Load()) || c.FixedRefused > 2 || c.Errors != 0 {
				t.Fatalf("%d refused registrations, counters %+v", calls.Load(), c)
			}
			if name := e.Name(); !strings.HasPrefix(name, "io_uring (fixed buffers refused: ") || !strings.Contains(name, errno.Error()) {
				t.Fatalf("Name() = %q", name)
			}
		})
	}
}

// TestURingFixedUnregister: each ring that registered the pool
// unregisters it at Close, after its ops completed, and a Buf of a
// pool other than the registered one runs unfixed.
func TestURingFixedUnregister(t *testing.T) {
	saved := unregisterFixed
	t.Cleanup(func() { unregisterFixed = saved })
	var unregistered atomic.Int32
	unregisterFixed = func(r *uring.Ring) error {
		unregistered.Add(1)
		return saved(r)
	}
	pool := fixedPool(t)
	e := fixedEngine(t, 1)
	f, err := os.CreateTemp(t.TempDir(), "fixed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writeRead(t, e, pool, f, 0, 4096, 7)
	if c := e.Counters(); c.FixedOps != 2 || c.FixedRings != 1 {
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
	if ev, err := run(t, e, Write, f, 4096, pb, FromReceivedCopy); ev.Result != 4096 || err != nil {
		t.Fatalf("write from another pool: %v, %v", ev, err)
	}
	pb.Release()
	if c := e.Counters(); c.FixedOps != 2 || c.WrittenFromRecvCopied != 4096 {
		t.Fatalf("a Buf of another pool went fixed: %+v", c)
	}

	if unregistered.Load() != 0 {
		t.Fatal("unregistered before Close")
	}
	e.Close()
	if n := unregistered.Load(); n != 1 {
		t.Fatalf("%d unregistrations at Close, want 1", n)
	}
	disk, _ := os.ReadFile(f.Name())
	if !bytes.Equal(disk, append(bytes.Repeat([]byte{7}, 4096), bytes.Repeat([]byte{9}, 4096)...)) {
		t.Fatal("file content")
	}
}
