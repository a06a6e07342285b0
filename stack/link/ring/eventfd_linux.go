package ring

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Eventfds carry the kicks (see eventfd(2)). They are blocking: a side
// with nothing to do sleeps in read(2) on its own eventfd, in a system call
// of its own thread rather than in Go's network poller, so a kick wakes it
// with one futex-free return from the kernel instead of a poller round trip
// (measured: BenchmarkTCPRoundTrip/ring). Blocking is a property of the
// open file both processes share, so a peer may switch ours to
// non-blocking; sleepEventfd then falls back to poll(2).

// newEventfd returns a blocking eventfd as an *os.File (which owns and
// closes it) and its descriptor, valid while the file is open.
func newEventfd() (*os.File, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("ring: eventfd: %w", err)
	}
	return os.NewFile(uintptr(fd), "zcnet-ring-eventfd"), nil
}

// kickEventfd adds one to the eventfd fd. It never blocks in practice (only
// a counter at 2^64-2 would) and ignores errors: a saturated counter means
// a wake-up is pending anyway, a closed one that the session is over.
func kickEventfd(fd int) {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(fd, one[:])
}

// sleepEventfd blocks until the eventfd fd has a count and takes it. It
// returns an error only when fd is unusable (closed, not an eventfd).
func sleepEventfd(fd int) error {
	var b [8]byte
	for {
		_, err := unix.Read(fd, b[:])
		switch err {
		case nil:
			return nil
		case unix.EINTR:
		case unix.EAGAIN: // made non-blocking by the other side
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
				return err
			}
		default:
			return err
		}
	}
}
