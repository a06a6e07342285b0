package evchan

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file wraps the POSIX message queue system calls of Linux
// (mq_overview(7)): mq_open, mq_unlink, mq_timedsend, mq_timedreceive and
// mq_getsetattr, called directly because the C library's mq_* functions
// are thin wrappers that also strip the name's leading '/'. On Linux a
// message queue descriptor is a file descriptor: always close-on-exec,
// pollable (POLLIN while a message is queued, POLLOUT while there is
// room), closed with close(2).

// mqAttr mirrors struct mq_attr from <linux/mqueue.h>: eight C longs.
type mqAttr struct {
	flags, maxmsg, msgsize, curmsgs int
	_                               [4]int
}

// mqOpen opens (or creates) the queue /name (name without its slash)
// non-blocking.
func mqOpen(name string, flag int, mode uint32, maxmsg, msgsize int64) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	var attr *mqAttr
	if maxmsg > 0 || msgsize > 0 {
		attr = &mqAttr{maxmsg: int(maxmsg), msgsize: int(msgsize)}
	}
	fd, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)),
		uintptr(flag|unix.O_NONBLOCK), uintptr(mode), uintptr(unsafe.Pointer(attr)), 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// mqUnlink removes the queue /name (name without its slash).
func mqUnlink(name string) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// mqSend queues msg with priority prio; EAGAIN when the queue is full.
func mqSend(fd int, msg []byte, prio uint) error {
	_, _, errno := unix.Syscall6(unix.SYS_MQ_TIMEDSEND, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(msg))), uintptr(len(msg)), uintptr(prio), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// mqReceive dequeues the oldest message of the highest priority into buf;
// EAGAIN when the queue is empty, EMSGSIZE when buf is shorter than the
// queue's message size.
func mqReceive(fd int, buf []byte) (int, uint, error) {
	var prio uint32
	n, _, errno := unix.Syscall6(unix.SYS_MQ_TIMEDRECEIVE, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), uintptr(unsafe.Pointer(&prio)), 0, 0)
	if errno != 0 {
		return 0, 0, errno
	}
	return int(n), uint(prio), nil
}

// mqGetAttr reads the queue's attributes.
func mqGetAttr(fd int) (maxmsg, msgsize, curmsgs int64, err error) {
	var a mqAttr
	if _, _, errno := unix.Syscall(unix.SYS_MQ_GETSETATTR, uintptr(fd), 0, uintptr(unsafe.Pointer(&a))); errno != 0 {
		return 0, 0, 0, errno
	}
	return int64(a.maxmsg), int64(a.msgsize), int64(a.curmsgs), nil
}

func mqClose(fd int) error { return unix.Close(fd) }

// isEAGAIN reports whether err is the "would block" of a non-blocking
// queue.
func isEAGAIN(err error) bool { return err == unix.EAGAIN }
