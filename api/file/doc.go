// Package file runs file, pipe and FIFO operations for zcnet's
// asynchronous API (the paper's "usable for disk I/O as well"): reads,
// writes, vectored reads and writes, fsync and fdatasync, each completing
// as one event on an evchan channel, so one inner loop serves a program's
// files beside its network I/O.
//
// It owns the engine that runs them: validation, the bounded queue
// (Config.MaxPending), the two backends, cancellation, and the books
// (Counters). It does not own the operations' control blocks, the event
// channels, the completion slots or buffers: package api submits file ops
// through Stack.Submit beside socket ops (api.OpRead … api.OpFdatasync
// are this package's Kind values, api.Op.File a Request), reserves each
// completion's slot, takes a Buf over and hands it back, and posts the
// event this package builds, through a Completer. The io_uring ring
// itself is evchan/uring.
//
// # Completions
//
// An operation completes as one evchan.Event with Source SourceFileOp:
//
//	Op      the Kind (Read … Fdatasync)
//	Result  bytes read or written (0 for Fsync, Fdatasync)
//	Errno   0, or the errno of the system call (EBADF, ENOSPC, EINVAL …);
//	        ECANCELED after a cancel or the stack's Close
//	Flags   FlagEOF on a read that found no data at the end of the file
//	        (or of a pipe whose writers have gone); evchan.FlagInline when
//	        the op completed inside its Submit call
//
// api adds the Op's Cookie and Data and, for a read into a Buf, the Buf.
//
// # Offsets, short reads and writes
//
// Request.Offset is the pread/pwrite offset; -1 uses and advances the
// file's position, as read(2) and write(2) do. Pipes, FIFOs and other
// streams have no offset: there any Offset reads or writes the stream, as
// io_uring does, on both engines. Ops with -1 on the same file run in no
// defined order; submit the next when one completes. A read returns what
// is there, like pread: short at the end of a file or when a pipe holds
// less; 0 with FlagEOF at the end. A write to a pipe may be short when
// the pipe is full; a write to a regular file is short only on error.
//
// # Files and memory
//
// Request.File is borrowed: keep it open until the op completes. A File
// already closed at Submit completes with EBADF; closing it while an op
// is in flight is a bug, as close(2) under aio is in C. Pipes and FIFOs
// from os.Pipe or os.OpenFile are non-blocking and may be in Go's poller;
// the engine waits for them itself. Request.Mem and Iov are lent until
// the op completes. The engine never copies data.
//
// O_DIRECT: open with os.O_RDWR|syscall.O_DIRECT and use pool Bufs: a
// pool whose SlotSize is at least the device's logical block size
// (DirectAlign reports it) hands out buffers O_DIRECT accepts. Offsets
// and lengths must be multiples of the same size; misaligned ones
// complete with EINVAL. tmpfs does not support O_DIRECT.
//
// # Engines
//
// Name says which engine runs, chosen at the first operation or by
// Configure (Config.Engine, or the environment variable ZCNET_FILE_ENGINE):
//
//   - io_uring ("io_uring"): a few rings driven with raw system calls
//     (Linux 5.6 or later), where the kernel allows it. Submit hands the
//     ops to the kernel at once; those the page cache serves complete
//     inside that call. The rest (the disk, O_DIRECT, a pipe waiting for
//     data, fsync) complete later, posted by one reaper goroutine woken
//     through an eventfd in Go's poller (file_uring_linux.go).
//   - a worker pool ("workers"): a fixed set of goroutines doing pread,
//     pwrite, preadv, pwritev, fsync and fdatasync, for kernels without
//     io_uring or containers whose seccomp policy forbids it. Submit first
//     tries reads and writes itself with RWF_NOWAIT; the rest go to the
//     workers. A stream that would block waits in an epoll set served by
//     one more goroutine, not in a worker (file_workers.go).
//
// Which is faster depends on the work: io_uring wins with deep queues on
// the device (O_DIRECT) and with batches; buffered writes to ext4, which
// io_uring hands to a kernel worker after a refused nonblocking try, go
// better on the worker pool. The README has the measured figures
// (file_bench_test.go's benchmarks).
//
// Both are bounded, never a goroutine per op: Check refuses an operation,
// with an error wrapping evchan.ErrFull, while the engine holds
// Config.MaxPending (a batch admitted whole may overshoot by its own
// length). That is backpressure: consume completions and submit again.
// Submit never blocks on the engine. Outside Linux there is no engine:
// Check fails with ErrEngine wrapping errors.ErrUnsupported.
package file
