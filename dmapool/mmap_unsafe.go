//go:build linux

package dmapool

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmRange is a range of this process's address space outside the Go heap.
// It is the only place where the package turns addresses into slices.
type vmRange struct {
	p unsafe.Pointer // start, never nil for a live range
	n uintptr        // length in bytes
}

// reserveAligned reserves n bytes of address space, inaccessible
// (PROT_NONE, MAP_NORESERVE), starting at a multiple of align (a power of
// two). The caller maps memory over it with mapFixed.
func reserveAligned(n, align uintptr) (vmRange, error) {
	p, err := unix.MmapPtr(-1, 0, nil, n+align, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return vmRange{}, err
	}
	head := (align - uintptr(p)&(align-1)) & (align - 1)
	tail := align - head
	if head != 0 {
		if err := unix.MunmapPtr(p, head); err != nil {
			_ = unix.MunmapPtr(p, n+align)
			return vmRange{}, err
		}
	}
	start := unsafe.Add(p, head)
	if tail != 0 {
		if err := unix.MunmapPtr(unsafe.Add(start, n), tail); err != nil {
			_ = unix.MunmapPtr(start, n+tail)
			return vmRange{}, err
		}
	}
	return vmRange{p: start, n: n}, nil
}

// mapFixed maps memory over r (MAP_FIXED): fd's first r.n bytes when fd >= 0,
// else anonymous memory. flags must not include MAP_FIXED.
func (r vmRange) mapFixed(prot, flags, fd int) error {
	_, err := unix.MmapPtr(fd, 0, r.p, r.n, prot, flags|unix.MAP_FIXED)
	return err
}

// mmapAnywhere maps n bytes wherever the kernel chooses.
func mmapAnywhere(n uintptr, prot, flags, fd int) (vmRange, error) {
	p, err := unix.MmapPtr(fd, 0, nil, n, prot, flags)
	if err != nil {
		return vmRange{}, err
	}
	return vmRange{p: p, n: n}, nil
}

// unmap releases r; r must not be used afterwards.
func (r vmRange) unmap() error {
	return unix.MunmapPtr(r.p, r.n)
}

// bytes is the slice over r. It stays valid until unmap.
func (r vmRange) bytes() []byte {
	return unsafe.Slice((*byte)(r.p), r.n)
}

// addr is r's start as a number, for RegionInfo.Addr.
func (r vmRange) addr() uintptr { return uintptr(r.p) }
