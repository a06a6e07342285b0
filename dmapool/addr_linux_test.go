package dmapool

import (
	"os"
	"testing"
	"unsafe"
)

// TestRegionAddr: RegionInfo.Addr plus a buffer's offset (Locate) is where
// Buf.Bytes points, in the first region and in one Grow added; Buf.Pool
// names the pool, also for a released handle, and nil for the zero Buf.
func TestRegionAddr(t *testing.T) {
	p := newPool(t, Config{Size: 256 << 10, HugePages: HugeOff, Pin: PinOff})
	if err := p.Grow(128 << 10); err != nil {
		t.Fatal(err)
	}
	regions := p.Regions()
	if len(regions) != 2 {
		t.Fatalf("%d regions, want 2", len(regions))
	}
	seen := map[int]bool{}
	for len(seen) < 2 {
		// Reserve runs of 64 KiB until both regions have given one.
		b := mustReserve(t, p, 64<<10)
		defer b.Release()
		region, off, err := p.Locate(b)
		if err != nil {
			t.Fatal(err)
		}
		seen[region] = true
		info := regions[region]
		if info.Addr == 0 || info.Addr%uintptr(os.Getpagesize()) != 0 {
			t.Fatalf("region %d at %#x, not page-aligned", region, info.Addr)
		}
		if got, want := uintptr(unsafe.Pointer(&b.Bytes()[0])), info.Addr+uintptr(off); got != want {
			t.Fatalf("region %d: Buf at %#x, Addr+offset %#x", region, got, want)
		}
		if b.Pool() != p {
			t.Fatalf("Buf.Pool() = %p, want %p", b.Pool(), p)
		}
	}
	if regions[0].Addr == regions[1].Addr {
		t.Fatal("two regions at one address")
	}
	b := mustReserve(t, p, 100)
	b.Release()
	if b.Pool() != p || (Buf{}).Pool() != nil {
		t.Fatal("Buf.Pool of a released or zero handle")
	}
}
