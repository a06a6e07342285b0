package tap

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// readv and writev wrap the system calls over a caller-owned iovec array,
// without the per-call [][]byte-to-iovec conversion (and allocation) of
// unix.Readv and unix.Writev. The iovecs must point at memory that stays
// alive for the call (Go heap memory does: it is never moved).
//
// They use Syscall, not RawSyscall: a write of a GSO super-frame to a TAP
// runs the kernel's whole receive path in the caller's context, and the
// scheduler should be told.

func readv(fd int, iov []unix.Iovec) (int, syscall.Errno) {
	n, _, errno := unix.Syscall(unix.SYS_READV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), errno
}

func writev(fd int, iov []unix.Iovec) (int, syscall.Errno) {
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	return int(n), errno
}

// setIovec points iov at b, which must not be empty.
func setIovec(iov *unix.Iovec, b []byte) {
	iov.Base = &b[0]
	iov.SetLen(len(b))
}

// iovMax is the kernel's limit on iovecs per call (UIO_MAXIOV).
const iovMax = 1024

// translateErrno maps a failed write to the stack's error.
func translateErrno(e syscall.Errno) tcpip.Error { return tcpip.TranslateErrno(e) }
