package dmapool

import "unsafe"

// stackHint returns an address on the calling goroutine's stack. Goroutines
// run on distinct stacks, so the address tells them apart with no shared
// state and no system call; the allocator hashes it to pick a goroutine's
// home group of slots. It is only a hint: a stack moves when it grows.
func stackHint() uintptr {
	var b byte
	return uintptr(unsafe.Pointer(&b))
}
