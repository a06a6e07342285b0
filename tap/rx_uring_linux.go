//go:build linux

package tap

import (
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"

	"github.com/zcnet/zcnet/evchan/uring"
)

// Batched receive (rx.go step 2 when the queue has a ring): on a wake-up
// the reader prepares a batch of vectored reads, each into a slot of its
// own ([virtio-net header][head view][tail view], as the readv path), and
// hands them to the kernel in one io_uring_enter. The descriptor is
// non-blocking and every read carries RWF_NOWAIT, so the kernel runs each
// read during the enter itself: it copies a waiting frame, or completes the
// read with EAGAIN when the queue is empty. No read is left outstanding when
// the enter returns, so the reader parks in the runtime poller exactly as
// the readv path does, nothing needs cancelling on Close, and no io-wq
// worker thread is involved. Should a read not complete inline (a kernel
// that defers it), the reader cancels what is left, keeps what arrived, and
// falls back to readv for good (Stats.RxRingFallbacks).
//
// The batch adapts: it doubles while every read finds a frame (up to
// rxBatchMax) and shrinks to twice the frames the last batch found (at
// least rxBatchMin), so an idle queue costs few wasted reads and a flooded
// one moves rxBatchMax frames per system call.

// Bounds of a receive batch, in reads per io_uring_enter.
const (
	rxBatchMin = 4
	rxBatchMax = 64
)

// resPending marks a slot whose read has not completed.
const resPending = int32(-1 << 31)

// rxSlot is one read of a batch: its virtio-net header buffer and views,
// and the iovecs that point at them.
type rxSlot struct {
	vnet       [VnetHdrLen]byte
	head, tail *buffer.View
	iov        [3]unix.Iovec
	niov       int
}

// rxRing is a queue's io_uring for batched reads. Used only by the queue's
// reader goroutine, apart from close (Link.Close, after the reader
// returned).
type rxRing struct {
	r       *uring.Ring
	slots   [rxBatchMax]rxSlot
	res     [rxBatchMax]int32
	cqes    [rxBatchMax]uring.CQE
	want    int    // reads in the next batch
	rwFlags uint32 // RWF_NOWAIT, or 0 where the descriptor refuses it
	off     bool   // fell back to readv
}

// errRingDeferred reports a read the kernel did not complete inline.
var errRingDeferred = errors.New("a read did not complete inline")

// newRxRingFn is newRxRing, replaced by tests that force the fallback.
var newRxRingFn = newRxRing

// newRxRing sets up a ring for one queue's reads and checks that the
// kernel lets it run requests (a seccomp policy may allow io_uring_setup
// but not io_uring_enter).
func newRxRing() (*rxRing, error) {
	r, err := uring.New(rxBatchMax)
	if err != nil {
		return nil, err
	}
	if err := r.RunNop(1 << 63); err != nil {
		r.Close()
		return nil, err
	}
	return &rxRing{r: r, want: rxBatchMin, rwFlags: unix.RWF_NOWAIT}, nil
}

// close releases the ring. The reader has returned, and released the
// slots' views (releaseSlots).
func (rr *rxRing) close() {
	if rr != nil && rr.r != nil {
		rr.r.Close()
		rr.r = nil
	}
}

// releaseSlots returns the slots' views when the reader stops.
func (rr *rxRing) releaseSlots() {
	if rr == nil {
		return
	}
	for i := range rr.slots {
		s := &rr.slots[i]
		if s.head != nil {
			s.head.Release()
			s.head = nil
		}
		if s.tail != nil {
			s.tail.Release()
			s.tail = nil
		}
		clear(s.iov[:])
	}
}

// refill makes sure the slot's views exist and points its iovecs at them
// (as rxState.refill for the readv path).
func (s *rxSlot) refill(l *Link) {
	i := 0
	if l.vnet {
		setIovec(&s.iov[i], s.vnet[:])
		i++
	}
	if s.head == nil {
		s.head = buffer.NewViewSize(l.headView)
	}
	setIovec(&s.iov[i], s.head.AsSlice())
	i++
	if l.tailView {
		if s.tail == nil {
			s.tail = buffer.NewViewSize(buffer.MaxChunkSize)
		}
		setIovec(&s.iov[i], s.tail.AsSlice())
		i++
	}
	s.niov = i
}

// readRing is readBatch for a queue with a ring: step 2, a batch of reads
// per system call. It returns false to park until the queue is readable
// again, true to return to run.
func (q *queue) readRing(fd uintptr) bool {
	l := q.link
	rr := q.rxr
	got := false
	for !l.stopping.Load() {
		if rr.off {
			// Fell back during this wake-up: the readv loop takes
			// over (it counts the wake-up if it finds frames).
			if got {
				q.c.rxWakeups.Add(1)
			}
			return q.readBatch(fd)
		}
		k := rr.want
		frames, again, err := q.ringBatch(int(fd), k)
		if frames > 0 {
			got = true
		}
		if err != nil {
			if got {
				q.c.rxWakeups.Add(1)
			}
			q.fail(err)
			return true
		}
		if rr.off {
			// The batch gave the ring up: readv reads what is left
			// before the reader parks (the poller wakes it only for
			// new frames).
			continue
		}
		switch {
		case frames == k:
			rr.want = min(2*k, rxBatchMax)
			continue
		case again:
			// The descriptor refused RWF_NOWAIT: the batch is
			// repeated without it.
			continue
		}
		rr.want = max(rxBatchMin, min(2*frames, rxBatchMax))
		if got {
			q.c.rxWakeups.Add(1)
		}
		q.flushHandoff()
		q.ho.run = 0
		return false
	}
	if got {
		q.c.rxWakeups.Add(1)
	}
	return true
}

// ringBatch submits k reads of fd, reaps them and handles the frames they
// read, in the order the reads were issued (which is the queue's order).
// It returns the frames read, whether the batch must be repeated (the
// descriptor refused RWF_NOWAIT), and an error that ends the reader.
func (q *queue) ringBatch(fd, k int) (frames int, again bool, err error) {
	l := q.link
	rr := q.rxr
	for i := 0; i < k; i++ {
		s := &rr.slots[i]
		s.refill(l)
		e := rr.r.Next()
		e.PrepReadv(fd, s.iov[:s.niov], -1)
		e.SetRWFlags(rr.rwFlags)
		e.SetUserData(uint64(i))
		rr.res[i] = resPending
	}
	n, serr := rr.r.SubmitOnly()
	q.c.rxRingBatches.Add(1)
	if serr != nil || n != k {
		// The entries the kernel did not take stay in the ring; it is
		// not used again.
		q.ringFallback(fmt.Errorf("submit %d reads: %d taken, %v", k, n, serr))
		if n == 0 {
			return 0, false, nil
		}
	}
	done := q.reapRing(n)
	if done < n {
		// The kernel kept reads outstanding: cancel them, keep what they
		// read, and stop using the ring.
		q.ringFallback(errRingDeferred)
		if derr := q.drainRing(n); derr != nil {
			return 0, false, derr
		}
	}
	for i := 0; i < n; i++ {
		res := rr.res[i]
		switch {
		case res > 0:
			frames++
			q.ho.run++
			q.handleSlot(&rr.slots[i], int(res))
		case res == 0:
			err = fmt.Errorf("tap: %s queue %d: %w", l.name, q.idx, io.EOF)
		case res == -int32(unix.EAGAIN), res == -int32(unix.EINTR), res == -int32(unix.ECANCELED):
		case rr.rwFlags != 0 && (res == -int32(unix.EOPNOTSUPP) || res == -int32(unix.EINVAL)):
			// The descriptor does not take RWF_NOWAIT (no
			// FMODE_NOWAIT); it is non-blocking, so its reads still
			// complete inline with EAGAIN.
			rr.rwFlags = 0
			again = true
		default:
			q.c.rxErrors.Add(1)
			err = fmt.Errorf("tap: %s queue %d: read: %w", l.name, q.idx, syscall.Errno(-res))
		}
	}
	if err != nil {
		again = false
	}
	return frames, again && frames == 0, err
}

// reapRing collects the completions waiting for the batch's n reads into
// rr.res and returns how many it found.
func (q *queue) reapRing(n int) int {
	rr := q.rxr
	done := 0
	for {
		c := rr.r.Reap(rr.cqes[:])
		if c == 0 {
			return done
		}
		for _, e := range rr.cqes[:c] {
			if e.UserData < uint64(n) && rr.res[e.UserData] == resPending {
				rr.res[e.UserData] = e.Res
				done++
			}
		}
	}
}

// drainRing cancels the reads of the batch's n that have not completed
// and waits for their completions (a cancelled read completes with
// ECANCELED; one that raced the cancel, with its frame).
func (q *queue) drainRing(n int) error {
	rr := q.rxr
	left := 0
	for i := 0; i < n; i++ {
		if rr.res[i] == resPending {
			e := rr.r.Next()
			e.PrepCancel(uint64(i))
			e.SetUserData(1<<62 | uint64(i))
			left++
		}
	}
	if _, err := rr.r.SubmitOnly(); err != nil {
		return fmt.Errorf("tap: %s queue %d: cancel deferred reads: %w", q.link.name, q.idx, err)
	}
	for {
		left -= q.reapRing(n)
		if left <= 0 {
			return nil
		}
		if err := rr.r.Wait(1); err != nil {
			return fmt.Errorf("tap: %s queue %d: wait for cancelled reads: %w", q.link.name, q.idx, err)
		}
	}
}

// ringFallback stops using the ring for this queue's reads.
func (q *queue) ringFallback(why error) {
	if q.rxr.off {
		return
	}
	q.rxr.off = true
	q.c.rxRingFallbacks.Add(1)
	q.ringErr = why
}

// handleSlot handles the n bytes a batch read into s: the slot's views
// become the reader's for handleFrame, and what handleFrame did not take
// returns to the slot for its next read.
func (q *queue) handleSlot(s *rxSlot, n int) {
	rx := &q.rx
	rx.vnet = s.vnet
	rx.head, s.head = s.head, rx.head
	rx.tail, s.tail = s.tail, rx.tail
	q.handleFrame(n)
	s.head, rx.head = rx.head, s.head
	s.tail, rx.tail = rx.tail, s.tail
}
