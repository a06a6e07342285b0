package stack

import "testing"

func TestSliceAddr(t *testing.T) {
	b := make([]byte, 100)
	if sliceAddr(b[10:20])-sliceAddr(b) != 10 {
		t.Fatal("sub-slice address is not base + offset")
	}
	if sliceAddr(nil) != 0 || sliceAddr(b[:0]) != 0 {
		t.Fatal("empty slices must have address 0")
	}
}
