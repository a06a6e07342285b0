package evchan

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pipe returns a non-blocking pipe closed at the end of the test, and a
// function that closes the write end early (once).
func pipe(t *testing.T) (r, w int, closeW func()) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeW = func() { once.Do(func() { unix.Close(p[1]) }) }
	t.Cleanup(func() {
		unix.Close(p[0])
		closeW()
	})
	return p[0], p[1], closeW
}

func pollerRunning() bool {
	procPoller.life.Lock()
	defer procPoller.life.Unlock()
	return procPoller.running
}

func TestWatchFDPipe(t *testing.T) {
	c := mustNew(t, 8)
	r, w, closeW := pipe(t)
	fw, err := WatchFD(r, Readable, c, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	if fw.FD() != r {
		t.Fatal("FD")
	}
	unix.Write(w, []byte("a"))
	ev := next(t, c)
	if ev.Source != SourceFDReady || FDEvents(ev.Op)&Readable == 0 || ev.Cookie != uint64(r) || ev.Data != "pipe" || ev.Result < 1 {
		t.Fatalf("readable event %v", ev)
	}
	// Edge-triggered: drain, then a new write is a new edge.
	buf := make([]byte, 16)
	unix.Read(r, buf)
	unix.Write(w, []byte("b"))
	if ev := next(t, c); FDEvents(ev.Op)&Readable == 0 {
		t.Fatalf("second edge: %v", ev)
	}
	unix.Read(r, buf)
	// The writer goes away: hang-up.
	closeW()
	ev = next(t, c)
	if FDEvents(ev.Op)&Hangup == 0 {
		t.Fatalf("hang-up event %v", ev)
	}
	fw.Stop()
	fw.Stop()
	if pollerRunning() {
		t.Fatal("poller still running without watches")
	}
	if sourceCount(c) != 0 {
		t.Fatal("stopped watch still bound")
	}
}

func TestWatchFDWritable(t *testing.T) {
	c := mustNew(t, 8)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	fw, err := WatchFD(fds[0], Writable|ReadHangup, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Stop()
	if ev := next(t, c); FDEvents(ev.Op)&Writable == 0 {
		t.Fatalf("writable event %v", ev)
	}
	unix.Shutdown(fds[1], unix.SHUT_WR)
	if ev := next(t, c); FDEvents(ev.Op)&ReadHangup == 0 {
		t.Fatalf("rdhup event %v", ev)
	}
}

func TestWatchFDErrors(t *testing.T) {
	c := mustNew(t, 8)
	if _, err := WatchFD(-1, Readable, c, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("fd -1: %v", err)
	}
	r, _, _ := pipe(t)
	if _, err := WatchFD(r, Hangup, c, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty mask: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "regular")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := WatchFD(int(f.Fd()), Readable, c, nil); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("regular file: %v", err)
	}
	if pollerRunning() {
		t.Fatal("a failed watch left the poller running")
	}
}

func TestChannelCloseStopsWatches(t *testing.T) {
	c := mustNew(t, 8)
	r1, _, _ := pipe(t)
	r2, _, _ := pipe(t)
	if _, err := WatchFD(r1, Readable, c, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := WatchFD(r2, Readable, c, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if pollerRunning() {
		t.Fatal("Close left the poller running")
	}
	if _, err := WatchFD(r1, Readable, c, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("WatchFD on a closed channel: %v", err)
	}
}

// TestWatchAnotherChannel: a channel's FD can itself be watched, so
// channels nest.
func TestWatchAnotherChannel(t *testing.T) {
	outer := mustNew(t, 8)
	inner := mustNew(t, 8)
	fd, err := inner.FD()
	if err != nil {
		t.Fatal(err)
	}
	fw, err := WatchFD(fd, Readable, outer, "inner")
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Stop()
	inner.TryPost(Event{Source: SourceUser})
	if ev := next(t, outer); ev.Data != "inner" {
		t.Fatalf("outer got %v", ev)
	}
}

// TestOneInnerLoop: the paper's §7 program: one channel carries a pipe,
// a timer, a signal, a semaphore, a mutex, an RWMutex, an in-process and
// a POSIX message queue and a completion, and one loop of Next serves
// them all.
func TestOneInnerLoop(t *testing.T) {
	c := mustNew(t, 64)
	r, w, _ := pipe(t)
	fw, err := WatchFD(r, Readable, c, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Stop()
	if _, err := NewTimer(c, time.Millisecond, 0, "timer"); err != nil {
		t.Fatal(err)
	}
	sw, err := NotifySignal(c, "signal", syscall.SIGUSR2)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Stop()
	var sem Sem
	if err := sem.Await(c, "sem"); err != nil {
		t.Fatal(err)
	}
	var mu Mutex
	mu.Lock()
	if err := mu.ALock(c, "mutex"); err != nil {
		t.Fatal(err)
	}
	var rw RWMutex
	if err := rw.ARLock(c, "rwmutex"); err != nil {
		t.Fatal(err)
	}
	q, _ := NewMsgQueue[string](4)
	if err := q.Notify(c, "msgqueue"); err != nil {
		t.Fatal(err)
	}
	pmq := newTestMQ(t, &MQAttr{MaxMsg: 2, MsgSize: 8})
	if err := pmq.Notify(c, "posixmq"); err != nil {
		t.Fatal(err)
	}
	op, err := c.Reserve(1) // a submitted operation's completion slot
	if err != nil {
		t.Fatal(err)
	}

	// Everything happens at once, from other goroutines and the kernel.
	go func() {
		unix.Write(w, []byte("x"))
		syscall.Kill(os.Getpid(), syscall.SIGUSR2)
		sem.Release(1)
		mu.Unlock()
		q.TrySend("hi")
		pmq.Send([]byte("hi"), 0)
		op.Post(Event{Source: SourceNetOp, Op: 3, Result: 1500, Data: "completion"})
	}()

	want := map[any]Source{
		"pipe": SourceFDReady, "timer": SourceTimer, "signal": SourceSignal,
		"sem": SourceSem, "mutex": SourceMutex, "rwmutex": SourceMutex,
		"msgqueue": SourceMsgQueue, "posixmq": SourceMsgQueue, "completion": SourceNetOp,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := make([]Event, 16)
	for len(want) > 0 {
		n, err := c.Next(ctx, dst)
		if err != nil {
			t.Fatalf("still waiting for %v: %v", want, err)
		}
		for _, ev := range dst[:n] {
			src, ok := want[ev.Data]
			if !ok || src != ev.Source {
				t.Fatalf("unexpected event %v", ev)
			}
			delete(want, ev.Data)
		}
	}
	mu.Unlock()
	rw.RUnlock()
}
