package file

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zcnet/zcnet/evchan"
)

// File, pipe and FIFO operations through the same Ops, Submit, Cancel,
// Suspend and event channels as sockets: the paper's "usable for disk I/O
// as well" (§2, §5), so one inner loop serves a program's files beside its
// network I/O. A file op completes as one evchan.Event with Source
// SourceFileOp:
//
//	Op      the OpKind (OpRead … OpFdatasync)
//	Result  bytes read or written (0 for OpFsync, OpFdatasync)
//	Errno   0, or the errno of the system call (EBADF, ENOSPC, EINVAL …);
//	        ECANCELED after Cancel or Stack.Close
//	Flags   FlagEOF on a read that found no data at the end of the file
//	        (or of a pipe whose writers have gone); FlagInline when the
//	        op completed inside its Submit call
//	Cookie, Data  the Op's, unchanged
//	Buffer  OpRead into a Buf: the Buf, handed back (BufOf), also when
//	        the read failed; the consumer owns it and releases it
//
// Err and Result are final before the event is posted. Submit's batch
// (lio_listio), Submit with wait (LIO_WAIT), Suspend and Cancel work as
// for sockets; Cancel reaches an op waiting in the engine or, on io_uring,
// one the kernel can still stop (a read waiting on a pipe, say).
//
// Memory. An op reads into or writes from either a Buf or the caller's
// slices (Mem, Iov), never both:
//
//   - Op.Buf: Submit takes the Buf over. OpWrite releases it when the write
//     completes (like OpSend), so a Buf received from a socket is written
//     to a file and freed with no copy in user space: the kernel reads the
//     stack's (or the pool's) memory directly. OpRead needs a writable Buf
//     (from Stack.Reserve) and hands it back in the completion's Buffer,
//     Result bytes filled in from its start. Pool Bufs are slot-aligned,
//     which is what O_DIRECT needs (see below).
//   - Op.Mem, Op.Iov: the caller's memory is lent to the engine until the
//     op completes; do not touch it before then.
//
// Offsets. Offset is the pread/pwrite offset. -1 uses and advances the
// file's position, as read(2) and write(2) do. Pipes, FIFOs and other
// streams have no offset: there any Offset reads or writes the stream, as
// io_uring does (pread would fail with ESPIPE), on both engines. Ops with
// -1 on the same file run in no defined order; submit the next when one
// completes.
// A read returns what is there, like pread: short at the end of a file or
// when a pipe holds less; 0 with FlagEOF at the end. A write to a pipe may
// be short when the pipe is full, like write(2) on a non-blocking pipe;
// a write to a regular file is short only on error (ENOSPC after some
// bytes, for example).
//
// Files. Op.File is borrowed: keep it open until the op completes. A File
// already closed at Submit completes with EBADF; closing it while an op is
// in flight is a bug, as close(2) under aio is in C. Pipes and FIFOs from
// os.Pipe or os.OpenFile are non-blocking and may also be in Go's poller;
// the engine waits for them itself, so they work unchanged.
//
// O_DIRECT. Open with os.O_RDWR|syscall.O_DIRECT and use pool Bufs: the
// pool hands out memory at slot boundaries, so a pool whose SlotSize is at
// least the device's logical block size (512 B or 4 KiB; FileDirectAlign
// reports it) gives buffers O_DIRECT accepts. Offsets and lengths must be
// multiples of the same size. Misaligned memory, offsets or lengths
// complete with EINVAL. tmpfs does not support O_DIRECT at all (open
// fails with EINVAL).
//
// Engines. The stack runs file ops on one of two engines, chosen when the
// first file op is checked (or by ConfigureFiles) and reported by
// FileEngine:
//
//   - io_uring ("io_uring"): raw io_uring_setup/enter/register system calls
//     on a few rings (uring_linux.go, Linux 5.6 or later), used when the
//     kernel allows it. Submit hands the ops to the kernel at once; reads
//     and writes the page cache can serve complete inside that call and
//     are posted by the submitter (FlagInline). Others (the disk,
//     O_DIRECT, a pipe waiting for data, fsync) complete later and one
//     reaper goroutine, woken through an eventfd in Go's poller, posts
//     them (file_uring_linux.go).
//   - a worker pool ("workers"): a fixed set of goroutines doing pread,
//     pwrite, preadv, pwritev, fsync and fdatasync, for kernels without
//     io_uring or containers whose seccomp policy forbids it. Submit first
//     tries reads and writes itself with RWF_NOWAIT, which completes what
//     the page cache (or a pipe) can serve at once, as io_uring would;
//     the rest goes to the workers. Streams are read and written with
//     RWF_NOWAIT there too; one that would block waits in an epoll set
//     served by one more goroutine, not in a worker (file_workers.go).
//
// ConfigureFiles (or the environment variable ZCNET_FILE_ENGINE) forces
// either; the tests run every file test on both. Which is faster depends
// on the work (file_bench_test.go has the figures): io_uring wins with
// deep queues on the device (O_DIRECT) and with batches (one
// io_uring_enter per Submit batch once Submit hands batches over whole);
// for single page-cache reads both cost about one system call more than
// os.File; buffered writes to ext4 cost io_uring about twice a pwrite,
// because ext4 cannot write without blocking and every write is tried,
// refused and redone by a kernel worker — the worker pool does better
// there.
//
// Both are bounded: never a goroutine per op. Each op in an engine holds
// its completion slot on its channel, so a program cannot queue more than
// its channels hold; on top of that Submit refuses a file op, with an
// error wrapping evchan.ErrFull, while the engine already holds
// FileConfig.MaxPending ops (a batch admitted whole may overshoot by its
// own length). That is backpressure: consume completions and submit again.
// Submit never blocks on the engine.

// File operations. Their events have Source SourceFileOp.
const (
	OpRead      OpKind = opFileBase + iota // read Mem or into Buf at Offset (pread; -1: read)
	OpWrite                                // write Mem or Buf at Offset (pwrite; -1: write); takes a Buf over
	OpReadv                                // read into Iov at Offset (preadv)
	OpWritev                               // write Iov at Offset (pwritev)
	OpFsync                                // fsync(2)
	OpFdatasync                            // fdatasync(2)
	opFileEnd
)

func init() {
	for k, n := range map[OpKind]string{OpRead: "read", OpWrite: "write", OpReadv: "readv", OpWritev: "writev", OpFsync: "fsync", OpFdatasync: "fdatasync"} {
		opNames[k] = n
	}
}

// syscallName names the system call an op stands for, in its errors.
func (k OpKind) syscallName(offset int64) string {
	switch k {
	case OpRead:
		if offset < 0 {
			return "read"
		}
		return "pread"
	case OpWrite:
		if offset < 0 {
			return "write"
		}
		return "pwrite"
	case OpReadv:
		return "preadv"
	case OpWritev:
		return "pwritev"
	case OpFsync:
		return "fsync"
	case OpFdatasync:
		return "fdatasync"
	}
	return k.String()
}

func (k OpKind) isRead() bool  { return k == OpRead || k == OpReadv }
func (k OpKind) isWrite() bool { return k == OpWrite || k == OpWritev }

// Errors of the file engine.
var (
	// ErrFileEngine reports a file engine that cannot be used or
	// configured: io_uring forced where the kernel refuses it, a file
	// engine on a platform without one, a bad FileConfig, or
	// ConfigureFiles after the engine started.
	ErrFileEngine = errors.New("api: file engine")
	// ErrFilesClosed is the error of file ops that Stack.Close cancelled
	// (their Errno is ECANCELED).
	ErrFilesClosed = errors.New("api: file operation cancelled by Stack.Close")
)

// FileEngineKind selects the file engine.
type FileEngineKind uint8

// File engines.
const (
	// FileEngineAuto uses io_uring when the kernel allows it, else the
	// worker pool. The environment variable ZCNET_FILE_ENGINE ("io_uring"
	// or "workers") overrides it, so a test run or a container can force
	// either.
	FileEngineAuto FileEngineKind = iota
	// FileEngineURing requires io_uring.
	FileEngineURing
	// FileEngineWorkers uses the worker pool.
	FileEngineWorkers
)

func (k FileEngineKind) String() string {
	switch k {
	case FileEngineAuto:
		return "auto"
	case FileEngineURing:
		return "io_uring"
	case FileEngineWorkers:
		return "workers"
	}
	return fmt.Sprintf("FileEngineKind(%d)", uint8(k))
}

// FileEngineEnv names the environment variable that FileEngineAuto obeys.
const FileEngineEnv = "ZCNET_FILE_ENGINE"

// FileConfig configures the stack's file engine (ConfigureFiles). The zero
// value is the defaults.
type FileConfig struct {
	// Engine picks the engine; see FileEngineKind.
	Engine FileEngineKind
	// Rings is the number of io_uring instances; submitters spread over
	// them, since a ring serialises the work done inside one
	// io_uring_enter. Default min(GOMAXPROCS, 4).
	Rings int
	// Entries is the number of submission entries per ring, which is
	// also the most ops a ring has in flight (more wait in the engine).
	// Default 256; the kernel rounds up to a power of two.
	Entries int
	// Workers is the number of goroutines of the worker pool, the most
	// blocking system calls in flight at once. Default 2×GOMAXPROCS,
	// at least 4.
	Workers int
	// MaxPending bounds the file ops the engine holds (in flight and
	// waiting); Submit refuses more with an error wrapping evchan.ErrFull.
	// Default 4096.
	MaxPending int
	// FixedBuffers has the io_uring engine register pool memory with its
	// rings as fixed buffers, so that OpRead and OpWrite on pool Bufs go
	// as READ_FIXED and WRITE_FIXED and the kernel does not pin and unpin
	// their pages per op (file_uring_linux.go, "Fixed buffers";
	// FileCounters.FixedOps counts them). Off by default, because here it
	// did not pay: BenchmarkFileFixed, io_uring from one goroutine, pool
	// Bufs, medians of 5 interleaved fixed/unfixed runs (2 vCPU VM, virtio
	// disk, ext4, Linux 6.18, machine shared with other jobs); ops/s and
	// CPU µs per op, fixed vs not: O_DIRECT 4 KiB random reads at depth 32
	// 51.5 k vs 57.3 k, 10.2 vs 10.7; O_DIRECT 64 KiB at depth 32 37.6 k
	// vs 36.5 k, 11.1 vs 11.7; O_DIRECT 1 MiB sequential writes 2.36 k vs
	// 2.26 k, 217 vs 208; buffered 1 MiB writes 4.47 k vs 5.14 k, 169 vs
	// 149. Every difference is inside the run-to-run spread: pinning a few
	// pages costs little next to the rest of an op here, and registration
	// keeps the pool's pages pinned until Stack.Close. Worth measuring
	// again on a real NVMe device, where the rest costs less.
	FixedBuffers bool
}

// Defaults of FileConfig.
const (
	DefaultFileEntries    = 256
	DefaultFileMaxPending = 4096
)

func (c FileConfig) normalize() (FileConfig, error) {
	if c.Engine > FileEngineWorkers {
		return c, fmt.Errorf("%w: unknown engine %v", ErrFileEngine, c.Engine)
	}
	if c.Rings < 0 || c.Entries < 0 || c.Workers < 0 || c.MaxPending < 0 {
		return c, fmt.Errorf("%w: negative size in %+v", ErrFileEngine, c)
	}
	if c.Entries > 1<<15 {
		return c, fmt.Errorf("%w: Entries %d above 32768", ErrFileEngine, c.Entries)
	}
	if c.Engine == FileEngineAuto {
		switch v := strings.ToLower(os.Getenv(FileEngineEnv)); v {
		case "", "auto":
		case "io_uring", "uring":
			c.Engine = FileEngineURing
		case "workers", "worker", "threads":
			c.Engine = FileEngineWorkers
		default:
			return c, fmt.Errorf("%w: %s=%q (want io_uring, workers or auto)", ErrFileEngine, FileEngineEnv, v)
		}
	}
	if c.Rings == 0 {
		c.Rings = min(runtime.GOMAXPROCS(0), 4)
	}
	if c.Entries == 0 {
		c.Entries = DefaultFileEntries
	}
	if c.Workers == 0 {
		c.Workers = max(2*runtime.GOMAXPROCS(0), 4)
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultFileMaxPending
	}
	return c, nil
}

// ConfigureFiles starts the stack's file engine with cfg. Call it before
// the first file op; without it the engine starts with the defaults at
// the first one. It fails with ErrFileEngine when the engine has started
// already, when cfg is bad, or when cfg.Engine is FileEngineURing and the
// kernel refuses io_uring (the error wraps the errno: ENOSYS, EPERM).
func (s *Stack) ConfigureFiles(cfg FileConfig) error {
	return s.files.start(&cfg)
}

// FileEngine names the engine that runs file ops, "io_uring" or
// "workers", starting it with the defaults if no file op has yet; when
// io_uring was wanted but not available the reason follows, as in
// "workers (io_uring: io_uring_setup: operation not permitted)"; when the
// kernel refused to register pool memory as fixed buffers, that follows,
// as in "io_uring (fixed buffers refused: …: cannot allocate memory)". It
// returns "none: " and the error when no engine can run.
func (s *Stack) FileEngine() string {
	if err := s.files.start(nil); err != nil && !errors.Is(err, net.ErrClosed) {
		return "none: " + err.Error()
	}
	st := s.files.state.Load()
	if st == nil {
		return "none"
	}
	if n, ok := st.be.(interface{ fixedNote() string }); ok {
		if note := n.fixedNote(); note != "" {
			return st.name + " (" + note + ")"
		}
	}
	return st.name
}

// FileCounters are the file engine's books. Every byte a file op moves is
// counted once, by where its memory came from: a Buf (pool memory or a
// received network buffer: the kernel reads or writes it in place) or the
// caller's slices. The engine itself never copies data.
type FileCounters struct {
	Ops      uint64 // file ops completed (events posted or attempted)
	Errors   uint64 // of which completed with an errno, ECANCELED included
	Canceled uint64 // of which cancelled (Cancel, Stack.Close)
	Inline   uint64 // of which completed inside their Submit call

	BytesRead    uint64 // read by OpRead and OpReadv
	BytesWritten uint64 // written by OpWrite and OpWritev

	ReadIntoBufs    uint64 // read straight into pool Bufs
	WrittenFromBufs uint64 // written straight from Bufs (pool or received)
	// WrittenFromRecv is the part of WrittenFromBufs whose Bufs a socket
	// handed over, and WrittenFromRecvCopied the part of that which the
	// stack had to copy on receive (Buf.Copied). Received data written to a
	// file with no copy in user space anywhere shows as WrittenFromRecv
	// growing while WrittenFromRecvCopied stays 0.
	WrittenFromRecv       uint64
	WrittenFromRecvCopied uint64

	// EnterErrors counts io_uring_enter calls that failed (EAGAIN,
	// ENOMEM under memory pressure); their entries were submitted again.
	EnterErrors uint64

	// FixedOps counts the ops io_uring ran on registered pool memory
	// (READ_FIXED, WRITE_FIXED); FixedRings the rings that registered the
	// pool, FixedRefused those whose kernel refused (see FileEngine).
	FixedOps, FixedRings, FixedRefused uint64
}

type fileCounters struct {
	ops, errors, canceled, inline        atomic.Uint64
	read, written, readBufs, writtenBufs atomic.Uint64
	writtenRecv, writtenRecvCopied       atomic.Uint64
	enterErrors                          atomic.Uint64 // io_uring_enter failures (retried)
	fixedOps, fixedRings, fixedRefused   atomic.Uint64
}

// FileCounters returns a snapshot of the file engine's books.
func (s *Stack) FileCounters() FileCounters {
	c := &s.files.c
	return FileCounters{
		Ops: c.ops.Load(), Errors: c.errors.Load(), Canceled: c.canceled.Load(), Inline: c.inline.Load(),
		BytesRead: c.read.Load(), BytesWritten: c.written.Load(),
		ReadIntoBufs: c.readBufs.Load(), WrittenFromBufs: c.writtenBufs.Load(),
		WrittenFromRecv: c.writtenRecv.Load(), WrittenFromRecvCopied: c.writtenRecvCopied.Load(),
		EnterErrors: c.enterErrors.Load(),
		FixedOps:    c.fixedOps.Load(), FixedRings: c.fixedRings.Load(), FixedRefused: c.fixedRefused.Load(),
	}
}

// fileBackend is an engine: io_uring or the worker pool.
type fileBackend interface {
	// submit starts ops, which fileEngine.submit has prepared (op.f set).
	// Each completes exactly once through fileEngine.finish.
	submit(ops []*Op)
	// cancel cancels op if it has not started, or can be stopped: it
	// returns true once op has completed with ECANCELED; false if op runs
	// to completion (or already did).
	cancel(op *Op) bool
	// close cancels what it can, waits for every op to complete, and
	// releases the engine's resources.
	close()
}

// engineState is a started engine; immutable.
type engineState struct {
	be   fileBackend
	name string
	max  int64
}

// fileEngine runs file, pipe and FIFO operations (kinds from opFileBase
// up) for Submit: it validates ops, picks and starts a backend, and posts
// completions. The zero value is ready; the backend starts at first use.
type fileEngine struct {
	mu     sync.Mutex  // serialises start and close
	closed atomic.Bool // Stack.Close ran
	// state is the started engine; nil until start succeeds. Written
	// once, under mu.
	state   atomic.Pointer[engineState]
	pending atomic.Int64 // ops submitted and not completed
	c       fileCounters
}

// fileOp is an Op's state in the file engine, set at submission; the
// backend that runs the op owns it until completion.
type fileOp struct {
	// eng is the engine running the op, set at submission; Cancel, which
	// may run while Submit is still handing the op over, loads it.
	eng  atomic.Pointer[fileEngine]
	want int64      // bytes asked for (reads: to tell EOF from a short read)
	mem  []byte     // OpRead, OpWrite: Mem, or the taken-over Buf's bytes
	buf  *bufHandle // the Buf taken over at Submit, if any
	// cause is the error a cancelled op completes with (ErrCanceled
	// or ErrFilesClosed); set by whoever cancels, before completion.
	cause error
	// inline marks an op submitted by the goroutine that is reaping: its
	// completion is posted inside its Submit call. Guarded by the
	// backend's lock.
	inline bool
	// backend-private state.
	be backendOp
}

// backendOp is the backend's part of fileOp, guarded by the backend's lock
// (the shard's for io_uring).
type backendOp struct {
	phase uint8  // phaseQueued, phaseRunning, phasePolling
	fd    int    // the File's descriptor, resolved at submission (io_uring) or per attempt (workers)
	slot  uint32 // io_uring: the slot, while phaseRunning
	// shard is the io_uring ring, plus one (0: not in a ring yet); set
	// under the ring's lock, loaded by Cancel before it takes that lock.
	shard atomic.Int32
}

// Op phases in an engine (backendOp.phase).
const (
	phaseQueued  uint8 = iota + 1 // waiting in the engine: io_uring backlog or worker queue
	phaseRunning                  // in the kernel (io_uring) or in a worker's system call
	phasePolling                  // workers: a stream waiting for readiness
)

// newURing starts the io_uring engine; a variable so that a test can play
// a kernel that refuses io_uring.
var newURing = newURingBackend

// start starts the engine with cfg (nil: defaults) unless it has started.
// With cfg non-nil, an engine already started is an error.
func (e *fileEngine) start(cfg *FileConfig) error {
	if e.closed.Load() {
		return fmt.Errorf("%w: stack closed: %w", ErrFileEngine, net.ErrClosed)
	}
	if cfg == nil && e.state.Load() != nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return fmt.Errorf("%w: stack closed: %w", ErrFileEngine, net.ErrClosed)
	}
	if e.state.Load() != nil {
		if cfg != nil {
			return fmt.Errorf("%w: ConfigureFiles after the engine started", ErrFileEngine)
		}
		return nil
	}
	var c FileConfig
	if cfg != nil {
		c = *cfg
	}
	c, err := c.normalize()
	if err != nil {
		return err
	}
	st := &engineState{max: int64(c.MaxPending)}
	var uerr error
	if c.Engine != FileEngineWorkers {
		var be fileBackend
		be, uerr = newURing(e, c)
		if uerr == nil {
			st.be, st.name = be, "io_uring"
		} else if c.Engine == FileEngineURing {
			return fmt.Errorf("%w: io_uring: %w", ErrFileEngine, uerr)
		}
	}
	if st.be == nil {
		be, err := newWorkerBackend(e, c)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrFileEngine, err)
		}
		st.be, st.name = be, "workers"
		if uerr != nil && c.Engine == FileEngineAuto {
			st.name += " (io_uring: " + uerr.Error() + ")"
		}
	}
	e.state.Store(st)
	return nil
}

// check validates a file op before anything is queued (Stack.check).
func (e *fileEngine) check(op *Op) error {
	if op.Kind >= opFileEnd {
		return fmt.Errorf("%w: kind %v", ErrInvalidOp, op.Kind)
	}
	if err := e.start(nil); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	st := e.state.Load()
	switch {
	case op.File == nil:
		return fmt.Errorf("%w: %v without a File", ErrInvalidOp, op.Kind)
	case op.EC.Closed():
		return fmt.Errorf("%w: %w", ErrInvalidOp, evchan.ErrClosed)
	case op.Offset < -1:
		return fmt.Errorf("%w: %v at offset %d", ErrInvalidOp, op.Kind, op.Offset)
	}
	hasBuf := op.Buf.h != nil
	switch op.Kind {
	case OpRead, OpWrite:
		if op.Iov != nil {
			return fmt.Errorf("%w: %v takes Mem or Buf, not Iov", ErrInvalidOp, op.Kind)
		}
		if hasBuf && op.Mem != nil {
			return fmt.Errorf("%w: %v with both Mem and Buf", ErrInvalidOp, op.Kind)
		}
		if hasBuf {
			if err := op.Buf.Valid(); err != nil {
				return fmt.Errorf("%w: %v: %w", ErrInvalidOp, op.Kind, err)
			}
			if op.Kind == OpRead && op.Buf.h.kind != kindReserved {
				return fmt.Errorf("%w: read into a received Buf (read-only; use Stack.Reserve)", ErrInvalidOp)
			}
		}
	case OpReadv, OpWritev:
		if hasBuf || op.Mem != nil {
			return fmt.Errorf("%w: %v takes Iov, not Mem or Buf", ErrInvalidOp, op.Kind)
		}
		if len(op.Iov) == 0 || len(op.Iov) > maxIovecs {
			return fmt.Errorf("%w: %v with %d iovecs (1 to %d)", ErrInvalidOp, op.Kind, len(op.Iov), maxIovecs)
		}
	case OpFsync, OpFdatasync:
		if hasBuf || op.Mem != nil || op.Iov != nil {
			return fmt.Errorf("%w: %v takes no memory", ErrInvalidOp, op.Kind)
		}
	}
	if n := e.pending.Load(); n >= st.max {
		return fmt.Errorf("file engine holds %d ops (FileConfig.MaxPending): %w", n, evchan.ErrFull)
	}
	return nil
}

// maxIovecs is IOV_MAX on Linux.
const maxIovecs = 1024

// maxRW is the most bytes Linux moves in one read or write
// (MAX_RW_COUNT); longer requests complete short, as they do in the kernel.
const maxRW = 0x7ffff000

// submit runs checked ops whose completion slots are reserved (Submit has
// made op.done and set op.state).
func (e *fileEngine) submit(ops ...*Op) {
	st := e.state.Load()
	run := ops[:0:0]
	for _, op := range ops {
		e.pending.Add(1)
		// An Op is used once: op.f is still zero.
		op.f.eng.Store(e)
		switch op.Kind {
		case OpRead, OpWrite:
			op.f.mem = op.Mem
			if op.Buf.h != nil {
				h, ok := op.Buf.claim()
				op.Buf = Buf{}
				if !ok || (op.Kind == OpRead && h.kind != kindReserved) {
					if ok {
						op.f.buf = h // handed back by the completion
					}
					// Released (or handed over) between check and now.
					e.finish(op, 0, syscall.EINVAL, fmt.Errorf("%v: %w", op.Kind, ErrInvalidBuffer), evchan.FlagInline)
					continue
				}
				op.f.buf = h
				op.f.mem = h.data
			}
			if len(op.f.mem) > maxRW {
				op.f.mem = op.f.mem[:maxRW]
			}
			op.f.want = int64(len(op.f.mem))
		case OpReadv, OpWritev:
			for _, b := range op.Iov {
				op.f.want += int64(len(b))
			}
		}
		run = append(run, op)
	}
	if len(run) == 0 {
		return
	}
	if st == nil {
		// Unreachable: check started the engine.
		for _, op := range run {
			e.finish(op, 0, syscall.ECANCELED, ErrFilesClosed, 0)
		}
		return
	}
	st.be.submit(run)
}

// cancel is Op.Cancel for file ops.
func (e *fileEngine) cancel(op *Op) error {
	st := e.state.Load()
	if st == nil || !st.be.cancel(op) {
		return ErrNotCancelable
	}
	return nil
}

// close cancels the ops that have not started, waits for the rest, and
// stops the backend (Stack.Close).
func (e *fileEngine) close() {
	e.mu.Lock()
	if e.closed.Swap(true) {
		e.mu.Unlock()
		return
	}
	st := e.state.Load()
	e.mu.Unlock()
	if st != nil {
		st.be.close()
	}
}

// finish completes op: res bytes, or errno with cause (nil: the system
// call's error). It returns a read's Buf in the event or releases a
// write's, counts, and posts.
func (e *fileEngine) finish(op *Op, res int64, errno syscall.Errno, cause error, flags evchan.Flags) {
	ev := evchan.Event{Flags: flags, Result: res, Errno: errno}
	err := cause
	c := &e.c
	c.ops.Add(1)
	if flags&evchan.FlagInline != 0 {
		c.inline.Add(1)
	}
	switch {
	case errno != 0:
		ev.Result = 0
		c.errors.Add(1)
		if errno == syscall.ECANCELED {
			c.canceled.Add(1)
		}
		if err == nil {
			err = os.NewSyscallError(op.Kind.syscallName(op.Offset), errno)
		}
	case op.Kind.isRead():
		c.read.Add(uint64(res))
		if op.f.buf != nil {
			c.readBufs.Add(uint64(res))
		}
		if res == 0 && op.f.want > 0 {
			ev.Flags |= FlagEOF
			err = io.EOF
		}
	case op.Kind.isWrite():
		c.written.Add(uint64(res))
		if h := op.f.buf; h != nil {
			c.writtenBufs.Add(uint64(res))
			if h.kind == kindView || h.kind == kindCopied {
				c.writtenRecv.Add(uint64(res))
				if h.kind == kindCopied {
					c.writtenRecvCopied.Add(uint64(res))
				}
			}
		}
	}
	if h := op.f.buf; h != nil {
		op.f.buf = nil
		if op.Kind == OpRead {
			ev.Buffer = h
		} else {
			// The write is done with the Buf: free it before the event, so
			// that whoever sees the completion finds the memory back.
			owner, n := h.owner, len(h.data)
			h.free()
			if owner != nil {
				owner.credit(n)
			}
		}
	}
	op.f.mem = nil
	// The engine's room is back before the event says so.
	e.pending.Add(-1)
	op.completeFile(ev, err)
}

// completeFile posts op's completion with its reserved slot and marks it
// done; the file engine's completeLocked (which needs no socket lock: the
// backend completes each op exactly once). Err and Result are final before
// the event is posted, so a consumer that takes the event sees them.
func (op *Op) completeFile(ev evchan.Event, err error) {
	ev.Source = evchan.SourceFileOp
	ev.Op = uint16(op.Kind)
	ev.Cookie, ev.Data = op.Cookie, op.Data
	op.res, op.err = ev.Result, err
	op.state.Store(opDone)
	if perr := op.credit.Post(ev); perr != nil {
		// The channel was closed under us: what the event carried is ours.
		releaseCarried(ev)
	}
	op.credit.Release()
	close(op.done)
}

// cancelFile is Cancel for file ops (op.go routes here).
func (op *Op) cancelFile() error {
	e := op.f.eng.Load()
	if op.state.Load() != opSubmitted || e == nil {
		return ErrNotCancelable
	}
	return e.cancel(op)
}

// errnoOfSys turns a system call's error into an errno: EBADF for a File
// that is closed (the only way Control fails), EIO for anything else that
// is not an errno.
func errnoOfSys(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, os.ErrClosed):
		return syscall.EBADF
	}
	return syscall.EIO
}
