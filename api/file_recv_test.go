//go:build linux

package api_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/api/file/filetest"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestFileReceiveToFile streams 64 MiB (16 MiB under -race) over TCP into
// a socket that receives with Recv and hands every Buf to an OpWrite at
// the next offset of a file: the stack's receive memory goes to the
// kernel's write without a copy in user space, and the write releases it.
// The file must hash like the data, and the books must show no copy: none
// on receive (the socket's RxCopied) and none in the file engine (every
// byte written from a received Buf that was handed over, not copied).
func TestFileReceiveToFile(t *testing.T) {
	size := 64 << 20
	if raceEnabled {
		size = 16 << 20
	}
	for _, k := range filetest.Engines {
		t.Run(k.String(), func(t *testing.T) {
			p := apitest.NewPair(t, apitest.PairConfig{})
			t.Cleanup(func() { p.A.Close(); p.B.Close() })
			if err := p.B.ConfigureFiles(file.Config{Engine: k}); err != nil {
				if k == file.EngineURing && errors.Is(err, file.ErrEngine) {
					t.Skipf("io_uring engine unavailable here: %v", err)
				}
				t.Fatal(err)
			}
			accepted := accept(t, p.B, "192.0.2.2:5010")
			data := make([]byte, size)
			rand.Read(data)
			ctx := evchantest.Context(t)
			conn, err := p.A.Net().DialContext(ctx, "tcp", "192.0.2.2:5010")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			werr := make(chan error, 1)
			go func() {
				_, err := conn.Write(data)
				if err == nil {
					err = conn.(*api.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			sock := <-accepted
			if sock == nil {
				t.FailNow()
			}
			defer sock.Close()
			f := filetest.TempFile(t, "", nil)
			ec := evchantest.New(t, 256)

			// One loop: receive, submit the write, take completions when
			// the channel has no room (and as they come).
			evs := make([]evchan.Event, 64)
			inflight, written := 0, int64(0)
			take := func(n int) {
				for _, ev := range evs[:n] {
					if ev.Errno != 0 || ev.Result != int64(ev.Cookie) {
						t.Fatalf("write of %d bytes: %v", ev.Cookie, ev)
					}
					written += ev.Result
					inflight--
				}
			}
			off := int64(0)
			for {
				b, err := sock.Recv(ctx)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if off == 0 {
					// A received Buf is read-only: no read into it.
					bad := &api.Op{Kind: api.OpRead, File: file.Request{File: f}, Buf: b, EC: ec}
					if err := p.B.Submit(ctx, false, bad); !errors.Is(err, api.ErrInvalidOp) || b.Valid() != nil {
						t.Fatalf("read into a received Buf: %v (Buf %v)", err, b.Valid())
					}
				}
				op := &api.Op{Kind: api.OpWrite, File: file.Request{File: f, Offset: off}, Buf: b, EC: ec, Cookie: uint64(b.Len())}
				off += int64(b.Len())
				for {
					err := p.B.Submit(ctx, false, op)
					if !errors.Is(err, evchan.ErrFull) {
						if err != nil {
							t.Fatal(err)
						}
						break
					}
					n, err := ec.Next(ctx, evs)
					if err != nil {
						t.Fatal(err)
					}
					take(n)
				}
				inflight++
				take(ec.TryNext(evs))
			}
			for inflight > 0 {
				n, err := ec.Next(ctx, evs)
				if err != nil {
					t.Fatal(err)
				}
				take(n)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if written != int64(size) || off != int64(size) {
				t.Fatalf("wrote %d bytes of %d received, %d sent", written, off, size)
			}
			h := sha256.New()
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, int64(size)+1)); err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("the file's SHA-256 differs from the data's")
			}
			if fi, err := f.Stat(); err != nil || fi.Size() != int64(size) {
				t.Fatalf("file size %v, %v", fi.Size(), err)
			}
			st := sock.Stats()
			fc := p.B.FileCounters()
			t.Logf("engine %s: %d writes; socket handed over %d, copied %d; file counters %+v",
				p.B.FileEngine(), fc.Ops, st.RxHandedOver, st.RxCopied, fc)
			if st.RxCopied != 0 || st.RxHandedOver != uint64(size) {
				t.Fatalf("receive copied %d bytes (handed over %d of %d)", st.RxCopied, st.RxHandedOver, size)
			}
			if fc.WrittenFromRecv != uint64(size) || fc.WrittenFromRecvCopied != 0 || fc.WrittenFromBufs != uint64(size) || fc.Errors != 0 {
				t.Fatalf("file counters %+v: want %d bytes written from handed-over Bufs, none copied", fc, size)
			}
			if st.HeldBytes != 0 {
				t.Fatalf("socket still charges %d bytes: the writes did not release every Buf", st.HeldBytes)
			}
		})
	}
}
