//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// xsk is one AF_XDP socket with its UMEM registered and its four rings
// mapped: the system-call half of the link. The frames' memory belongs to
// the link's dmapool region, which must outlive the socket.
type xsk struct {
	fd         int
	stopMu     sync.Mutex // orders stop's write before close's close of stopFD
	stopFD     int        // eventfd that ends a wait; stop and close hold stopMu
	fill, comp *addrRing
	rx, tx     *descRing
	maps       [][]byte // the rings' mappings, unmapped by close
	zeroCopy   bool
}

// bindMode selects XDP_ZEROCOPY, XDP_COPY or the kernel's choice.
type bindMode int

const (
	bindAuto bindMode = iota
	bindZeroCopy
	bindCopy
)

// openXSK makes the socket over the UMEM at addr (size bytes, frames of
// frameSize), with every ring of ringSize entries, and binds it to queue of
// ifindex. The calling thread's network namespace is the socket's.
func openXSK(ifindex, queue int, addr uintptr, size int, frameSize, ringSize uint32, mode bindMode) (_ *xsk, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("xdp: socket(AF_XDP): %w", unsupported(err))
	}
	s := &xsk{fd: fd, stopFD: -1}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.stopFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("xdp: eventfd: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(addr), Len: uint64(size), Size: frameSize}
	if err := setsockoptUmemReg(fd, &reg); err != nil {
		return nil, fmt.Errorf("xdp: XDP_UMEM_REG (%d bytes at %#x, frames of %d): %w", size, addr, frameSize, err)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, int(ringSize)); err != nil {
			return nil, fmt.Errorf("xdp: ring size %d (option %d): %w", ringSize, opt, err)
		}
	}
	off, err := getsockoptMmapOffsets(fd)
	if err != nil {
		return nil, fmt.Errorf("xdp: XDP_MMAP_OFFSETS: %w", err)
	}
	mapRing := func(pgoff int64, o unix.XDPRingOffset, entry uint64) ([]byte, error) {
		n := int(o.Desc + uint64(ringSize)*entry)
		m, err := unix.Mmap(fd, pgoff, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("xdp: mmap ring at %#x: %w", pgoff, err)
		}
		s.maps = append(s.maps, m)
		return m, nil
	}
	const descSize = 16
	var m []byte
	if m, err = mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, 8); err != nil {
		return nil, err
	}
	if s.fill, err = mappedAddrRing(m, off.Fr, ringSize, true); err != nil {
		return nil, err
	}
	if m, err = mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, 8); err != nil {
		return nil, err
	}
	if s.comp, err = mappedAddrRing(m, off.Cr, ringSize, false); err != nil {
		return nil, err
	}
	if m, err = mapRing(unix.XDP_PGOFF_RX_RING, off.Rx, descSize); err != nil {
		return nil, err
	}
	if s.rx, err = mappedDescRing(m, off.Rx, ringSize, false); err != nil {
		return nil, err
	}
	if m, err = mapRing(unix.XDP_PGOFF_TX_RING, off.Tx, descSize); err != nil {
		return nil, err
	}
	if s.tx, err = mappedDescRing(m, off.Tx, ringSize, true); err != nil {
		return nil, err
	}
	var flags uint16 = unix.XDP_USE_NEED_WAKEUP
	switch mode {
	case bindZeroCopy:
		flags |= unix.XDP_ZEROCOPY
	case bindCopy:
		flags |= unix.XDP_COPY
	}
	// With neither flag the kernel tries zero-copy and falls back to copy.
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("xdp: bind to ifindex %d queue %d (flags %#x): %w", ifindex, queue, flags, err)
	}
	opts, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return nil, fmt.Errorf("xdp: XDP_OPTIONS: %w", err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	return s, nil
}

// kick asks the kernel to send what is on the TX ring (sendto with no
// data). EAGAIN, EBUSY and ENOBUFS mean "busy, try again", which the caller
// does on its next batch; the bool reports whether more may be pending.
func (s *xsk) kick() (again bool, err error) {
	err = unix.Sendto(s.fd, nil, unix.MSG_DONTWAIT, nil)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EINTR):
		return true, nil
	}
	return false, err
}

// wakeRx tells a driver that asked for it (XDP_RING_NEED_WAKEUP on the
// fill ring) that the fill ring has frames again.
func (s *xsk) wakeRx() {
	_, _, _ = unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// wait blocks in poll(2) until the RX ring has entries or stop is called;
// false after stop.
func (s *xsk) wait() bool {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}, {Fd: int32(s.stopFD), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return fds[1].Revents == 0
}

// stop ends every wait, now and later.
func (s *xsk) stop() {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopFD >= 0 {
		var one = [8]byte{1}
		_, _ = unix.Write(s.stopFD, one[:])
	}
}

func (s *xsk) stats() (unix.XDPStatistics, error) { return getsockoptStats(s.fd) }

// close unmaps the rings and closes the socket; the kernel then lets go of
// the UMEM and removes the socket from the XSKMAP.
func (s *xsk) close() {
	for _, m := range s.maps {
		_ = unix.Munmap(m)
	}
	s.maps = nil
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	s.stopMu.Lock()
	if s.stopFD >= 0 {
		unix.Close(s.stopFD)
		s.stopFD = -1
	}
	s.stopMu.Unlock()
}
