// Package uring drives one io_uring instance with raw system calls: it
// sets the ring up, prepares submission entries (Prep methods, in the
// manner of liburing's helpers), hands them to the kernel, reaps
// completions, and registers an eventfd and fixed buffers. It owns the
// ring memory shared with the kernel and its layout; it does not own what
// the requests mean, which slots are in use, or who waits for them: its
// users do (the file engine, api/file; the TAP link's batched reads and
// writes, tap), and each serialises every call on a Ring.
package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The ring memory the kernel shares with us, the submission side (fill entries, publish the
// tail, io_uring_enter) and the completion side (read entries, publish the
// head). It mirrors include/uapi/linux/io_uring.h; liburing is not used.
// The engine serialises access: one goroutine at a time submits and one
// at a time reaps, under its shard's mutex.
//
// ring memory (one mmap with IORING_FEAT_SINGLE_MMAP, the kernel's
// offsets in uringParams):
//
//	SQ ring   head tail mask entries flags dropped array[entries]u32
//	CQ ring   head tail mask entries overflow cqes[entries]×16 flags
//	SQEs      a separate mmap at IORING_OFF_SQES: entries × 64 bytes
//
// The kernel moves SQ head and CQ tail; we move SQ tail and CQ head.
// Stores to the tails and heads are releases and loads of the other
// side's are acquires (Go's atomics are sequentially consistent).

// Submission queue entry (struct io_uring_sqe), 64 bytes:
//
//	offset size field
//	     0    1 opcode
//	     1    1 flags (IOSQE_*)
//	     2    2 ioprio
//	     4    4 fd
//	     8    8 off (file offset; -1: the file position)
//	    16    8 addr (buffer, iovec array, or cancel target's user_data)
//	    24    4 len (bytes, or iovec count)
//	    28    4 op flags (rw_flags, fsync_flags, cancel_flags)
//	    32    8 user_data
//	    40    2 buf_index
//	    42    2 personality
//	    44    4 splice_fd_in / file_index
//	    48   16 addr3, pad
type SQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	fileIndex   int32
	addr3       uint64
	_           uint64
}

// Completion queue entry (struct io_uring_cqe), 16 bytes:
//
//	offset size field
//	     0    8 user_data
//	     8    4 res (result, or -errno)
//	    12    4 flags (IORING_CQE_F_*)
type CQE struct {
	UserData uint64
	Res      int32 // the result, or -errno
	Flags    uint32
}

// struct io_uring_params, 120 bytes: what we ask for, and what the kernel
// answers (sizes, features, where the ring fields are).
type uringParams struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFD         uint32
	_            [3]uint32
	sqOff        uringSQOffsets
	cqOff        uringCQOffsets
}

// struct io_sqring_offsets.
type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, _ uint32
	userAddr                                                    uint64
}

// struct io_cqring_offsets.
type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, _ uint32
	userAddr                                                    uint64
}

const (
	uringSQESize    = 64
	uringCQESize    = 16
	uringParamsSize = 120

	// io_uring_setup flags.
	uringSetupClamp     = 1 << 4 // clamp entries to the kernel's maximum
	uringSetupSubmitAll = 1 << 7 // keep submitting a batch past a failed entry (5.18)

	// io_uring_params.features bits the engine requires.
	uringFeatSingleMmap = 1 << 0 // SQ and CQ rings share one mmap (5.4)
	uringFeatNodrop     = 1 << 1 // completions are never dropped (5.5)
	uringFeatRWCurPos   = 1 << 3 // off -1 means the file position (5.6)
	// Registering buffers no longer quiesces the ring, which on older
	// kernels waits for every request in flight (5.13, with resource tags).
	uringFeatRsrcTags = 1 << 10

	// mmap offsets.
	uringOffSQRing = 0
	uringOffSQEs   = 0x10000000

	// io_uring_enter flags.
	uringEnterGetEvents = 1 << 0

	// io_uring_register opcodes.
	uringRegisterBuffersOp   = 0
	uringUnregisterBuffersOp = 1
	uringRegisterEventfdOp   = 4

	// Registered (fixed) buffers: the kernel refuses an iovec longer than
	// 1 GiB (EFAULT) and a table longer than IORING_MAX_REG_BUFFERS
	// (UIO_MAXIOV, 1024, before 5.13).
	MaxFixedLen  = 1 << 30
	MaxFixedBufs = 1024

	// Opcodes (enum io_uring_op).
	uringOpNop         = 0
	uringOpReadv       = 1
	uringOpWritev      = 2
	uringOpFsync       = 3
	uringOpReadFixed   = 4 // read into a registered buffer (buf_index)
	uringOpWriteFixed  = 5 // write from a registered buffer (buf_index)
	uringOpAsyncCancel = 14
	uringOpRead        = 22
	uringOpWrite       = 23

	// fsync_flags.
	uringFsyncDatasync = 1 << 0

	// CQ ring flags.
	uringCQEventfdDisabled = 1 << 0 // the kernel does not signal the registered eventfd
)

// ErrFeatures reports a kernel whose io_uring lacks what the engine
// needs (it is older than 5.6).
var ErrFeatures = errors.New("io_uring lacks required features (kernel 5.6 or later)")

// Ring is one io_uring instance. Immutable after New except where
// noted; the methods are not safe for concurrent use (the engine's shard
// mutex serialises them).
type Ring struct {
	fd       int
	features uint32
	entries  uint32 // SQ entries
	cqSize   uint32 // CQ entries

	ringMem []byte // SQ and CQ rings (one mapping)
	sqeMem  []byte

	sqHead, sqTail *uint32 // kernel / ours
	sqMask         uint32
	sqes           []SQE
	tail           uint32 // our next SQ tail, published by publish

	cqHead, cqTail *uint32 // ours / kernel
	cqMask         uint32
	cqes           []CQE
	// cqFlags is the CQ ring's flags word (IORING_CQ_EVENTFD_DISABLED),
	// nil on kernels before 5.8 that lack it.
	cqFlags *uint32
}

// New sets up an io_uring with (at least) entries submission entries
// and twice as many completion entries. It fails with the setup's errno:
// ENOSYS (no io_uring), EPERM (forbidden by sysctl or seccomp), ENOMEM
// (locked-memory limit), or ErrFeatures.
func New(entries uint32) (*Ring, error) {
	var p uringParams
	p.flags = uringSetupClamp | uringSetupSubmitAll
	fd, err := uringSetup(entries, &p)
	if errors.Is(err, syscall.EINVAL) {
		// Kernels before 5.18 do not know SUBMIT_ALL; submit stops at a
		// failed entry there, and enter loops (see submit).
		p = uringParams{flags: uringSetupClamp}
		fd, err = uringSetup(entries, &p)
	}
	if err != nil {
		return nil, fmt.Errorf("io_uring_setup: %w", err)
	}
	r := &Ring{fd: fd, features: p.features, entries: p.sqEntries, cqSize: p.cqEntries}
	const need = uringFeatSingleMmap | uringFeatNodrop | uringFeatRWCurPos
	if p.features&need != need {
		unix.Close(fd)
		return nil, ErrFeatures
	}
	ringSize := max(p.sqOff.array+4*p.sqEntries, p.cqOff.cqes+uringCQESize*p.cqEntries)
	r.ringMem, err = unix.Mmap(fd, uringOffSQRing, int(ringSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mmap io_uring rings: %w", err)
	}
	r.sqeMem, err = unix.Mmap(fd, uringOffSQEs, int(p.sqEntries*uringSQESize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(r.ringMem)
		unix.Close(fd)
		return nil, fmt.Errorf("mmap io_uring entries: %w", err)
	}
	r.sqHead = ringWord(r.ringMem, p.sqOff.head)
	r.sqTail = ringWord(r.ringMem, p.sqOff.tail)
	r.sqMask = *ringWord(r.ringMem, p.sqOff.ringMask)
	r.sqes = sqeSlice(r.sqeMem, p.sqEntries)
	r.tail = atomic.LoadUint32(r.sqTail)
	// The index array maps ring positions to entries one to one, for good.
	for i, a := 0, ringWords(r.ringMem, p.sqOff.array, p.sqEntries); i < len(a); i++ {
		a[i] = uint32(i)
	}
	r.cqHead = ringWord(r.ringMem, p.cqOff.head)
	r.cqTail = ringWord(r.ringMem, p.cqOff.tail)
	r.cqMask = *ringWord(r.ringMem, p.cqOff.ringMask)
	r.cqes = cqeSlice(r.ringMem, p.cqOff.cqes, p.cqEntries)
	if p.cqOff.flags != 0 {
		r.cqFlags = ringWord(r.ringMem, p.cqOff.flags)
	}
	return r, nil
}

// Entries is the number of submission entries, the most requests the
// ring holds before the kernel has consumed them.
func (r *Ring) Entries() uint32 { return r.entries }

// CQSize is the number of completion entries (twice Entries).
func (r *Ring) CQSize() uint32 { return r.cqSize }

// RegistersLive reports whether the kernel registers buffers without
// quiescing the ring (IORING_FEAT_RSRC_TAGS); without it, registration
// waits for every request in flight, so the engine registers only while
// the ring is idle.
func (r *Ring) RegistersLive() bool { return r.features&uringFeatRsrcTags != 0 }

// RunNop runs a NOP with userData through the ring and waits for it, so
// that a seccomp policy that allows io_uring_setup but not
// io_uring_enter is caught when the ring is set up rather than at the
// first request. The ring must be empty.
func (r *Ring) RunNop(userData uint64) error {
	e := r.Next()
	e.PrepNop()
	e.SetUserData(userData)
	if err := r.Submit(); err != nil {
		return err
	}
	for {
		var c [1]CQE
		if r.Reap(c[:]) == 1 {
			if c[0].UserData != userData || c[0].Res != 0 {
				return fmt.Errorf("io_uring NOP completed with %+v", c[0])
			}
			return nil
		}
		if _, err := r.enter(0, 1, uringEnterGetEvents); err != nil && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("io_uring_enter: %w", err)
		}
	}
}

// SQFree is the number of entries that can be filled before the kernel
// consumes more.
func (r *Ring) SQFree() uint32 {
	return r.entries - (r.tail - atomic.LoadUint32(r.sqHead))
}

// Next returns the zeroed entry at our tail and advances the tail; the
// caller fills it in before publish. The caller checked sqFree.
func (r *Ring) Next() *SQE {
	e := &r.sqes[r.tail&r.sqMask]
	*e = SQE{}
	r.tail++
	return e
}

// Unsubmitted is the number of published or filled entries the kernel
// has not consumed.
func (r *Ring) Unsubmitted() uint32 {
	return r.tail - atomic.LoadUint32(r.sqHead)
}

// publish makes the filled entries visible to the kernel and returns how
// many it has not consumed yet.
func (r *Ring) publish() uint32 {
	atomic.StoreUint32(r.sqTail, r.tail)
	return r.tail - atomic.LoadUint32(r.sqHead)
}

// Submit hands the published entries to the kernel (io_uring_enter). An
// entry the kernel refuses still completes, with its error, in the CQ; on
// kernels without SUBMIT_ALL the kernel stops at such an entry, so submit
// enters again until everything is consumed or no progress is made.
func (r *Ring) Submit() error {
	for {
		pending := r.publish()
		if pending == 0 {
			return nil
		}
		n, err := r.enter(pending, 0, 0)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			// EAGAIN, ENOMEM, EBUSY: the entries stay queued, and the next
			// submit or reap hands them over.
			return fmt.Errorf("io_uring_enter: %w", err)
		case n == 0:
			return nil
		}
	}
}

// SubmitOnly hands the published entries to the kernel in one
// io_uring_enter, returning how many it consumed, without the retries of
// Submit: a caller that submits a batch and reaps it at once (the TAP
// link's readers and writers) sees each refused entry as its completion.
func (r *Ring) SubmitOnly() (int, error) {
	pending := r.publish()
	if pending == 0 {
		return 0, nil
	}
	for {
		n, err := r.enter(pending, 0, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("io_uring_enter: %w", err)
		}
		return n, nil
	}
}

// Wait blocks in io_uring_enter until at least min completions are
// waiting in the CQ (or returns at once when they are).
func (r *Ring) Wait(min uint32) error {
	for r.CQReady() < min {
		if _, err := r.enter(0, min, uringEnterGetEvents); err != nil && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("io_uring_enter: %w", err)
		}
	}
	return nil
}

// enter is io_uring_enter(2) without a signal mask.
func (r *Ring) enter(toSubmit, minComplete, flags uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// CQReady is the number of completions waiting; safe to call without the
// shard's lock (a hint for the reaper).
func (r *Ring) CQReady() uint32 {
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// Reap copies up to len(dst) completions into dst, frees their CQ slots,
// and returns how many it copied.
func (r *Ring) Reap(dst []CQE) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail && n < len(dst); n++ {
		dst[n] = r.cqes[head&r.cqMask]
		head++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// Quiet turns the eventfd signal off (on) while the caller is about to reap
// itself; false where the kernel has no switch.
func (r *Ring) Quiet(on bool) bool {
	if r.cqFlags == nil {
		return false
	}
	var v uint32
	if on {
		v = uringCQEventfdDisabled
	}
	atomic.StoreUint32(r.cqFlags, v)
	return true
}

// RegisterEventfd has the kernel signal efd whenever it posts completions.
func (r *Ring) RegisterEventfd(efd int) error {
	if err := uringRegisterEventfd(r.fd, efd); err != nil {
		return fmt.Errorf("io_uring_register eventfd: %w", err)
	}
	return nil
}

// FixedBuf is one registered buffer: an address range outside the Go heap
// (a pool region) that the kernel has pinned. Its index in the table
// given to registerBuffers is the buf_index of the entries that use it.
type FixedBuf struct {
	Addr, Len uintptr
}

// Holds reports whether b lies inside f, so that an entry may name it with
// f's index (PrepReadFixed, PrepWriteFixed).
func (f FixedBuf) Holds(b []byte) bool {
	addr := bytesAddr(b)
	return addr != 0 && addr >= uint64(f.Addr) && addr+uint64(len(b)) <= uint64(f.Addr)+uint64(f.Len)
}

// RegisterBuffers registers bufs as the ring's fixed buffers
// (IORING_REGISTER_BUFFERS): the kernel pins their pages once, so that
// READ_FIXED and WRITE_FIXED skip pinning and unpinning them per request.
// It fails with EBUSY when buffers are registered already, ENOMEM or
// EPERM when the pinned pages would pass RLIMIT_MEMLOCK (without
// CAP_IPC_LOCK), EFAULT for memory the kernel cannot pin, EINVAL for a bad
// table.
func (r *Ring) RegisterBuffers(bufs []FixedBuf) error {
	if err := uringRegisterBuffers(r.fd, bufs); err != nil {
		return fmt.Errorf("io_uring_register buffers: %w", err)
	}
	return nil
}

// UnregisterBuffers drops the fixed buffers (the kernel unpins them).
func (r *Ring) UnregisterBuffers() error {
	if err := uringRegister(r.fd, uringUnregisterBuffersOp, nil, 0); err != nil {
		return fmt.Errorf("io_uring_unregister buffers: %w", err)
	}
	return nil
}

// Close unmaps the ring and closes it. Requests still in flight are
// cancelled by the kernel; the engine waits for them before it closes.
func (r *Ring) Close() error {
	err1 := unix.Munmap(r.sqeMem)
	err2 := unix.Munmap(r.ringMem)
	err3 := unix.Close(r.fd)
	return errors.Join(err1, err2, err3)
}
