package ring

import (
	"sync/atomic"
	"unsafe"
)

// word32 returns the 4-aligned little-endian word at mem[off:off+4] as an
// atomic, for ring indices and waiting flags shared with the other process.
// off must be a multiple of 4 and mem must stay mapped while it is used.
func word32(mem []byte, off int) *atomic.Uint32 {
	_ = mem[off+3]
	return (*atomic.Uint32)(unsafe.Pointer(&mem[off]))
}
