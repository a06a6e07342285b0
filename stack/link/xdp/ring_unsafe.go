//go:build linux

package xdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Views of the rings the kernel maps: the indices and flags are u32 words
// and the entries u64 addresses or struct xdp_desc, at the offsets
// XDP_MMAP_OFFSETS gave. mem stays mapped until the socket closes, after
// the receive loop and every writer have stopped.

func word(mem []byte, off uint64) (*atomic.Uint32, error) {
	if off%4 != 0 || off+4 > uint64(len(mem)) {
		return nil, fmt.Errorf("xdp: ring word at %d outside the %d-byte mapping", off, len(mem))
	}
	return (*atomic.Uint32)(unsafe.Pointer(&mem[off])), nil
}

func mappedIndex(mem []byte, off unix.XDPRingOffset, size uint32, entry uintptr) (ringIndex, error) {
	prod, err := word(mem, off.Producer)
	if err != nil {
		return ringIndex{}, err
	}
	cons, err := word(mem, off.Consumer)
	if err != nil {
		return ringIndex{}, err
	}
	flags, err := word(mem, off.Flags)
	if err != nil {
		return ringIndex{}, err
	}
	if off.Desc%8 != 0 || off.Desc+uint64(size)*uint64(entry) > uint64(len(mem)) {
		return ringIndex{}, fmt.Errorf("xdp: ring entries at %d outside the %d-byte mapping", off.Desc, len(mem))
	}
	r := newRingIndex(prod, cons, flags, size)
	// Start from where the kernel's indices are (zero on a fresh socket).
	r.local = prod.Load()
	r.cached = cons.Load()
	return r, nil
}

func mappedAddrRing(mem []byte, off unix.XDPRingOffset, size uint32, producer bool) (*addrRing, error) {
	r, err := mappedIndex(mem, off, size, 8)
	if err != nil {
		return nil, err
	}
	if !producer {
		r.local, r.cached = r.cons.Load(), r.prod.Load()
	}
	return &addrRing{ringIndex: r, addrs: unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Desc])), size)}, nil
}

func mappedDescRing(mem []byte, off unix.XDPRingOffset, size uint32, producer bool) (*descRing, error) {
	r, err := mappedIndex(mem, off, size, unsafe.Sizeof(unix.XDPDesc{}))
	if err != nil {
		return nil, err
	}
	if !producer {
		r.local, r.cached = r.cons.Load(), r.prod.Load()
	}
	return &descRing{ringIndex: r, descs: unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&mem[off.Desc])), size)}, nil
}

// getsockoptMmapOffsets and getsockoptStats read structs the unix package
// has no getter for.
func getsockoptMmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	n := uint32(unsafe.Sizeof(off))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return off, e
	}
	return off, nil
}

func getsockoptStats(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	n := uint32(unsafe.Sizeof(st))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return st, e
	}
	return st, nil
}

func setsockoptUmemReg(fd int, reg *unix.XDPUmemReg) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(reg)), unsafe.Sizeof(*reg), 0)
	if e != 0 {
		return e
	}
	return nil
}
