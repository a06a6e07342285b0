//go:build linux

package uring

import "golang.org/x/sys/unix"

// Preparing submission entries. Each Prep method fills in an entry that
// Next returned (zeroed) for one request, in the manner of liburing's
// io_uring_prep_* helpers, so the engine says what it asks for instead of
// setting opcodes and fields by hand. The memory an entry names (a
// buffer, an iovec array) must stay reachable and untouched until its
// completion is reaped. User data is set separately, with SetUserData.

// prepRW fills the fields every read, write and fsync entry has.
func (e *SQE) prepRW(opcode uint8, fd int, addr uint64, n uint32, off int64) {
	e.opcode = opcode
	e.fd = int32(fd)
	e.addr = addr
	e.len = n
	e.off = uint64(off)
}

// SetUserData sets the value the entry's completion carries back in
// CQE.UserData.
func (e *SQE) SetUserData(v uint64) { e.userData = v }

// PrepNop prepares a request that does nothing and completes with 0.
func (e *SQE) PrepNop() { e.opcode = uringOpNop }

// PrepRead prepares a read of len(b) bytes into b from fd at off (pread;
// off -1: the file position, as read(2)).
func (e *SQE) PrepRead(fd int, b []byte, off int64) {
	e.prepRW(uringOpRead, fd, bytesAddr(b), uint32(len(b)), off)
}

// PrepWrite prepares a write of b to fd at off (pwrite; -1: the file
// position).
func (e *SQE) PrepWrite(fd int, b []byte, off int64) {
	e.prepRW(uringOpWrite, fd, bytesAddr(b), uint32(len(b)), off)
}

// PrepReadFixed is PrepRead into memory inside the registered buffer
// index (RegisterBuffers), which the kernel has pinned already.
func (e *SQE) PrepReadFixed(fd int, b []byte, off int64, index uint16) {
	e.prepRW(uringOpReadFixed, fd, bytesAddr(b), uint32(len(b)), off)
	e.bufIndex = index
}

// PrepWriteFixed is PrepWrite from memory inside the registered buffer
// index.
func (e *SQE) PrepWriteFixed(fd int, b []byte, off int64, index uint16) {
	e.prepRW(uringOpWriteFixed, fd, bytesAddr(b), uint32(len(b)), off)
	e.bufIndex = index
}

// PrepReadv prepares a vectored read into iov from fd at off (preadv).
func (e *SQE) PrepReadv(fd int, iov []unix.Iovec, off int64) {
	e.prepRW(uringOpReadv, fd, iovecAddr(iov), uint32(len(iov)), off)
}

// PrepWritev prepares a vectored write of iov to fd at off (pwritev).
func (e *SQE) PrepWritev(fd int, iov []unix.Iovec, off int64) {
	e.prepRW(uringOpWritev, fd, iovecAddr(iov), uint32(len(iov)), off)
}

// SetRWFlags sets a read or write entry's per-request flags (rw_flags:
// the RWF_* flags of preadv2 and pwritev2, such as unix.RWF_NOWAIT).
func (e *SQE) SetRWFlags(flags uint32) { e.opFlags = flags }

// PrepFsync prepares an fsync of fd, or with datasync an fdatasync.
func (e *SQE) PrepFsync(fd int, datasync bool) {
	e.prepRW(uringOpFsync, fd, 0, 0, 0)
	if datasync {
		e.opFlags = uringFsyncDatasync
	}
}

// PrepCancel prepares the cancellation of the request whose user data is
// target (IORING_OP_ASYNC_CANCEL). Its own completion's result is 0 when
// the target was stopped, -ENOENT when it was not found, -EALREADY when
// it is running and may not stop.
func (e *SQE) PrepCancel(target uint64) {
	e.prepRW(uringOpAsyncCancel, -1, target, 0, 0)
}
