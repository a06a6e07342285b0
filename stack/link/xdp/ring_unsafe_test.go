//go:build linux

package xdp

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMappedRings lays rings over plain memory at kernel-style offsets:
// what the ring writes lands at the offsets, what is written there the
// ring reads, and offsets outside the mapping are refused.
func TestMappedRings(t *testing.T) {
	// Backing memory aligned for the u64 entries.
	words := make([]uint64, 64)
	mem := unsafeBytes(words)
	off := unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	fill, err := mappedAddrRing(mem, off, 8, true)
	if err != nil {
		t.Fatal(err)
	}
	*fill.at(fill.local) = 0xabc000
	fill.submit(1)
	if got := binary.NativeEndian.Uint32(mem[0:]); got != 1 {
		t.Fatalf("producer word %d, want 1", got)
	}
	if got := binary.NativeEndian.Uint64(mem[192:]); got != 0xabc000 {
		t.Fatalf("entry 0 %#x", got)
	}
	// A consumer ring over the same layout picks up the kernel's indices.
	binary.NativeEndian.PutUint32(mem[64:], 0)
	comp, err := mappedAddrRing(mem, off, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	if n, bad := comp.ready(8); n != 1 || bad {
		t.Fatalf("consumer sees %d (bad %v), want 1", n, bad)
	}
	binary.NativeEndian.PutUint32(mem[128:], unix.XDP_RING_NEED_WAKEUP)
	if !comp.needWakeup() {
		t.Fatal("need_wakeup flag not seen")
	}
	descMem := unsafeBytes(make([]uint64, 64))
	rx, err := mappedDescRing(descMem, unix.XDPRingOffset{Producer: 0, Consumer: 8, Flags: 16, Desc: 64}, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	binary.NativeEndian.PutUint64(descMem[64+16:], 0x1000) // entry 1: addr
	binary.NativeEndian.PutUint32(descMem[64+24:], 60)     // entry 1: len
	if d := *rx.at(1); d.Addr != 0x1000 || d.Len != 60 {
		t.Fatalf("descriptor 1 read as %+v", d)
	}
	for _, bad := range []unix.XDPRingOffset{
		{Producer: 510, Consumer: 64, Flags: 128, Desc: 192}, // past the end
		{Producer: 2, Consumer: 64, Flags: 128, Desc: 192},   // misaligned word
		{Producer: 0, Consumer: 64, Flags: 128, Desc: 500},   // entries past the end
		{Producer: 0, Consumer: 64, Flags: 128, Desc: 196},   // misaligned entries
	} {
		if _, err := mappedAddrRing(mem, bad, 8, true); err == nil {
			t.Errorf("offsets %+v accepted", bad)
		}
	}
}

// TestSockoptWrappers: the raw getsockopt/setsockopt wrappers fail cleanly
// on a socket that is not AF_XDP.
func TestSockoptWrappers(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("skipping: no UDP socket: %v", err)
	}
	defer unix.Close(fd)
	if _, err := getsockoptStats(fd); err == nil {
		t.Error("XDP_STATISTICS on a UDP socket: no error")
	}
	if _, err := getsockoptMmapOffsets(fd); err == nil {
		t.Error("XDP_MMAP_OFFSETS on a UDP socket: no error")
	}
	if err := setsockoptUmemReg(fd, &unix.XDPUmemReg{}); err == nil {
		t.Error("XDP_UMEM_REG on a UDP socket: no error")
	}
}
