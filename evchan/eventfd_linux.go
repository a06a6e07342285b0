package evchan

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// This file wraps eventfd(2) for Channel.FD: a non-blocking,
// close-on-exec eventfd in counter mode, raised by writing 1 and lowered
// by one read, which returns the counter and resets it to zero.

func newEventFD() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return -1, fmt.Errorf("evchan: eventfd: %w", err)
	}
	return fd, nil
}

// eventFDRaise adds 1 to the counter. It cannot block: the counter stays
// far below its 2^64-2 limit because the channel writes only on a
// transition from zero.
func eventFDRaise(fd int) {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	for {
		_, err := unix.Write(fd, b[:])
		if err != unix.EINTR {
			return
		}
	}
}

// eventFDLower resets the counter to zero (EAGAIN: it already was).
func eventFDLower(fd int) {
	var b [8]byte
	for {
		_, err := unix.Read(fd, b[:])
		if err != unix.EINTR {
			return
		}
	}
}

func closeEventFD(fd int) { unix.Close(fd) }
