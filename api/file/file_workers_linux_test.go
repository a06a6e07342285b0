package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/zcnet/zcnet/evchan"
)

// TestWorkerQueueCancel cancels ops waiting in the worker pool's queue
// (no worker runs yet, so they stay there), then lets a worker run the
// rest, in order.
func TestWorkerQueueCancel(t *testing.T) {
	ec, err := evchan.New(evchan.Config{Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	e := &Engine{}
	b := &workerBackend{e: e}
	b.work.L = &b.mu
	e.state.Store(&engineState{be: b, name: "test", max: 8})
	f, err := os.CreateTemp(t.TempDir(), "q")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops := make([]*Op, 4)
	cs := make([]*testCompleter, 4)
	for i := range ops {
		ops[i], cs[i] = newTestOp(t, ec, Write, &Request{File: f, Offset: int64(i), Mem: []byte{byte('a' + i)}}, uint64(i))
		if err := e.Check(ops[i].Kind, ops[i].Req, false); err != nil {
			t.Fatal(err)
		}
	}
	e.Submit(ops...)
	if len(b.queue) != 4 {
		t.Fatalf("queue holds %d ops", len(b.queue))
	}
	cause := errors.New("cancelled by the test")
	for _, i := range []int{2, 0} {
		if !ops[i].Cancel(cause) {
			t.Fatalf("Cancel of queued op %d failed", i)
		}
		if cs[i].err != cause {
			t.Fatalf("op %d: %v", i, cs[i].err)
		}
		if ops[i].Cancel(cause) {
			t.Fatalf("op %d cancelled twice", i)
		}
	}
	b.wg.Add(1)
	go b.worker()
	evs := make([]evchan.Event, 4)
	got := map[uint64]evchan.Event{}
	for len(got) < 4 {
		n, err := ec.Next(context.Background(), evs)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs[:n] {
			got[ev.Cookie] = ev
		}
	}
	b.close()
	for i, want := range []syscall.Errno{syscall.ECANCELED, 0, syscall.ECANCELED, 0} {
		if ev := got[uint64(i)]; ev.Errno != want || (want == 0 && ev.Result != 1) {
			t.Fatalf("op %d: %v, want errno %v", i, ev, want)
		}
	}
	data, _ := os.ReadFile(f.Name())
	if string(data) != "\x00b\x00d" {
		t.Fatalf("file holds %q: a cancelled write ran", data)
	}
	if e.pending.Load() != 0 {
		t.Fatalf("%d ops still pending", e.pending.Load())
	}
}

// TestURingRefused plays a kernel (or seccomp policy) that refuses
// io_uring: the automatic choice falls back to the workers and says why,
// and a forced io_uring fails.
func TestURingRefused(t *testing.T) {
	saved := newURing
	defer func() { newURing = saved }()
	newURing = func(*Engine, Config) (backend, error) {
		return nil, fmt.Errorf("io_uring_setup: %w", syscall.EPERM)
	}
	t.Setenv(EngineEnv, "")
	auto := &Engine{}
	defer auto.Close()
	if name := auto.Name(); name != "workers (io_uring: io_uring_setup: operation not permitted)" {
		t.Fatalf("engine %q", name)
	}
	forced := &Engine{}
	err := forced.Configure(Config{Engine: EngineURing})
	if !errors.Is(err, ErrEngine) || !errors.Is(err, syscall.EPERM) {
		t.Fatalf("forced io_uring on a refusing kernel: %v", err)
	}
	forced.Close()
}
