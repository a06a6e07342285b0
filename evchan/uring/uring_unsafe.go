//go:build linux

package uring

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The unsafe parts of the io_uring ring (uring_linux.go): typed views of
// the shared ring memory the kernel maps for us, the addresses of Go
// memory that go into submission entries, and the three system calls,
// whose arguments are pointers.

// The kernel's layouts are fixed by its ABI; a mismatch fails the build.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(SQE{})-uringSQESize]
	_ = [1]struct{}{}[unsafe.Sizeof(CQE{})-uringCQESize]
	_ = [1]struct{}{}[unsafe.Sizeof(uringParams{})-uringParamsSize]
	_ = [1]struct{}{}[unsafe.Sizeof(FixedBuf{})-unsafe.Sizeof(unix.Iovec{})]
)

// ringWord returns the 32-bit ring field at off in mem (a head, tail,
// mask or flags word shared with the kernel). Access it atomically.
func ringWord(mem []byte, off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

// ringWords returns n 32-bit words from off in mem (the SQ index array).
func ringWords(mem []byte, off, n uint32) []uint32 {
	_ = mem[off+4*n-1]
	return unsafe.Slice((*uint32)(unsafe.Pointer(&mem[off])), n)
}

// sqeSlice views mem as n submission entries.
func sqeSlice(mem []byte, n uint32) []SQE {
	_ = mem[uintptr(n)*uringSQESize-1]
	return unsafe.Slice((*SQE)(unsafe.Pointer(&mem[0])), n)
}

// cqeSlice views n completion entries from off in mem.
func cqeSlice(mem []byte, off, n uint32) []CQE {
	_ = mem[uintptr(off)+uintptr(n)*uringCQESize-1]
	return unsafe.Slice((*CQE)(unsafe.Pointer(&mem[off])), n)
}

// bytesAddr is the address of b's first byte, for a submission entry; 0
// for an empty b. The caller keeps b reachable until the kernel is done
// with it (the engine holds the Op, which holds the slice).
func bytesAddr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// iovecAddr is the address of an iovec array, kept reachable by the caller.
func iovecAddr(iov []unix.Iovec) uint64 {
	if len(iov) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(iov))))
}

// IovecOf makes the kernel's iovec for b.
func IovecOf(b []byte) unix.Iovec {
	var v unix.Iovec
	if len(b) > 0 {
		v.Base = unsafe.SliceData(b)
		v.SetLen(len(b))
	}
	return v
}

// uringSetup is io_uring_setup(2).
func uringSetup(entries uint32, p *uringParams) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// uringRegister is io_uring_register(2) with a pointer argument.
func uringRegister(fd int, opcode uint32, arg unsafe.Pointer, n uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(opcode), uintptr(arg), uintptr(n), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// uringRegisterEventfd registers efd to be signalled on completions.
func uringRegisterEventfd(fd, efd int) error {
	v := int32(efd)
	return uringRegister(fd, uringRegisterEventfdOp, unsafe.Pointer(&v), 1)
}

// uringRegisterBuffers registers bufs as fixed buffers. A FixedBuf has
// struct iovec's layout (base, length), so the table goes
// to the kernel as is, and no address becomes a Go pointer.
func uringRegisterBuffers(fd int, bufs []FixedBuf) error {
	if len(bufs) == 0 {
		return syscall.EINVAL
	}
	return uringRegister(fd, uringRegisterBuffersOp, unsafe.Pointer(unsafe.SliceData(bufs)), uint32(len(bufs)))
}
