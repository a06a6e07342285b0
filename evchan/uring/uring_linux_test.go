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
func newTestRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries)
	if err != nil {
		if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, ErrFeatures) {
			t.Skipf("io_uring unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// waitCQE reaps one completion, waiting in io_uring_enter for it.
func waitCQE(t *testing.T, r *Ring) CQE {
	t.Helper()
	var c [1]CQE
	for r.Reap(c[:]) == 0 {
		if _, err := r.enter(0, 1, uringEnterGetEvents); err != nil && !errors.Is(err, syscall.EINTR) {
			t.Fatal(err)
		}
	}
	return c[0]
}

func TestRingSetup(t *testing.T) {
	r := newTestRing(t, 5)
	if r.Entries() != 8 || r.CQSize() != 16 {
		t.Fatalf("entries %d/%d, want 8/16 (rounded up, CQ twice the SQ)", r.entries, r.cqSize)
	}
	if r.SQFree() != 8 || r.CQReady() != 0 {
		t.Fatalf("fresh ring: %d free, %d ready", r.SQFree(), r.CQReady())
	}
	if err := r.RunNop(^uint64(0)); err != nil {
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
	fd := int(f.Fd())
	data := []byte("0123456789abcdef")
	for round := 0; round < 3; round++ {
		for i := 0; i < 4; i++ {
			if r.SQFree() == 0 {
				t.Fatal("no free entry")
			}
			e := r.Next()
			e.PrepWrite(fd, data[i*4:i*4+4], int64(i*4))
			e.SetUserData(uint64(round*10 + i))
		}
		if r.SQFree() != 0 {
			t.Fatalf("4 filled of 4: %d free", r.SQFree())
		}
		if err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		if r.SQFree() != 4 {
			t.Fatalf("after submit: %d free", r.SQFree())
		}
		seen := map[uint64]int32{}
		for len(seen) < 4 {
			c := waitCQE(t, r)
			seen[c.UserData] = c.Res
		}
		for i := 0; i < 4; i++ {
			if res, ok := seen[uint64(round*10+i)]; !ok || res != 4 {
				t.Fatalf("round %d write %d: %v %d", round, i, ok, res)
			}
		}
	}
	// READV of 24 bytes from a 16-byte file, then FSYNC with DATASYNC.
	got := [][]byte{make([]byte, 5), make([]byte, 11), make([]byte, 8)}
	iov := []unix.Iovec{IovecOf(got[0]), IovecOf(got[1]), IovecOf(got[2])}
	e := r.Next()
	e.PrepReadv(fd, iov, 0)
	e.SetUserData(100)
	e = r.Next()
	e.PrepFsync(fd, true)
	e.SetUserData(101)
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 2; n++ {
		c := waitCQE(t, r)
		switch {
		case c.UserData == 100 && c.Res == 16:
			if !bytes.Equal(bytes.Join(got, nil)[:16], data) {
				t.Fatalf("readv got %q", got)
			}
		case c.UserData == 101 && c.Res == 0:
		default:
			t.Fatalf("completion %+v", c)
		}
	}
	runtime.KeepAlive(got)
	runtime.KeepAlive(f)
}

// TestRingBadEntry checks that a refused entry completes with its errno and
// does not stop the entries after it.
func TestRingBadEntry(t *testing.T) {
	r := newTestRing(t, 4)
	e := r.Next()
	e.PrepRead(1<<20+3, make([]byte, 8), 0)
	e.SetUserData(1)
	e = r.Next()
	e.PrepNop()
	e.SetUserData(2)
	if err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	res := map[uint64]int32{}
	for len(res) < 2 {
		c := waitCQE(t, r)
		res[c.UserData] = c.Res
	}
	if res[1] != -int32(syscall.EBADF) || res[2] != 0 {
		t.Fatalf("results %v, want EBADF then 0", res)
	}
}

// TestPrepFixed checks what the Prep helpers put into an entry for
// registered buffers and cancellation, and FixedBuf.Holds.
func TestPrepFixed(t *testing.T) {
	mem := make([]byte, 64)
	fb := FixedBuf{Addr: uintptr(bytesAddr(mem)), Len: 64}
	if !fb.Holds(mem[8:16]) || !fb.Holds(mem) || fb.Holds(nil) || fb.Holds(make([]byte, 8)) {
		t.Fatal("Holds misjudges memory inside and outside the buffer")
	}
	var e SQE
	e.PrepReadFixed(7, mem[8:16], 4096, 3)
	if e.opcode != uringOpReadFixed || e.fd != 7 || e.addr != bytesAddr(mem[8:]) || e.len != 8 || e.off != 4096 || e.bufIndex != 3 {
		t.Fatalf("read fixed: %+v", e)
	}
	e = SQE{}
	e.PrepWriteFixed(7, mem[:4], -1, 1)
	if e.opcode != uringOpWriteFixed || e.off != ^uint64(0) || e.bufIndex != 1 || e.len != 4 {
		t.Fatalf("write fixed: %+v", e)
	}
	e = SQE{}
	e.PrepCancel(42)
	if e.opcode != uringOpAsyncCancel || e.fd != -1 || e.addr != 42 {
		t.Fatalf("cancel: %+v", e)
	}
	runtime.KeepAlive(mem)
}

// TestRingNowait checks SetRWFlags, SubmitOnly and Wait on a pipe: a read
// with RWF_NOWAIT of an empty pipe completes during the enter with EAGAIN;
// one without it stays outstanding until data comes, and Wait returns when
// it completes.
func TestRingNowait(t *testing.T) {
	r := newTestRing(t, 4)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := make([]byte, 8)
	e := r.Next()
	e.PrepRead(p[0], buf, -1)
	e.SetRWFlags(unix.RWF_NOWAIT)
	e.SetUserData(1)
	if n, err := r.SubmitOnly(); n != 1 || err != nil {
		t.Fatalf("SubmitOnly: %d, %v", n, err)
	}
	var c [2]CQE
	if got := r.Reap(c[:]); got != 1 || c[0].UserData != 1 || c[0].Res != -int32(syscall.EAGAIN) {
		t.Fatalf("RWF_NOWAIT read of an empty pipe: %d completions, %+v", got, c[0])
	}
	e = r.Next()
	e.PrepRead(p[0], buf, -1)
	e.SetUserData(2)
	if n, err := r.SubmitOnly(); n != 1 || err != nil {
		t.Fatalf("SubmitOnly: %d, %v", n, err)
	}
	if r.CQReady() != 0 {
		t.Fatal("a blocking read of an empty pipe completed")
	}
	if _, err := unix.Write(p[1], []byte("wake")); err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(1); err != nil {
		t.Fatal(err)
	}
	if got := r.Reap(c[:]); got != 1 || c[0].UserData != 2 || c[0].Res != 4 || string(buf[:4]) != "wake" {
		t.Fatalf("read after the write: %d completions, %+v, %q", got, c[0], buf[:4])
	}
	if n, err := r.SubmitOnly(); n != 0 || err != nil {
		t.Fatalf("SubmitOnly with nothing queued: %d, %v", n, err)
	}
	runtime.KeepAlive(buf)
}
