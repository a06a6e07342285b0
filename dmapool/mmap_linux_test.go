package dmapool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// smaps returns the /proc/self/smaps block of the mapping that starts at
// region r's first byte: its "Key: value" fields and its VmFlags.
func smaps(t *testing.T, r *region) (fields map[string]int64, flags map[string]bool) {
	t.Helper()
	addr := strings.TrimPrefix(fmt.Sprintf("%p", r.m.vm.p), "0x")
	start, err := strconv.ParseUint(addr, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	in := false
	fields, flags = map[string]int64{}, map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, _, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			v, err := strconv.ParseUint(lo, 16, 64)
			if err == nil {
				if in {
					break
				}
				in = v == start
				continue
			}
		}
		if !in {
			continue
		}
		if f[0] == "VmFlags:" {
			for _, fl := range f[1:] {
				flags[fl] = true
			}
		} else if len(f) >= 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				fields[strings.TrimSuffix(f[0], ":")] = v
			}
		}
	}
	if !in {
		t.Fatalf("no mapping at %#x in /proc/self/smaps", start)
	}
	return fields, flags
}

func vmFlags(t *testing.T, r *region) map[string]bool {
	_, f := smaps(t, r)
	return f
}

// hugeTLBFree is the free hugetlb reserve in bytes.
func hugeTLBFree(t *testing.T) int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := procField(b, "HugePages_Free:")
	return int(n) * hugePageSize()
}

// expectPages is what HugeAuto should give a size-byte region on this
// machine: hugetlb if reserved, else THP if enabled, else normal pages.
func expectPages(t *testing.T, size int, shared bool) PageKind {
	switch {
	case hugeTLBFree(t) >= roundUp(size, hugePageSize()):
		return PageHugeTLB
	case thpEnabled(shared):
		return PageTHP
	}
	return PageNormal
}

func TestHugePagesAuto(t *testing.T) {
	size := 2 * hugePageSize()
	for _, shared := range []bool{false, true} {
		p := newPool(t, Config{Size: size, Pin: PinPrefer, Shared: shared})
		want := expectPages(t, size, shared)
		r := p.regions.Load().list[0]
		if got := p.Regions()[0].Pages; got != want {
			t.Errorf("shared=%v: HugeAuto gave %v pages, this machine should give %v", shared, got, want)
		}
		fields, flags := smaps(t, r)
		if want == PageTHP {
			if !flags["hg"] {
				t.Errorf("shared=%v: THP region not advised MADV_HUGEPAGE: %v", shared, flags)
			}
			if addr := fmt.Sprintf("%p", r.m.vm.p); !strings.HasSuffix(addr, "00000") {
				t.Errorf("THP region at %s, not 2 MiB aligned", addr)
			}
		}
		if !flags["dc"] {
			t.Errorf("shared=%v: region not MADV_DONTFORK: %v", shared, flags)
		}
		// Populated up front: every page resident before first use.
		rss := fields["Rss"] << 10
		if want == PageHugeTLB { // hugetlb pages are counted apart
			rss = (fields["Private_Hugetlb"] + fields["Shared_Hugetlb"]) << 10
		}
		if rss != int64(len(r.mem)) {
			t.Errorf("shared=%v: %d of %d bytes resident after New", shared, rss, len(r.mem))
		}
	}
}

func TestHugePagesOff(t *testing.T) {
	p := newPool(t, Config{Size: 2 * hugePageSize(), HugePages: HugeOff, Pin: PinOff})
	r := p.regions.Load().list[0]
	if p.Regions()[0].Pages != PageNormal || vmFlags(t, r)["hg"] {
		t.Errorf("HugeOff gave %v pages, VmFlags %v", p.Regions()[0].Pages, vmFlags(t, r))
	}
}

// TestHugePagesOn: HugeOn gets huge pages of some kind, or fails with
// ErrHugePages when the machine has neither kind for this mapping.
func TestHugePagesOn(t *testing.T) {
	size := hugePageSize()
	for _, shared := range []bool{false, true} {
		want := expectPages(t, size, shared)
		p, err := New(Config{Size: size, HugePages: HugeOn, Pin: PinPrefer, Shared: shared})
		if want == PageNormal {
			if !errors.Is(err, ErrHugePages) || !strings.Contains(err.Error(), thpSysfs(shared)) {
				t.Errorf("shared=%v: HugeOn without huge pages = %v, want ErrHugePages naming %s", shared, err, thpSysfs(shared))
			}
			continue
		}
		if err != nil {
			t.Fatalf("shared=%v: %v", shared, err)
		}
		if got := p.Regions()[0].Pages; got != want {
			t.Errorf("shared=%v: HugeOn gave %v, want %v", shared, got, want)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShared: a shared region is a sealed memfd that maps, in this process
// or another, onto the same bytes the pool's buffers use.
func TestShared(t *testing.T) {
	p := newPool(t, Config{Size: 256 << 10, HugePages: HugeOff, Shared: true, Name: "dmapool-test"})
	info := p.Regions()[0]
	if info.FD < 0 || info.Size != 256<<10 {
		t.Fatalf("RegionInfo %+v", info)
	}
	seals, err := unix.FcntlInt(uintptr(info.FD), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL; seals&want != want {
		t.Errorf("seals %#x, want %#x", seals, want)
	}
	link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", info.FD))
	if !strings.Contains(link, "memfd:dmapool-test") {
		t.Errorf("fd is %q, want the named memfd", link)
	}

	b := mustReserve(t, p, 3000)
	_ = mustReserve(t, p, 100).Release()
	region, off, err := p.Locate(b)
	if err != nil || region != 0 {
		t.Fatal(region, err)
	}
	copy(b.Bytes(), bytes.Repeat([]byte{0xA1}, 3000))

	m, err := MapShared(info.FD, info.Size)
	if err != nil {
		t.Fatal(err)
	}
	view, err := m.Slice(off, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(view, b.Bytes()) {
		t.Fatal("the peer mapping does not show the buffer's bytes")
	}
	view[0] = 0x5A
	if b.Bytes()[0] != 0x5A {
		t.Fatal("a write through the peer mapping is not seen in the buffer")
	}
	view[0] = 0xA1
	if _, err := m.Slice(info.Size-10, 11); !errors.Is(err, ErrSize) {
		t.Errorf("Slice past the end = %v", err)
	}
	if _, err := m.Slice(-1, 1); !errors.Is(err, ErrSize) {
		t.Errorf("Slice at -1 = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Slice(0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Slice after Close = %v", err)
	}
	if _, err := MapShared(info.FD, info.Size+1); !errors.Is(err, ErrSize) {
		t.Errorf("MapShared beyond the memfd = %v", err)
	}

	// Another process, given the fd, sees and writes the same bytes, and
	// cannot shrink the memfd under us.
	f := os.NewFile(uintptr(mustDup(t, info.FD)), "region")
	defer f.Close()
	res := runChild(t, "peer", []string{
		"DMAPOOL_PEER_SIZE=" + strconv.Itoa(info.Size),
		"DMAPOOL_PEER_OFF=" + strconv.Itoa(off),
		"DMAPOOL_PEER_LEN=3000",
	}, f)
	if !res.SawParent {
		t.Error("the peer process did not see the buffer's bytes")
	}
	if !bytes.Equal(b.Bytes(), bytes.Repeat([]byte{0xB2}, 3000)) {
		t.Error("the peer's writes are not in the buffer")
	}
	if res.TruncateErr == "" {
		t.Error("the peer could shrink the sealed memfd")
	}
	mustRelease(t, b)
}

func mustDup(t *testing.T, fd int) int {
	nfd, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return nfd
}
