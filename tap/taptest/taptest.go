//go:build linux

package taptest

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// sockBuf is each socket's send and receive buffer: room for a few dozen
// 64 KiB super-frames in flight, so that two stacks joined by the pair see
// backpressure rather than drops.
const sockBuf = 4 << 20

// Socketpair returns two connected AF_UNIX SOCK_SEQPACKET sockets,
// non-blocking and close-on-exec: what is written to one as a single write
// is read from the other as a single read, like a frame on a TAP queue. The
// caller owns both descriptors.
func Socketpair() (a, b int, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, -1, fmt.Errorf("taptest: socketpair: %w", err)
	}
	for _, fd := range fds {
		// Best effort: SO_*BUF is capped by the sysctl limits, which
		// only matters for throughput.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
	}
	return fds[0], fds[1], nil
}

// Peer is the far end of a Socketpair: it writes frames to the link and
// reads what the link sends. It is not safe for concurrent use.
type Peer struct {
	fd int
}

// NewPeer returns a Peer over fd and takes ownership of it.
func NewPeer(fd int) *Peer { return &Peer{fd: fd} }

// Write sends b (virtio-net header included, when the link uses one) as
// one frame.
func (p *Peer) Write(b []byte) error {
	for {
		_, err := unix.Write(p.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			if err := p.poll(unix.POLLOUT, time.Second); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("taptest: write: %w", err)
		}
		return nil
	}
}

// Read waits up to timeout for a frame and copies it into b, returning its
// length (truncated to len(b)).
func (p *Peer) Read(b []byte, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Read(p.fd, b)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			left := time.Until(deadline)
			if left <= 0 {
				return 0, ErrTimeout
			}
			if err := p.poll(unix.POLLIN, left); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("taptest: read: %w", err)
		}
	}
}

// Drain reads and discards frames until none arrives for quiet, and returns
// how many it read.
func (p *Peer) Drain(quiet time.Duration) int {
	buf := make([]byte, 1<<17)
	n := 0
	for {
		if _, err := p.Read(buf, quiet); err != nil {
			return n
		}
		n++
	}
}

// Close closes the peer's descriptor.
func (p *Peer) Close() error { return unix.Close(p.fd) }

func (p *Peer) poll(events int16, timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: events}}
	ms := max(int(timeout/time.Millisecond), 1)
	for {
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("taptest: poll: %w", err)
		}
		if n == 0 {
			return ErrTimeout
		}
		return nil
	}
}
