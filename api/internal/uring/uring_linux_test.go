package uring

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// newTestRing returns a ring, or skips when the kernel refuses io_uring.
func newTestRing(t *testing.T, entries uint32) *ring {
	t.Helper()
	r, err := newRing(entries)
	if err != nil {
		if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, errURingFeatures) {
			t.Skipf("io_uring unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// waitCQE reaps one completion, waiting in io_uring_enter for it.
func waitCQE(t *testing.T, r *ring) uringCQE {
	t.Helper()
	var c [1]uringCQE
	for r.reap(c[:]) == 0 {
		if _, err := r.enter(0, 1, uringEnterGetEvents); err != nil && !errors.Is(err, syscall.EINTR) {
			t.Fatal(err)
		}
	}
	return c[0]
}

func TestRingSetup(t *testing.T) {
	r := newTestRing(t, 5)
	if r.entries != 8 || r.cqSize != 16 {
		t.Fatalf("entries %d/%d, want 8/16 (rounded up, CQ twice the SQ)", r.entries, r.cqSize)
	}
	if r.sqFree() != 8 || r.cqReady() != 0 {
		t.Fatalf("fresh ring: %d free, %d ready", r.sqFree(), r.cqReady())
	}
	if err := r.smokeTest(); err != nil {
		t.Fatal(err)
	}
}

// TestRingReadWrite runs WRITE, READV and FSYNC entries on a file, more of
// them than the ring has entries, and checks results, user data and order
// of the reaped completions.
func TestRingReadWrite(t *testing.T) {
	r := newTestRing(t, 4)
	f, err := os.CreateTemp(t.TempDir(), "ring")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := fileFD(f)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("0123456789abcdef")
	for round := 0; round < 3; round++ {
		for i := 0; i < 4; i++ {
			if r.sqFree() == 0 {
				t.Fatal("no free entry")
			}
			e := r.next()
			e.opcode = uringOpWrite
			e.fd = int32(fd)
			e.off = uint64(i * 4)
			e.addr = bytesAddr(data[i*4 : i*4+4])
			e.len = 4
			e.userData = uint64(round*10 + i)
		}
		if r.sqFree() != 0 {
			t.Fatalf("4 filled of 4: %d free", r.sqFree())
		}
		if err := r.submit(); err != nil {
			t.Fatal(err)
		}
		if r.sqFree() != 4 {
			t.Fatalf("after submit: %d free", r.sqFree())
		}
		seen := map[uint64]int32{}
		for len(seen) < 4 {
			c := waitCQE(t, r)
			seen[c.userData] = c.res
		}
		for i := 0; i < 4; i++ {
			if res, ok := seen[uint64(round*10+i)]; !ok || res != 4 {
				t.Fatalf("round %d write %d: %v %d", round, i, ok, res)
			}
		}
	}
	// READV of 24 bytes from a 16-byte file, then FSYNC with DATASYNC.
	got := [][]byte{make([]byte, 5), make([]byte, 11), make([]byte, 8)}
	iov := []unix.Iovec{iovecOf(got[0]), iovecOf(got[1]), iovecOf(got[2])}
	e := r.next()
	e.opcode = uringOpReadv
	e.fd = int32(fd)
	e.addr = iovecAddr(iov)
	e.len = uint32(len(iov))
	e.userData = 100
	e = r.next()
	e.opcode = uringOpFsync
	e.fd = int32(fd)
	e.opFlags = uringFsyncDatasync
	e.userData = 101
	if err := r.submit(); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 2; n++ {
		c := waitCQE(t, r)
		switch {
		case c.userData == 100 && c.res == 16:
			if !bytes.Equal(bytes.Join(got, nil)[:16], data) {
				t.Fatalf("readv got %q", got)
			}
		case c.userData == 101 && c.res == 0:
		default:
			t.Fatalf("completion %+v", c)
		}
	}
	runtime.KeepAlive(got)
}

// TestRingBadEntry checks that a refused entry completes with its errno and
// does not stop the entries after it.
func TestRingBadEntry(t *testing.T) {
	r := newTestRing(t, 4)
	e := r.next()
	e.opcode = uringOpRead
	e.fd = 1<<20 + 3
	e.userData = 1
	e = r.next()
	e.opcode = uringOpNop
	e.userData = 2
	if err := r.submit(); err != nil {
		t.Fatal(err)
	}
	res := map[uint64]int32{}
	for len(res) < 2 {
		c := waitCQE(t, r)
		res[c.userData] = c.res
	}
	if res[1] != -int32(syscall.EBADF) || res[2] != 0 {
		t.Fatalf("results %v, want EBADF then 0", res)
	}
}
