//go:build linux

package xdp

import "unsafe"

// unsafeBytes views w as bytes: 8-byte aligned memory for ring tests.
func unsafeBytes(w []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), len(w)*8)
}
