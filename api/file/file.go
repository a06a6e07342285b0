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

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
)

// Kind is a file operation. Its value is the Op field of the operation's
// completion event; api.OpRead … api.OpFdatasync are these values.
type Kind uint16

// File operations.
const (
	Read      Kind = 64 + iota // read Mem or into a Buf at Offset (pread; -1: read)
	Write                      // write Mem or a Buf at Offset (pwrite; -1: write)
	Readv                      // read into Iov at Offset (preadv)
	Writev                     // write Iov at Offset (pwritev)
	Fsync                      // fsync(2)
	Fdatasync                  // fdatasync(2)
	kindEnd
)

// Valid reports whether k is a file operation.
func (k Kind) Valid() bool { return k >= Read && k < kindEnd }

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Write:
		return "write"
	case Readv:
		return "readv"
	case Writev:
		return "writev"
	case Fsync:
		return "fsync"
	case Fdatasync:
		return "fdatasync"
	}
	return fmt.Sprintf("file.Kind(%d)", uint16(k))
}

// syscallName names the system call an op stands for, in its errors.
func (k Kind) syscallName(offset int64) string {
	switch {
	case k == Read && offset >= 0:
		return "pread"
	case k == Write && offset >= 0:
		return "pwrite"
	case k == Readv:
		return "preadv"
	case k == Writev:
		return "pwritev"
	}
	return k.String()
}

func (k Kind) isRead() bool  { return k == Read || k == Readv }
func (k Kind) isWrite() bool { return k == Write || k == Writev }

// FlagEOF marks a read completion that found no data at the end of the
// file, or of a pipe whose writers have gone. It is the bit api.FlagEOF
// marks the end of a stream with.
const FlagEOF evchan.Flags = 1 << 16

// Request is what a file operation works on: the part of api.Op that
// names a file, an offset and the caller's memory.
type Request struct {
	// File is the file, pipe or FIFO; borrowed: keep it open until the
	// operation completes.
	File *os.File
	// Offset is the pread/pwrite offset (Read, Write, Readv, Writev);
	// -1 uses and advances the file position. Streams ignore it.
	Offset int64
	// Mem is the caller's memory for Read and Write when no Buf is
	// given; lent until the operation completes.
	Mem []byte
	// Iov is the caller's memory for Readv and Writev; lent until the
	// operation completes.
	Iov [][]byte
}

// Origin says where the memory of a taken-over buffer (Op.Buf) came from,
// for Counters.
type Origin uint8

// Origins.
const (
	FromCaller       Origin = iota // Request.Mem or Iov: no buffer taken over
	FromPool                       // a buffer reserved from the pool
	FromReceived                   // a buffer a socket handed over in place
	FromReceivedCopy               // a buffer a socket handed over, copied on receive
)

// Completer takes an operation's completion.
type Completer interface {
	// CompleteFile is called exactly once per operation, after the
	// engine has released its room for it. ev has Source
	// evchan.SourceFileOp, Op (the Kind), Result, Errno and Flags
	// (FlagEOF, evchan.FlagInline) filled in; err is nil, io.EOF at the
	// end of the file, the system call's error, or the cause of a
	// cancellation. The Completer posts the event (adding Cookie, Data,
	// Buffer) and disposes of Op.Buf.
	CompleteFile(ev evchan.Event, err error)
}

// Op is one operation as the engine runs it. The submitter fills in the
// exported fields and hands it to Submit once; the engine owns it until
// it calls Completer.CompleteFile.
type Op struct {
	Kind Kind
	Req  *Request
	// Buf is the memory of a buffer the submitter took over, used
	// instead of Req.Mem by Read and Write; From says where it came from
	// and Pool is its pool buffer when it is pool memory, which the
	// io_uring engine may run as a fixed buffer.
	Buf       []byte
	From      Origin
	Pool      dmapool.Buf
	Completer Completer
	// Done is made by the submitter; the engine closes it once
	// CompleteFile has returned.
	Done chan struct{}

	// eng is the engine running the op, set at submission; Cancel, which
	// may run while Submit is still handing the op over, loads it.
	eng  atomic.Pointer[Engine]
	want int64  // bytes asked for (reads: to tell EOF from a short read)
	mem  []byte // Read, Write: Req.Mem or Buf
	// cause is the error a cancelled op completes with; set by whoever
	// cancels, before completion.
	cause error
	// inline marks an op submitted by the goroutine that is reaping: its
	// completion is posted inside its Submit call. Guarded by the
	// backend's lock.
	inline bool
	// backend-private state.
	be backendOp
}

// Errors of the file engine.
var (
	// ErrEngine reports a file engine that cannot be used or configured:
	// io_uring forced where the kernel refuses it, a file engine on a
	// platform without one, a bad Config, or Configure after the engine
	// started.
	ErrEngine = errors.New("file: engine")
	// ErrClosed is the error of operations that Engine.Close (the
	// stack's Close) cancelled; their Errno is ECANCELED.
	ErrClosed = errors.New("file: operation cancelled by Stack.Close")
)

// EngineKind selects the file engine.
type EngineKind uint8

// File engines.
const (
	// EngineAuto uses io_uring when the kernel allows it, else the
	// worker pool. The environment variable ZCNET_FILE_ENGINE ("io_uring"
	// or "workers") overrides it, so a test run or a container can force
	// either.
	EngineAuto EngineKind = iota
	// EngineURing requires io_uring.
	EngineURing
	// EngineWorkers uses the worker pool.
	EngineWorkers
)

func (k EngineKind) String() string {
	switch k {
	case EngineAuto:
		return "auto"
	case EngineURing:
		return "io_uring"
	case EngineWorkers:
		return "workers"
	}
	return fmt.Sprintf("EngineKind(%d)", uint8(k))
}

// EngineEnv names the environment variable that EngineAuto obeys.
const EngineEnv = "ZCNET_FILE_ENGINE"

// Config configures a file engine (api's Stack.ConfigureFiles). The zero
// value is the defaults.
type Config struct {
	// Engine picks the engine; see EngineKind.
	Engine EngineKind
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
	// waiting); Check refuses more with an error wrapping evchan.ErrFull.
	// Default 4096.
	MaxPending int
	// FixedBuffers has the io_uring engine register pool memory with its
	// rings as fixed buffers, so that Read and Write on pool Bufs go as
	// READ_FIXED and WRITE_FIXED and the kernel does not pin and unpin
	// their pages per op (file_uring_linux.go, "Fixed buffers";
	// Counters.FixedOps counts them). Off by default: BenchmarkFileFixed
	// found no difference beyond the run-to-run spread on a virtio disk
	// (the README has the figures), and registration keeps the pool's
	// pages pinned until the engine closes. Worth measuring again on a
	// fast NVMe device, where the rest of an op costs less.
	FixedBuffers bool
}

// Defaults of Config.
const (
	DefaultEntries    = 256
	DefaultMaxPending = 4096
)

func (c Config) normalize() (Config, error) {
	if c.Engine > EngineWorkers {
		return c, fmt.Errorf("%w: unknown engine %v", ErrEngine, c.Engine)
	}
	if c.Rings < 0 || c.Entries < 0 || c.Workers < 0 || c.MaxPending < 0 {
		return c, fmt.Errorf("%w: negative size in %+v", ErrEngine, c)
	}
	if c.Entries > 1<<15 {
		return c, fmt.Errorf("%w: Entries %d above 32768", ErrEngine, c.Entries)
	}
	if c.Engine == EngineAuto {
		switch v := strings.ToLower(os.Getenv(EngineEnv)); v {
		case "", "auto":
		case "io_uring", "uring":
			c.Engine = EngineURing
		case "workers", "worker", "threads":
			c.Engine = EngineWorkers
		default:
			return c, fmt.Errorf("%w: %s=%q (want io_uring, workers or auto)", ErrEngine, EngineEnv, v)
		}
	}
	if c.Rings == 0 {
		c.Rings = min(runtime.GOMAXPROCS(0), 4)
	}
	if c.Entries == 0 {
		c.Entries = DefaultEntries
	}
	if c.Workers == 0 {
		c.Workers = max(2*runtime.GOMAXPROCS(0), 4)
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	return c, nil
}

// Configure starts the engine with cfg. Call it before the first
// operation; without it the engine starts with the defaults at the first
// one. It fails with ErrEngine when the engine has started already, when
// cfg is bad, or when cfg.Engine is EngineURing and the kernel refuses
// io_uring (the error wraps the errno: ENOSYS, EPERM).
func (e *Engine) Configure(cfg Config) error {
	return e.start(&cfg)
}

// Name names the engine that runs operations, "io_uring" or "workers",
// starting it with the defaults if no operation has yet; when io_uring
// was wanted but not available the reason follows, as in
// "workers (io_uring: io_uring_setup: operation not permitted)"; when the
// kernel refused to register pool memory as fixed buffers, that follows,
// as in "io_uring (fixed buffers refused: …: cannot allocate memory)". It
// returns "none: " and the error when no engine can run.
func (e *Engine) Name() string {
	if err := e.start(nil); err != nil && !errors.Is(err, net.ErrClosed) {
		return "none: " + err.Error()
	}
	st := e.state.Load()
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

// Counters are the file engine's books. Every byte an operation moves is
// counted once, by where its memory came from: a Buf (pool memory or a
// received network buffer: the kernel reads or writes it in place) or the
// caller's slices. The engine itself never copies data.
type Counters struct {
	Ops      uint64 // operations completed (events posted or attempted)
	Errors   uint64 // of which completed with an errno, ECANCELED included
	Canceled uint64 // of which cancelled (Cancel, Stack.Close)
	Inline   uint64 // of which completed inside their Submit call

	BytesRead    uint64 // read by Read and Readv
	BytesWritten uint64 // written by Write and Writev

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
	// pool, FixedRefused those whose kernel refused (see Name).
	FixedOps, FixedRings, FixedRefused uint64
}

type counters struct {
	ops, errors, canceled, inline        atomic.Uint64
	read, written, readBufs, writtenBufs atomic.Uint64
	writtenRecv, writtenRecvCopied       atomic.Uint64
	enterErrors                          atomic.Uint64 // io_uring_enter failures (retried)
	fixedOps, fixedRings, fixedRefused   atomic.Uint64
}

// Counters returns a snapshot of the engine's books.
func (e *Engine) Counters() Counters {
	c := &e.c
	return Counters{
		Ops: c.ops.Load(), Errors: c.errors.Load(), Canceled: c.canceled.Load(), Inline: c.inline.Load(),
		BytesRead: c.read.Load(), BytesWritten: c.written.Load(),
		ReadIntoBufs: c.readBufs.Load(), WrittenFromBufs: c.writtenBufs.Load(),
		WrittenFromRecv: c.writtenRecv.Load(), WrittenFromRecvCopied: c.writtenRecvCopied.Load(),
		EnterErrors: c.enterErrors.Load(),
		FixedOps:    c.fixedOps.Load(), FixedRings: c.fixedRings.Load(), FixedRefused: c.fixedRefused.Load(),
	}
}

// backend is an engine: io_uring or the worker pool.
type backend interface {
	// submit starts ops, which Engine.Submit has prepared (op.mem set).
	// Each completes exactly once through Engine.finish.
	submit(ops []*Op)
	// cancel cancels op if it has not started, or can be stopped: it
	// returns true once op has completed with ECANCELED; false if op runs
	// to completion (or already did).
	cancel(op *Op, cause error) bool
	// close cancels what it can, waits for every op to complete, and
	// releases the engine's resources.
	close()
}

// engineState is a started engine; immutable.
type engineState struct {
	be   backend
	name string
	max  int64
}

// Engine runs file, pipe and FIFO operations: it validates them, picks and
// starts a backend, and hands each completion to its Completer. The zero
// value is ready; the backend starts at first use. api.Stack holds one.
type Engine struct {
	mu     sync.Mutex  // serialises start and close
	closed atomic.Bool // Close ran
	// state is the started engine; nil until start succeeds. Written
	// once, under mu.
	state   atomic.Pointer[engineState]
	pending atomic.Int64 // ops submitted and not completed
	c       counters
}

// backendOp is the backend's part of Op, guarded by the backend's lock
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
func (e *Engine) start(cfg *Config) error {
	if e.closed.Load() {
		return fmt.Errorf("%w: stack closed: %w", ErrEngine, net.ErrClosed)
	}
	if cfg == nil && e.state.Load() != nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return fmt.Errorf("%w: stack closed: %w", ErrEngine, net.ErrClosed)
	}
	if e.state.Load() != nil {
		if cfg != nil {
			return fmt.Errorf("%w: Configure after the engine started", ErrEngine)
		}
		return nil
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c, err := c.normalize()
	if err != nil {
		return err
	}
	st := &engineState{max: int64(c.MaxPending)}
	var uerr error
	if c.Engine != EngineWorkers {
		var be backend
		be, uerr = newURing(e, c)
		if uerr == nil {
			st.be, st.name = be, "io_uring"
		} else if c.Engine == EngineURing {
			return fmt.Errorf("%w: io_uring: %w", ErrEngine, uerr)
		}
	}
	if st.be == nil {
		be, err := newWorkerBackend(e, c)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrEngine, err)
		}
		st.be, st.name = be, "workers"
		if uerr != nil && c.Engine == EngineAuto {
			st.name += " (io_uring: " + uerr.Error() + ")"
		}
	}
	e.state.Store(st)
	return nil
}

// Check validates an operation of kind on r before anything is queued,
// starting the engine if it has not started; hasBuf says the submitter
// will hand over a buffer (Op.Buf) instead of r.Mem. It fails with an
// error wrapping evchan.ErrFull while the engine holds Config.MaxPending
// operations: that is backpressure, consume completions and submit again.
func (e *Engine) Check(kind Kind, r *Request, hasBuf bool) error {
	if !kind.Valid() {
		return fmt.Errorf("kind %v", kind)
	}
	if err := e.start(nil); err != nil {
		return err
	}
	st := e.state.Load()
	switch {
	case r == nil || r.File == nil:
		return fmt.Errorf("%v without a File", kind)
	case r.Offset < -1:
		return fmt.Errorf("%v at offset %d", kind, r.Offset)
	}
	switch kind {
	case Read, Write:
		if r.Iov != nil {
			return fmt.Errorf("%v takes Mem or Buf, not Iov", kind)
		}
		if hasBuf && r.Mem != nil {
			return fmt.Errorf("%v with both Mem and Buf", kind)
		}
	case Readv, Writev:
		if hasBuf || r.Mem != nil {
			return fmt.Errorf("%v takes Iov, not Mem or Buf", kind)
		}
		if len(r.Iov) == 0 || len(r.Iov) > maxIovecs {
			return fmt.Errorf("%v with %d iovecs (1 to %d)", kind, len(r.Iov), maxIovecs)
		}
	case Fsync, Fdatasync:
		if hasBuf || r.Mem != nil || r.Iov != nil {
			return fmt.Errorf("%v takes no memory", kind)
		}
	}
	if n := e.pending.Load(); n >= st.max {
		return fmt.Errorf("file engine holds %d ops (Config.MaxPending): %w", n, evchan.ErrFull)
	}
	return nil
}

// maxIovecs is IOV_MAX on Linux.
const maxIovecs = 1024

// maxRW is the most bytes Linux moves in one read or write
// (MAX_RW_COUNT); longer requests complete short, as they do in the kernel.
const maxRW = 0x7ffff000

// Submit runs checked operations, as one batch (one io_uring_enter on
// the io_uring engine). It never blocks on the engine; each op completes
// exactly once, through its Completer, possibly before Submit returns
// (flagged evchan.FlagInline).
func (e *Engine) Submit(ops ...*Op) {
	st := e.state.Load()
	for _, op := range ops {
		e.pending.Add(1)
		// An Op is used once: its engine state is still zero.
		op.eng.Store(e)
		switch op.Kind {
		case Read, Write:
			op.mem = op.Req.Mem
			if op.From != FromCaller {
				op.mem = op.Buf
			}
			if len(op.mem) > maxRW {
				op.mem = op.mem[:maxRW]
			}
			op.want = int64(len(op.mem))
		case Readv, Writev:
			for _, b := range op.Req.Iov {
				op.want += int64(len(b))
			}
		}
	}
	if len(ops) == 0 {
		return
	}
	if st == nil {
		// Unreachable: Check started the engine.
		for _, op := range ops {
			e.finish(op, 0, syscall.ECANCELED, ErrClosed, 0)
		}
		return
	}
	st.be.submit(ops)
}

// Fail completes op, checked but not submitted, with errno and cause
// without running it (its buffer was released between Check and Submit),
// flagged evchan.FlagInline.
func (e *Engine) Fail(op *Op, errno syscall.Errno, cause error) {
	e.pending.Add(1)
	op.eng.Store(e)
	e.finish(op, 0, errno, cause, evchan.FlagInline)
}

// Cancel cancels op if it has not started or can still be stopped (a read
// waiting on a pipe, on io_uring): it returns true once op has completed
// with ECANCELED and cause as its error; false when op runs to completion
// or already did.
func (op *Op) Cancel(cause error) bool {
	e := op.eng.Load()
	if e == nil {
		return false
	}
	st := e.state.Load()
	return st != nil && st.be.cancel(op, cause)
}

// Close cancels the operations that have not started, waits for the rest,
// and stops the backend; operations submitted after it fail Check.
func (e *Engine) Close() {
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
// call's error). It counts, gives the engine's room back, and hands the
// completion to op's Completer.
func (e *Engine) finish(op *Op, res int64, errno syscall.Errno, cause error, flags evchan.Flags) {
	ev := evchan.Event{Source: evchan.SourceFileOp, Op: uint16(op.Kind), Flags: flags, Result: res, Errno: errno}
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
			err = os.NewSyscallError(op.Kind.syscallName(op.Req.Offset), errno)
		}
	case op.Kind.isRead():
		c.read.Add(uint64(res))
		if op.From != FromCaller {
			c.readBufs.Add(uint64(res))
		}
		if res == 0 && op.want > 0 {
			ev.Flags |= FlagEOF
			err = io.EOF
		}
	case op.Kind.isWrite():
		c.written.Add(uint64(res))
		if op.From != FromCaller {
			c.writtenBufs.Add(uint64(res))
		}
		if op.From == FromReceived || op.From == FromReceivedCopy {
			c.writtenRecv.Add(uint64(res))
		}
		if op.From == FromReceivedCopy {
			c.writtenRecvCopied.Add(uint64(res))
		}
	}
	op.mem = nil
	// The engine's room is back before the event says so.
	e.pending.Add(-1)
	op.Completer.CompleteFile(ev, err)
	close(op.Done)
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
