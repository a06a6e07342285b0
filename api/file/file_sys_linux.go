package file

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"syscall"
	"weak"

	"golang.org/x/sys/unix"
)

// The worker pool's system calls (file_workers.go).

// runFileOp makes op's system call on a worker. Streams (offset -1) are
// tried with RWF_NOWAIT when nowait is set: again reports one that would
// block, to be polled; op.be.fd then holds its descriptor. The call runs
// inside the File's Control, so a concurrent Close cannot hand the number
// to another file under it.
func runFileOp(op *Op, nowait bool) (res int64, errno syscall.Errno, again bool) {
	rc, err := op.Req.File.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			op.be.fd = int(fd)
			var n int
			n, serr = sysFileOp(int(fd), op, nowait)
			res = int64(n)
		})
		if err != nil {
			err = closedFileErr(err)
		} else {
			err = serr
		}
	}
	switch {
	case err == nil:
		return res, 0, false
	case nowait && errors.Is(err, syscall.EAGAIN):
		return 0, 0, true
	}
	return 0, errnoOfSys(err), false
}

// tryNowait makes a read or write's system call with RWF_NOWAIT on the
// submitter's goroutine: data in the page cache (or room in a pipe) moves
// at once, without a hand-off to a worker. ok is false when the call
// would block, failed, or cannot be made without blocking (fsync); the
// op then goes to the workers, which repeat it and report any error.
// unsupported reports a file that knows no RWF_NOWAIT (EOPNOTSUPP).
//
// O_DIRECT files are left to the workers: a direct read or write waits for
// the device even with RWF_NOWAIT, which would block the submitter.
func tryNowait(op *Op) (res int64, ok, unsupported bool) {
	if !op.Kind.isRead() && !op.Kind.isWrite() {
		return 0, false, false
	}
	rc, err := op.Req.File.SyscallConn()
	if err != nil {
		return 0, false, false
	}
	var n int
	var serr error
	err = rc.Control(func(fd uintptr) {
		if isDirect(op.Req.File, fd) {
			serr = syscall.EAGAIN
			return
		}
		iov := op.Req.Iov
		if op.Kind == Read || op.Kind == Write {
			iov = [][]byte{op.mem}
		}
		for {
			if op.Kind.isRead() {
				n, serr = unix.Preadv2(int(fd), iov, op.Req.Offset, unix.RWF_NOWAIT)
			} else {
				n, serr = unix.Pwritev2(int(fd), iov, op.Req.Offset, unix.RWF_NOWAIT)
			}
			if !errors.Is(serr, syscall.EINTR) {
				return
			}
		}
	})
	if err != nil || serr != nil {
		return 0, false, errors.Is(serr, syscall.EOPNOTSUPP)
	}
	return int64(n), true, false
}

// sysFileOp is the system call itself, retried on EINTR.
func sysFileOp(fd int, op *Op, nowait bool) (int, error) {
	off := op.Req.Offset
	for {
		n, err := sysFileOpOnce(fd, op, off, nowait)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.ESPIPE) && off >= 0 {
			// A stream: the offset means nothing, as in io_uring.
			off = -1
			continue
		}
		if errors.Is(err, syscall.EOPNOTSUPP) && nowait {
			// This kind of file knows no RWF_NOWAIT: plain read or write
			// (EAGAIN then comes from a non-blocking file itself).
			nowait = false
			continue
		}
		return n, err
	}
}

func sysFileOpOnce(fd int, op *Op, off int64, nowait bool) (int, error) {
	var flags int
	if nowait {
		flags = unix.RWF_NOWAIT
	}
	switch op.Kind {
	case Read:
		if off >= 0 {
			return unix.Pread(fd, op.mem, off)
		}
		return unix.Preadv2(fd, [][]byte{op.mem}, -1, flags)
	case Write:
		if off >= 0 {
			return unix.Pwrite(fd, op.mem, off)
		}
		return unix.Pwritev2(fd, [][]byte{op.mem}, -1, flags)
	case Readv:
		if off >= 0 {
			return unix.Preadv(fd, op.Req.Iov, off)
		}
		return unix.Preadv2(fd, op.Req.Iov, -1, flags)
	case Writev:
		if off >= 0 {
			return unix.Pwritev(fd, op.Req.Iov, off)
		}
		return unix.Pwritev2(fd, op.Req.Iov, -1, flags)
	case Fsync:
		return 0, unix.Fsync(fd)
	case Fdatasync:
		return 0, unix.Fdatasync(fd)
	}
	return 0, syscall.EINVAL
}

// DirectAlign reports the alignment O_DIRECT needs for f (statx
// STATX_DIOALIGN, Linux 6.1): of memory addresses, and of file offsets
// and lengths. It returns an error wrapping errors.ErrUnsupported when the
// kernel or file system does not say (older kernels; files not opened on
// a file system with direct I/O, such as tmpfs).
func DirectAlign(f *os.File) (mem, offset int, err error) {
	fd, err := fileFD(f)
	if err != nil {
		return 0, 0, err
	}
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err != nil {
		return 0, 0, os.NewSyscallError("statx", err)
	}
	if st.Mask&unix.STATX_DIOALIGN == 0 || st.Dio_offset_align == 0 {
		return 0, 0, errors.ErrUnsupported
	}
	return int(st.Dio_mem_align), int(st.Dio_offset_align), nil
}

// directFiles remembers which Files are open with O_DIRECT, so that
// tryNowait asks the kernel (fcntl, a system call) once per File, not per
// op. Keys are weak pointers: an entry never keeps a File alive, a new
// File never inherits the entry of a dead one at the same address, and a
// cleanup drops the entry when the File is collected. A File whose
// O_DIRECT flag changes (F_SETFL) after its first op keeps its first
// answer.
var directFiles sync.Map // weak.Pointer[os.File] → bool

func isDirect(f *os.File, fd uintptr) bool {
	k := weak.Make(f)
	if v, ok := directFiles.Load(k); ok {
		return v.(bool)
	}
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	d := err == nil && flags&unix.O_DIRECT != 0
	if _, loaded := directFiles.LoadOrStore(k, d); !loaded {
		runtime.AddCleanup(f, func(k weak.Pointer[os.File]) { directFiles.Delete(k) }, k)
	}
	return d
}
