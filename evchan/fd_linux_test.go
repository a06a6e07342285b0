package evchan

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// readable polls fd once, without waiting.
func readable(t testing.TB, fd int) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	return n == 1 && fds[0].Revents&unix.POLLIN != 0
}

func TestFDReadableExactlyWhilePending(t *testing.T) {
	c := mustNew(t, 8)
	fd, err := c.FD()
	if err != nil {
		t.Fatal(err)
	}
	if fd2, _ := c.FD(); fd2 != fd {
		t.Fatalf("FD changed: %d then %d", fd, fd2)
	}
	if readable(t, fd) {
		t.Fatal("readable with nothing pending")
	}
	if err := c.TryPost(Event{Source: SourceUser}); err != nil {
		t.Fatal(err)
	}
	if !readable(t, fd) {
		t.Fatal("not readable with an event pending")
	}
	for range 3 {
		c.TryPost(Event{Source: SourceUser})
	}
	if st := c.Stats(); st.FDWrites != 1 {
		t.Fatalf("posting into a non-empty channel wrote the eventfd: %d writes", st.FDWrites)
	}
	dst := make([]Event, 3)
	if c.TryNext(dst) != 3 || !readable(t, fd) {
		t.Fatal("not readable with one event left")
	}
	if c.TryNext(dst) != 1 || readable(t, fd) {
		t.Fatal("readable after the last event was taken")
	}
	if st := c.Stats(); st.FDWrites != 1 || st.FDReads != 1 {
		t.Fatalf("one pending period: %d writes, %d reads", st.FDWrites, st.FDReads)
	}

	// An owed Overflow event is pending too, even with an empty ring.
	hold, _ := c.Reserve(8)
	if c.Notify(Event{Source: SourceTimer}) {
		t.Fatal("Notify found room")
	}
	if !readable(t, fd) {
		t.Fatal("not readable with an Overflow event owed")
	}
	if n := c.TryNext(dst); n != 1 || dst[0].Source != SourceOverflow || readable(t, fd) {
		t.Fatalf("after taking the Overflow event: %d %v, readable %v", n, dst[0], readable(t, fd))
	}
	hold.Release()
}

func TestFDCreatedWithEventsPending(t *testing.T) {
	c := mustNew(t, 8)
	c.TryPost(Event{Source: SourceUser})
	fd, err := c.FD()
	if err != nil {
		t.Fatal(err)
	}
	if !readable(t, fd) {
		t.Fatal("FD made after a post is not readable")
	}
}

func TestNoFDNoSyscall(t *testing.T) {
	c := mustNew(t, 8)
	for range 100 {
		c.TryPost(Event{Source: SourceUser})
		c.TryNext(make([]Event, 1))
	}
	if st := c.Stats(); st.FDWrites != 0 || st.FDReads != 0 {
		t.Fatalf("eventfd used without an fd reader: %+v", st)
	}
}

func TestFDWakesBlockedPoll(t *testing.T) {
	c := mustNew(t, 8)
	fd, _ := c.FD()
	got := make(chan error, 1)
	go func() {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 10000)
			if err == unix.EINTR {
				continue
			}
			if err == nil && n == 0 {
				err = errors.New("poll timed out")
			}
			got <- err
			return
		}
	}()
	c.TryPost(Event{Source: SourceUser})
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestFDEdgeTriggered: with EPOLLET the fd gives one edge per transition
// from nothing pending to something pending.
func TestFDEdgeTriggered(t *testing.T) {
	c := mustNew(t, 16)
	fd, _ := c.FD()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET}); err != nil {
		t.Fatal(err)
	}
	edges := func() int {
		evs := make([]unix.EpollEvent, 4)
		n, err := unix.EpollWait(ep, evs, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if edges() != 0 {
		t.Fatal("edge with nothing pending")
	}
	c.TryPost(Event{Source: SourceUser})
	if edges() != 1 {
		t.Fatal("no edge for the first event")
	}
	c.TryPost(Event{Source: SourceUser})
	if edges() != 0 {
		t.Fatal("an edge for a post into a non-empty channel")
	}
	dst := make([]Event, 16)
	if c.TryNext(dst) != 2 {
		t.Fatal("drain")
	}
	c.TryPost(Event{Source: SourceUser})
	if edges() != 1 {
		t.Fatal("no edge after draining and posting again")
	}
}

// TestFDConcurrent: producers and a poll-driven consumer; at the end the
// fd is not readable and every raise was matched by a lower.
func TestFDConcurrent(t *testing.T) {
	const producers, per = 3, 3000
	c := mustNew(t, 64)
	fd, _ := c.FD()
	var wg sync.WaitGroup
	var producing atomic.Int32
	producing.Store(producers)
	for range producers {
		wg.Go(func() {
			for range per {
				r, err := c.ReserveContext(context.Background(), 1)
				if err != nil {
					t.Error(err)
					return
				}
				r.Post(Event{Source: SourceUser})
			}
			producing.Add(-1)
		})
	}
	var got atomic.Int64
	dst := make([]Event, 7)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(20 * time.Second)
	for got.Load() < producers*per {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d", got.Load(), producers*per)
		}
		done := producing.Load() == 0
		n, err := unix.Poll(fds, 1000)
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		if n == 0 && err == nil && done {
			// Everything is posted and not all consumed: the fd must be
			// readable.
			t.Fatalf("poll timed out with %d events pending", producers*per-got.Load())
		}
		for {
			n := c.TryNext(dst)
			if n == 0 {
				break
			}
			got.Add(int64(n))
		}
	}
	wg.Wait()
	if readable(t, fd) {
		t.Fatal("readable after everything was consumed")
	}
	if st := c.Stats(); st.FDWrites != st.FDReads || st.FDWrites == 0 {
		t.Fatalf("writes %d, reads %d", st.FDWrites, st.FDReads)
	}
}

func TestFDAfterClose(t *testing.T) {
	c := mustNew(t, 8)
	if _, err := c.FD(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.FD(); !errors.Is(err, ErrClosed) {
		t.Fatalf("FD after Close = %v", err)
	}
	c.fdMu.Lock()
	efd := c.efd
	c.fdMu.Unlock()
	if efd != -1 {
		t.Fatal("eventfd not closed")
	}
}
