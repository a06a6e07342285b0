//go:build linux

package aio_test

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/api/file/aio"
	"github.com/zcnet/zcnet/api/file/filetest"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestAio drives the POSIX-AIO façade: write, read back, fsync, a
// lio_listio batch, suspend, cancel, and the reuse of a control block.
func TestAio(t *testing.T) {
	filetest.ForEachEngine(t, file.Config{}, func(t *testing.T, s *api.Stack) {
		ec := evchantest.New(t, 16)
		f := filetest.TempFile(t, "", nil)
		cb := &aio.Aiocb{File: f, Buf: []byte("hello, aio"), EC: ec, Data: "w", Cookie: 1}
		if err := cb.Error(); !errors.Is(err, api.ErrInvalidOp) {
			t.Fatalf("Error before any operation: %v", err)
		}
		if err := aio.Write(s, cb); err != nil {
			t.Fatal(err)
		}
		ev := evchantest.Next(t, ec)
		if ev.Source != evchan.SourceFileOp || api.OpKind(ev.Op) != api.OpWrite || ev.Result != 10 || ev.Data != "w" || ev.Cookie != 1 {
			t.Fatalf("aio_write completion %v", ev)
		}
		if n, err := cb.Return(); n != 10 || err != nil || cb.Error() != nil {
			t.Fatalf("aio_return %d, %v", n, err)
		}
		// The block is free again: read the bytes back through it.
		cb.Buf, cb.Offset, cb.Data = make([]byte, 32), 7, "r"
		if err := aio.Read(s, cb); err != nil {
			t.Fatal(err)
		}
		if ev := evchantest.Next(t, ec); api.OpKind(ev.Op) != api.OpRead || ev.Result != 3 || string(cb.Buf[:3]) != "aio" || ev.Data != "r" {
			t.Fatalf("aio_read completion %v, %q", ev, cb.Buf[:3])
		}
		if err := aio.Fsync(s, cb, true); err != nil {
			t.Fatal(err)
		}
		if ev := evchantest.Next(t, ec); api.OpKind(ev.Op) != api.OpFdatasync || ev.Errno != 0 {
			t.Fatalf("aio_fsync(O_DSYNC) completion %v", ev)
		}

		// lio_listio(LIO_WAIT): two writes, a read of what was there, a NOP.
		w1 := &aio.Aiocb{File: f, Offset: 100, Buf: []byte("one"), EC: ec, LioOpcode: api.OpWrite, Cookie: 11}
		w2 := &aio.Aiocb{File: f, Offset: 200, Buf: []byte("two"), EC: ec, LioOpcode: api.OpWrite, Cookie: 12}
		r1 := &aio.Aiocb{File: f, Offset: 0, Buf: make([]byte, 5), EC: ec, LioOpcode: api.OpRead, Cookie: 13}
		nop := &aio.Aiocb{File: f, EC: ec, Cookie: 14}
		if err := aio.ListIO(evchantest.Context(t), s, true, w1, w2, r1, nop); err != nil {
			t.Fatal(err)
		}
		for _, cb := range []*aio.Aiocb{w1, w2, r1} {
			if n, err := cb.Return(); err != nil || n == 0 {
				t.Fatalf("lio_listio block %d: %d, %v", cb.Cookie, n, err)
			}
		}
		if string(r1.Buf) != "hello" || nop.Error() == nil {
			t.Fatalf("lio_listio: read %q; NOP block status %v", r1.Buf, nop.Error())
		}
		got := map[uint64]evchan.Event{}
		for _, ev := range evchantest.Collect(t, ec, 3) {
			got[ev.Cookie] = ev
		}
		if len(got) != 3 || got[14].Cookie != 0 {
			t.Fatalf("lio_listio events %v", got)
		}
		if err := aio.ListIO(context.Background(), s, false, &aio.Aiocb{File: f, EC: ec, LioOpcode: api.OpFsync}); !errors.Is(err, api.ErrInvalidOp) {
			t.Fatalf("lio_listio with LioOpcode fsync: %v", err)
		}

		// aio_suspend and aio_cancel on a pipe that stays empty.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		pcb := &aio.Aiocb{File: pr, Offset: -1, Buf: make([]byte, 8), EC: ec, Cookie: 20}
		if err := aio.Read(s, pcb); err != nil {
			t.Fatal(err)
		}
		if err := aio.Read(s, pcb); !errors.Is(err, api.ErrInvalidOp) {
			t.Fatalf("second aio_read on a busy block: %v", err)
		}
		if err := aio.Suspend(context.Background(), 10*time.Millisecond, pcb); err == nil {
			t.Fatal("aio_suspend returned without a completion")
		}
		if err := pcb.Error(); !errors.Is(err, api.ErrInProgress) {
			t.Fatalf("aio_error while waiting: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := pcb.Cancel()
			if err == nil {
				break
			}
			if !errors.Is(err, api.ErrNotCancelable) || time.Now().After(deadline) {
				t.Fatalf("aio_cancel: %v", err)
			}
			runtime.Gosched() // a worker is mid-attempt; the read parks at once
		}
		if ev := evchantest.Next(t, ec); ev.Errno != syscall.ECANCELED || !errors.Is(pcb.Error(), context.Canceled) {
			t.Fatalf("cancelled aio_read: %v, %v", ev, pcb.Error())
		}
		// And one that completes: aio_suspend returns for it.
		if err := aio.Read(s, pcb); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if err := aio.Suspend(evchantest.Context(t), 0, pcb); err != nil {
			t.Fatal(err)
		}
		if n, err := pcb.Return(); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("read of a closed pipe: %d, %v", n, err)
		}
		if ev := evchantest.Next(t, ec); ev.Flags&api.FlagEOF == 0 {
			t.Fatalf("EOF completion %v", ev)
		}
	})
}
