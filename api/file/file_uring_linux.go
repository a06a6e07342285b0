package file

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/uring"
)

// The io_uring engine. Flow of a file op:
//
//  1. Submit → Engine.submit → uringBackend.submit: the batch goes to
//     one shard (a ring with its own lock), the next free one in round-robin
//     order, so concurrent submitters spread over the rings.
//  2. Under the shard's lock: each op takes a slot (its user_data), its
//     entry is filled in, and io_uring_enter hands the batch over. Ops that
//     find no free slot wait in the shard's backlog, in order.
//  3. Still under the lock, the submitter reaps what has completed —
//     buffered reads and writes mostly complete inside io_uring_enter — and
//     refills freed slots from the backlog.
//  4. Out of the lock, it posts those completions (FlagInline for its own
//     ops).
//  5. Everything else (disk reads, O_DIRECT, pipes waiting for data)
//     completes later: the kernel signals an eventfd registered with every
//     ring; the reaper goroutine, parked on it in Go's poller, reaps and
//     posts (steps 3 and 4).
//
// Signals are only wanted for completions nobody is about to reap: a
// submitter turns them off (IORING_CQ_EVENTFD_DISABLED) around its
// io_uring_enter and reap, so an inline completion wakes no one. A
// completion of another op posted while they are off may go unsignalled
// and — the kernel may read the flag before its CQ tail store is visible —
// unseen by the reap that follows; so when ops remain in flight after it,
// the submitter signals the eventfd itself and the reaper looks again
// (submitAndReapLocked).
//
// Invariants per shard: inflight ≤ entries (one slot per op) and cancels ≤
// CQ size − entries (a Cancel that would pass it is refused), so the CQ
// never overflows; the SQ is empty between critical sections (every
// critical section that fills entries enters), except after an
// io_uring_enter error, when the next one retries.

// Fixed buffers. Pool memory can be registered with a ring
// (IORING_REGISTER_BUFFERS), so that the kernel pins its pages once
// instead of pinning and unpinning a read's or write's pages on every
// request; an entry then names the registered buffer (READ_FIXED,
// WRITE_FIXED with buf_index). With Config.FixedBuffers (off by
// default: it did not pay here; the README has the figures):
//
//  1. The engine adopts the pool of the first pool Buf a file op brings
//     (normally Options.Pool); Bufs of other pools, received stack memory
//     and the caller's slices run unfixed.
//  2. Each ring registers that pool's regions, one fixed buffer per
//     region with buf_index = the region's index, when a Submit first
//     hands it such a Buf (a region is at most dmapool.MaxRegionSize,
//     the kernel's 1 GiB limit per buffer). Kernels before 5.13 quiesce
//     the ring to register, waiting for every request in flight (a pipe
//     read may wait forever), so there the ring registers only while idle.
//  3. An Read or Write whose Buf is live in that pool and lies in a
//     registered region goes as READ_FIXED or WRITE_FIXED
//     (FileCounters.FixedOps counts them). The live Buf is what makes
//     this safe: the pool cannot close while the op holds it, so the
//     region is still mapped where it was registered.
//  4. Regions that Grow adds after a ring registered are not in its table:
//     their Bufs run unfixed. (Re-registering would need the ring idle on
//     old kernels, and IORING_REGISTER_BUFFERS2/BUFFERS_UPDATE a sparse
//     table on new ones; Grow is rare and these ops are still correct.)
//  5. A refusal — ENOMEM or EPERM when the pages would pass
//     RLIMIT_MEMLOCK without CAP_IPC_LOCK, EFAULT for memory that cannot
//     be pinned — leaves that ring unfixed for good;
//     Counters.FixedRefused counts it and Engine.Name names the first
//     error.
//  6. Engine.Close (the stack's Close) unregisters the buffers once every
//     op has completed. Until then the rings hold the pool's pages
//     pinned, also after the pool's Close: close the stack first to give
//     the memory back.

// user_data of an entry:
//
//	bit  63     the entry is an ASYNC_CANCEL (its target's user_data below)
//	bits 32–62  generation of the slot's use
//	bits  0–31  slot
const (
	udCancel  = 1 << 63
	udGenMask = 1<<31 - 1
	udNop     = ^uint64(0)
)

func udOf(slot, gen uint32) uint64 { return uint64(gen)<<32 | uint64(slot) }

// uringBackend is the io_uring engine: a few rings (shards), one eventfd
// they all signal, and the reaper goroutine that waits on it.
type uringBackend struct {
	e      *Engine
	shards []*uringShard
	next   atomic.Uint32 // round-robin start for submitters
	efd    *os.File      // eventfd, in Go's poller
	efdNum int           // its descriptor, valid until close closes efd
	reaped chan struct{} // closed when the reaper has returned

	fixed bool // Config.FixedBuffers; immutable
	// fixedPool is the pool whose regions the rings register: the first
	// pool Buf's (step 1 of "Fixed buffers"); set once.
	fixedPool atomic.Pointer[dmapool.Pool]
	// fixedErr is the first registration a kernel refused, for Engine.Name.
	fixedErr atomic.Pointer[error]
}

// uringShard is one ring and the ops it runs.
type uringShard struct {
	b     *uringBackend
	index int
	r     *uring.Ring

	mu         sync.Mutex
	idle       sync.Cond             // on mu: broadcast by reaps while closing
	slots      []uringSlot           // +checklocks:mu; one per SQ entry
	free       []uint32              // +checklocks:mu; free slot numbers
	inflight   int                   // +checklocks:mu; slots in use
	cancels    int                   // +checklocks:mu; ASYNC_CANCEL entries in flight
	cancelWait map[uint64]chan int32 // +checklocks:mu; by target user_data: a Cancel waiting for its result
	backlog    []*Op                 // +checklocks:mu; FIFO of ops waiting for a slot
	closing    bool                  // +checklocks:mu
	cqes       [64]uring.CQE         // +checklocks:mu; reap buffer
	fixed      uringFixed            // +checklocks:mu
	// retry is set while entries wait for an io_uring_enter that failed
	// (EAGAIN, ENOMEM); the reaper then drains the shard to try again.
	retry atomic.Bool
}

// uringFixed is a ring's registered-buffer table (see "Fixed buffers").
type uringFixed struct {
	// pool is the pool whose regions are registered, nil while none are.
	pool *dmapool.Pool
	// bufs is the table as registered: bufs[i] is the pool's region i.
	bufs []uring.FixedBuf
	// tried is set once registration was tried: it is never tried again.
	tried bool
}

// uringSlot is an op in the kernel.
type uringSlot struct {
	op  *Op
	gen uint32
	iov []unix.Iovec // Readv, Writev: the iovec array, kept until completion
}

// uringDone is a completion reaped under the shard's lock, posted after.
type uringDone struct {
	op     *Op
	res    int32
	inline bool
}

// newURingBackend sets up cfg.Rings rings and checks that the kernel runs
// an entry (a NOP), so that a seccomp policy that allows io_uring_setup
// but not io_uring_enter is caught here rather than at the first op.
func newURingBackend(e *Engine, cfg Config) (backend, error) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	b := &uringBackend{e: e, reaped: make(chan struct{}), fixed: cfg.FixedBuffers}
	fail := func(err error) (backend, error) {
		for _, s := range b.shards {
			s.r.Close()
		}
		unix.Close(efd)
		return nil, err
	}
	for i := 0; i < cfg.Rings; i++ {
		r, err := uring.New(uint32(cfg.Entries))
		if err != nil {
			return fail(err)
		}
		s := &uringShard{b: b, index: i, r: r, slots: make([]uringSlot, r.Entries()), cancelWait: map[uint64]chan int32{}}
		s.idle.L = &s.mu
		for j := int(r.Entries()) - 1; j >= 0; j-- {
			s.free = append(s.free, uint32(j))
		}
		b.shards = append(b.shards, s)
		if err := r.RegisterEventfd(efd); err != nil {
			return fail(err)
		}
		if err := r.RunNop(udNop); err != nil {
			return fail(err)
		}
	}
	b.efd, b.efdNum = os.NewFile(uintptr(efd), "zcnet-io_uring-eventfd"), efd
	go b.reap()
	return b, nil
}

// submit implements backend.
func (b *uringBackend) submit(ops []*Op) {
	// Resolve the fds first: a closed File completes now, with EBADF.
	run := ops[:0]
	for _, op := range ops {
		fd, err := fileFD(op.Req.File)
		if err != nil {
			b.e.finish(op, 0, errnoOfSys(err), nil, evchan.FlagInline)
			continue
		}
		op.be.fd = fd
		run = append(run, op)
	}
	if len(run) == 0 {
		return
	}
	s := b.pick()
	var doneBuf [16]uringDone
	done := doneBuf[:0]
	var cancelled []*Op
	if s.closing {
		cancelled = run
	} else {
		if b.fixed && !s.fixed.tried {
			s.registerLocked(run)
		}
		for _, op := range run {
			op.be.shard.Store(int32(s.index) + 1)
			if len(s.backlog) == 0 && s.room() {
				s.prepLocked(op)
				op.inline = true
			} else {
				op.be.phase = phaseQueued
				s.backlog = append(s.backlog, op)
			}
		}
		done = s.submitAndReapLocked(done)
		for _, op := range run {
			op.inline = false
		}
	}
	s.mu.Unlock()
	b.post(done)
	for _, op := range cancelled {
		b.e.finish(op, 0, syscall.ECANCELED, ErrClosed, evchan.FlagInline)
	}
}

// pick locks and returns a shard: the first free one from a rotating
// start, else the start itself.
func (b *uringBackend) pick() *uringShard {
	n := uint32(len(b.shards))
	start := b.next.Add(1) % n
	for i := uint32(0); i < n; i++ {
		s := b.shards[(start+i)%n]
		if s.mu.TryLock() {
			return s
		}
	}
	s := b.shards[start]
	s.mu.Lock()
	return s
}

// room reports whether an op can go into the ring now.
//
// +checklocks:s.mu
func (s *uringShard) room() bool {
	return s.inflight < len(s.slots) && s.r.SQFree() > 0
}

// prepLocked gives op a slot and fills in its entry; the caller submits.
//
// +checklocks:s.mu
func (s *uringShard) prepLocked(op *Op) {
	idx := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	sl := &s.slots[idx]
	sl.gen = (sl.gen + 1) & udGenMask
	sl.op = op
	s.inflight++
	op.be.phase = phaseRunning
	op.be.slot = idx

	e := s.r.Next()
	fd, off := op.be.fd, op.Req.Offset // off -1: the file position
	switch op.Kind {
	case Read, Write:
		index, fixed := s.fixedIndexLocked(op)
		switch {
		case fixed && op.Kind == Read:
			e.PrepReadFixed(fd, op.mem, off, index)
		case fixed:
			e.PrepWriteFixed(fd, op.mem, off, index)
		case op.Kind == Read:
			e.PrepRead(fd, op.mem, off)
		default:
			e.PrepWrite(fd, op.mem, off)
		}
		if fixed {
			s.b.e.c.fixedOps.Add(1)
		}
	case Readv, Writev:
		sl.iov = sl.iov[:0]
		for _, b := range op.Req.Iov {
			sl.iov = append(sl.iov, uring.IovecOf(b))
		}
		if op.Kind == Readv {
			e.PrepReadv(fd, sl.iov, off)
		} else {
			e.PrepWritev(fd, sl.iov, off)
		}
	case Fsync, Fdatasync:
		e.PrepFsync(fd, op.Kind == Fdatasync)
	}
	e.SetUserData(udOf(idx, sl.gen))
}

// registerLocked registers the engine's pool with s's ring, when ops bring
// a Buf of it (steps 1, 2 and 5 of "Fixed buffers"). On a kernel that
// quiesces the ring to register, it waits for a Submit that finds the
// ring idle.
//
// +checklocks:s.mu
func (s *uringShard) registerLocked(ops []*Op) {
	var p *dmapool.Pool
	for _, op := range ops {
		if p = op.Pool.Pool(); p != nil {
			break
		}
	}
	if p == nil || (!s.b.fixedPool.CompareAndSwap(nil, p) && s.b.fixedPool.Load() != p) {
		return
	}
	if !s.r.RegistersLive() && (s.inflight > 0 || s.cancels > 0) {
		return
	}
	s.fixed.tried = true
	var bufs []uring.FixedBuf
	for _, info := range p.Regions() {
		if info.Size > uring.MaxFixedLen || len(bufs) == uring.MaxFixedBufs {
			break // cannot happen with dmapool's limits
		}
		bufs = append(bufs, uring.FixedBuf{Addr: info.Addr, Len: uintptr(info.Size)})
	}
	if len(bufs) == 0 {
		return // the pool closed meanwhile; its Bufs are invalid anyway
	}
	if err := registerFixed(s.r, bufs); err != nil {
		err = fmt.Errorf("%d regions of %d bytes: %w", len(bufs), p.Stats().BytesMapped, err)
		s.b.fixedErr.CompareAndSwap(nil, &err)
		s.b.e.c.fixedRefused.Add(1)
		return
	}
	s.fixed.pool, s.fixed.bufs = p, bufs
	s.b.e.c.fixedRings.Add(1)
}

// registerFixed and unregisterFixed are ring.registerBuffers and
// unregisterBuffers; variables so that a test can play a kernel that
// refuses (step 5) and watch the unregistration (step 6).
var (
	registerFixed   = (*uring.Ring).RegisterBuffers
	unregisterFixed = (*uring.Ring).UnregisterBuffers
)

// fixedIndexLocked returns the registered buffer that holds op's memory,
// if op can go fixed (step 3 of "Fixed buffers").
//
// +checklocks:s.mu
func (s *uringShard) fixedIndexLocked(op *Op) (uint16, bool) {
	if s.fixed.pool == nil || op.Pool.Pool() == nil {
		return 0, false
	}
	region, _, err := s.fixed.pool.Locate(op.Pool)
	if err != nil || region >= len(s.fixed.bufs) {
		return 0, false // another pool's Buf, or a region Grow added later
	}
	if !s.fixed.bufs[region].Holds(op.mem) {
		return 0, false
	}
	return uint16(region), true
}

// fixedNote says why fixed buffers are not in use where the kernel
// refused them, for Engine.Name; "" otherwise.
func (b *uringBackend) fixedNote() string {
	if err := b.fixedErr.Load(); err != nil {
		return "fixed buffers refused: " + (*err).Error()
	}
	return ""
}

// submitAndReapLocked hands the filled entries to the kernel, reaps what
// completed, and makes sure the reaper will see whatever completes later
// (see the flow comment, step 5).
//
// +checklocks:s.mu
func (s *uringShard) submitAndReapLocked(done []uringDone) []uringDone {
	quiet := s.r.Quiet(true)
	if err := s.r.Submit(); err != nil {
		// The entries stay queued; drainLocked tries again.
		s.b.e.c.enterErrors.Add(1)
	}
	done = s.drainLocked(done)
	if !quiet {
		return done
	}
	s.r.Quiet(false)
	done = s.drainLocked(done)
	if s.inflight > 0 || s.cancels > 0 {
		s.b.kick()
	}
	return done
}

// kick signals the eventfd, so the reaper looks at the rings.
func (b *uringBackend) kick() {
	one := [8]byte{1}
	unix.Write(b.efdNum, one[:])
}

// drainLocked reaps every completion, frees the slots, refills them from
// the backlog, and appends the completed ops to done for posting once the
// lock is released.
//
// +checklocks:s.mu
func (s *uringShard) drainLocked(done []uringDone) []uringDone {
	for {
		n := s.r.Reap(s.cqes[:])
		for _, c := range s.cqes[:n] {
			if c.UserData == udNop {
				continue
			}
			if c.UserData&udCancel != 0 {
				s.cancels--
				target := c.UserData &^ udCancel
				if ch := s.cancelWait[target]; ch != nil {
					delete(s.cancelWait, target)
					ch <- c.Res
				}
				continue
			}
			idx, gen := uint32(c.UserData), uint32(c.UserData>>32)
			if int(idx) >= len(s.slots) || s.slots[idx].op == nil || s.slots[idx].gen != gen {
				continue // not ours; cannot happen
			}
			sl := &s.slots[idx]
			done = append(done, uringDone{op: sl.op, res: c.Res, inline: sl.op.inline})
			sl.op = nil
			clear(sl.iov)
			s.free = append(s.free, idx)
			s.inflight--
		}
		// Freed slots take the oldest waiting ops.
		refilled := false
		for len(s.backlog) > 0 && !s.closing && s.room() {
			op := s.backlog[0]
			s.backlog[0] = nil
			s.backlog = s.backlog[1:]
			s.prepLocked(op)
			refilled = true
		}
		if refilled || s.r.Unsubmitted() > 0 {
			err := s.r.Submit()
			s.retry.Store(err != nil)
			if err != nil {
				// EAGAIN or ENOMEM: the reaper tries again at its next look.
				s.b.e.c.enterErrors.Add(1)
				s.b.kick()
				refilled = false
			}
		}
		if n < len(s.cqes) && !refilled {
			return done
		}
	}
}

// post completes reaped ops.
func (b *uringBackend) post(done []uringDone) {
	for _, d := range done {
		var flags evchan.Flags
		if d.inline {
			flags = evchan.FlagInline
		}
		if d.res < 0 {
			errno := syscall.Errno(-d.res)
			var cause error
			if errno == syscall.ECANCELED {
				cause = d.op.cause
			}
			b.e.finish(d.op, 0, errno, cause, flags)
			continue
		}
		b.e.finish(d.op, int64(d.res), 0, nil, flags)
	}
}

// reap is the reaper goroutine: each eventfd wake-up, it drains the rings
// that have completions. It returns when close closes the eventfd.
//
// The eventfd's counter is never read: Go's poller is edge-triggered and
// the kernel makes an edge on every signal, counter or not, so a wake-up
// costs no read(2) — most of them find nothing to reap, because the
// submitter reaped its inline completions itself.
func (b *uringBackend) reap() {
	defer close(b.reaped)
	rc, err := b.efd.SyscallConn()
	if err != nil {
		return
	}
	for {
		err := rc.Read(func(uintptr) bool {
			for _, s := range b.shards {
				if s.r.CQReady() > 0 || s.retry.Load() {
					s.drain()
				}
			}
			return false // wait for the next signal
		})
		if err != nil {
			return // close closed the eventfd
		}
	}
}

// drain reaps and posts a shard's completions (the reaper's step 3–4).
func (s *uringShard) drain() {
	var doneBuf [16]uringDone
	s.mu.Lock()
	done := s.drainLocked(doneBuf[:0])
	if s.closing {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
	s.b.post(done)
}

// cancel implements backend: an op in the backlog is removed; one in
// the kernel gets an IORING_OP_ASYNC_CANCEL, and cancel waits for its
// answer (and, when it succeeded, for the op's own completion).
func (b *uringBackend) cancel(op *Op, cause error) bool {
	i := op.be.shard.Load() - 1
	if i < 0 {
		return false // its Submit is still handing it over
	}
	s := b.shards[i]
	s.mu.Lock()
	switch {
	case s.closing:
	case op.be.phase == phaseQueued:
		for i, o := range s.backlog {
			if o == op {
				s.backlog = append(s.backlog[:i], s.backlog[i+1:]...)
				s.mu.Unlock()
				b.e.finish(op, 0, syscall.ECANCELED, cause, 0)
				return true
			}
		}
	case op.be.phase == phaseRunning && s.slots[op.be.slot].op == op && s.cancelRoom():
		target := udOf(op.be.slot, s.slots[op.be.slot].gen)
		if s.cancelWait[target] != nil {
			break // a Cancel is already at it
		}
		ch := make(chan int32, 1)
		s.cancelWait[target] = ch
		op.cause = cause
		s.prepCancelLocked(target)
		var doneBuf [16]uringDone
		done := s.submitAndReapLocked(doneBuf[:0])
		s.mu.Unlock()
		b.post(done)
		if res := <-ch; res != 0 {
			// ENOENT: it completed meanwhile; EALREADY: it runs on and
			// completes by itself.
			return false
		}
		<-op.Done
		return true
	}
	s.mu.Unlock()
	return false
}

// cancelRoom reports whether an ASYNC_CANCEL can be queued now: an SQ
// entry is free and its completion cannot overflow the CQ.
//
// +checklocks:s.mu
func (s *uringShard) cancelRoom() bool {
	return s.r.SQFree() > 0 && s.cancels < int(s.r.CQSize())-len(s.slots)
}

// prepCancelLocked queues an ASYNC_CANCEL for the entry with user_data
// target; the caller checked sqFree and submits.
//
// +checklocks:s.mu
func (s *uringShard) prepCancelLocked(target uint64) {
	e := s.r.Next()
	e.PrepCancel(target)
	e.SetUserData(target | udCancel)
	s.cancels++
}

// close implements backend: ops in the backlog complete with
// ECANCELED, ops in the kernel get cancelled (those the kernel is already
// running finish), and close waits for all of them before it unmaps the
// rings.
func (b *uringBackend) close() {
	for _, s := range b.shards {
		s.mu.Lock()
		s.closing = true
		cancelled := s.backlog
		s.backlog = nil
		for i := range s.slots {
			sl := &s.slots[i]
			if sl.op == nil || !s.cancelRoom() {
				continue
			}
			target := udOf(uint32(i), sl.gen)
			if s.cancelWait[target] == nil {
				sl.op.cause = ErrClosed
				s.prepCancelLocked(target)
			}
		}
		var doneBuf [16]uringDone
		done := s.submitAndReapLocked(doneBuf[:0])
		s.mu.Unlock()
		b.post(done)
		for _, op := range cancelled {
			b.e.finish(op, 0, syscall.ECANCELED, ErrClosed, 0)
		}
	}
	for _, s := range b.shards {
		s.mu.Lock()
		for s.inflight > 0 || s.cancels > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
	}
	b.efd.Close()
	<-b.reaped
	for _, s := range b.shards {
		s.mu.Lock()
		if s.fixed.pool != nil {
			// Closing the ring would drop them too; this says so first.
			_ = unregisterFixed(s.r)
			s.fixed.pool, s.fixed.bufs = nil, nil
		}
		s.mu.Unlock()
		s.r.Close()
	}
}

// fileFD returns f's descriptor without changing its mode (File.Fd would
// make it blocking). The reference Control takes ends when it returns: the
// caller must keep f open.
func fileFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(p uintptr) { fd = int(p) }); err != nil {
		return -1, closedFileErr(err)
	}
	return fd, nil
}

// closedFileErr is the error of a Control that failed: the File is
// closed (os reports internal/poll's "use of closed file" as is).
func closedFileErr(err error) error {
	return fmt.Errorf("%w: %w", syscall.EBADF, err)
}
