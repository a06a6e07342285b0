package stack

import "unsafe"

// sliceAddr returns the address of b's first byte, or 0 for an empty slice.
// The zero-copy registry compares the memory the stack reads from with the
// memory its shadows keep alive; Go orders pointers only through uintptr.
func sliceAddr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}
