package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// patternFill returns a Fill that writes byte (base+offset) at each offset
// of the stream it sends, so a receiver can check every byte.
func patternFill(base byte) func(p []byte) int {
	off := 0
	return func(p []byte) int {
		for i := range p {
			p[i] = base + byte(off+i)
		}
		off += len(p)
		return len(p)
	}
}

// recvPattern receives n bytes on sock and checks them against
// patternFill(base).
func recvPattern(ctx context.Context, sock *api.Socket, n int, base byte) error {
	off := 0
	for off < n {
		b, err := sock.Recv(ctx)
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", off, n, err)
		}
		for i, c := range b.Bytes() {
			if c != base+byte(off+i) {
				b.Release()
				return fmt.Errorf("byte %d is %d, want %d", off+i, c, base+byte(off+i))
			}
		}
		off += b.Len()
		b.Release()
	}
	if off != n {
		return fmt.Errorf("received %d bytes, want %d", off, n)
	}
	return nil
}

// smallBufPair is two API stacks whose TCP buffers are 256 KiB, so a
// receiver that does not read closes its window after a few hundred KiB.
func smallBufPair(t *testing.T) (a, b *api.Stack) {
	t.Helper()
	small := stack.BufferSizes{Min: 4 << 10, Default: 256 << 10, Max: 256 << 10}
	p := stacktest.NewPair(t, stacktest.Config{Stack: stack.Options{TCPSendBuffer: small, TCPReceiveBuffer: small, DisableReceiveAutoTuning: true}})
	mk := func(st *stack.Stack) *api.Stack {
		pool, err := dmapool.New(dmapool.Config{Size: 16 << 20, Pin: dmapool.PinOff})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := pool.Close(); err != nil {
				t.Errorf("pool not empty at the end: %v", err)
			}
		})
		s, err := api.New(st, api.Options{Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return mk(p.A), mk(p.B)
}

// dialPair connects a to b's port and returns both ends.
func dialPair(t *testing.T, a, b *api.Stack, port uint16) (client, server *api.Socket) {
	t.Helper()
	ctx := evchantest.Context(t)
	addr := netip.AddrPortFrom(stacktest.AddrB, port)
	ln, err := b.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if client, err = a.DialTCP(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestSendFuncOpSlowPeer is one event loop sending to two peers with
// OpSendFunc: the slow one never reads, so its window closes with most of
// its send still unwritten. Submit returns at once all the same, and every
// send to the fast peer completes, while the slow send waits; once the slow
// peer reads, its send completes too. Every byte is written in place.
func TestSendFuncOpSlowPeer(t *testing.T) {
	a, b := smallBufPair(t)
	ctx := evchantest.Context(t)
	slowC, slowS := dialPair(t, a, b, 6001)
	fastC, fastS := dialPair(t, a, b, 6002)
	ec := evchantest.New(t, 64)

	// Far more than the slow connection's buffers (256 KiB each side)
	// hold: the op cannot finish while the peer does not read.
	const slowLen, fastLen, fastOps = 8 << 20, 1 << 20, 8
	slow := &api.Op{Kind: api.OpSendFunc, Sock: slowC, EC: ec, Len: slowLen, Fill: patternFill(1), Cookie: 100}
	start := time.Now()
	if err := a.Submit(ctx, false, slow); err != nil {
		t.Fatal(err)
	}
	if err := slow.Err(); !errors.Is(err, api.ErrInProgress) {
		t.Fatalf("slow send after Submit: %v, want in progress", err)
	}
	fastRecv := make(chan error, 1)
	go func() { fastRecv <- recvPattern(ctx, fastS, fastLen*fastOps, 2) }()
	fill := patternFill(2) // one stream across the fast ops, in order
	for i := 0; i < fastOps; i++ {
		op := &api.Op{Kind: api.OpSendFunc, Sock: fastC, EC: ec, Len: fastLen, Fill: fill, Cookie: uint64(i)}
		if err := a.Submit(ctx, false, op); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("submitted 1 slow and %d fast sends in %v", fastOps, time.Since(start))

	// The loop: every fast send completes; the slow one does not.
	evs := make([]evchan.Event, 16)
	for done := 0; done < fastOps; {
		n, err := ec.Next(ctx, evs)
		if err != nil {
			t.Fatalf("after %d fast completions: %v (slow send: %v)", done, err, slow.Err())
		}
		for _, ev := range evs[:n] {
			if ev.Cookie == 100 {
				t.Fatalf("the slow send completed (%+v) though its peer reads nothing", ev)
			}
			if ev.Op != uint16(api.OpSendFunc) || ev.Errno != 0 || ev.Result != fastLen || ev.Cookie != uint64(done) {
				t.Fatalf("fast completion %+v, want op %d: %d bytes", ev, done, fastLen)
			}
			done++
		}
	}
	if err := <-fastRecv; err != nil {
		t.Fatalf("fast peer: %v", err)
	}
	if err := slow.Err(); !errors.Is(err, api.ErrInProgress) {
		t.Fatalf("slow send after the fast ones: %v, want still in progress", err)
	}

	// The slow peer reads: its send finishes.
	slowRecv := make(chan error, 1)
	go func() { slowRecv <- recvPattern(ctx, slowS, slowLen, 1) }()
	ev := evchantest.Next(t, ec)
	if ev.Cookie != 100 || ev.Errno != 0 || ev.Result != slowLen {
		t.Fatalf("slow completion %+v, want %d bytes", ev, slowLen)
	}
	if n, err := slow.Result(); err != nil || n != slowLen {
		t.Fatalf("slow Result %d, %v", n, err)
	}
	if err := <-slowRecv; err != nil {
		t.Fatalf("slow peer: %v", err)
	}
	c := a.Counters()
	if c.TxInPlace != slowLen+fastLen*fastOps || c.TxCopied != 0 {
		t.Errorf("sent in place %d, by copy %d; want %d and 0", c.TxInPlace, c.TxCopied, slowLen+fastLen*fastOps)
	}
}

// TestSendFuncOpAck: with acknowledgement completions, an OpSendFunc
// completes when the stack has its bytes (FlagMore), then again with
// FlagAcked when the peer has acknowledged them.
func TestSendFuncOpAck(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	const n = 200 << 10
	op := &api.Op{Kind: api.OpSendFunc, Sock: p.conn, EC: p.ec, Len: n, Fill: patternFill(3), Ack: true, Cookie: 9}
	if err := p.A.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	recv := make(chan error, 1)
	go func() { recv <- recvPattern(ctx, p.peer, n, 3) }()
	first := evchantest.Next(t, p.ec)
	if first.Cookie != 9 || first.Errno != 0 || first.Result != n || first.Flags&evchan.FlagMore == 0 || first.Flags&api.FlagAcked != 0 {
		t.Fatalf("first completion %+v (%v), want %d bytes with FlagMore", first, first.Flags, n)
	}
	second := evchantest.Next(t, p.ec)
	if second.Cookie != 9 || second.Errno != 0 || second.Result != n || second.Flags&api.FlagAcked == 0 || second.Flags&evchan.FlagMore != 0 {
		t.Fatalf("second completion %+v (%v), want FlagAcked", second, second.Flags)
	}
	if err := <-recv; err != nil {
		t.Fatal(err)
	}
	if err := op.Err(); err != nil {
		t.Fatalf("Err after both completions: %v", err)
	}
}

// TestSendFuncOpUDPAndErrors: an OpSendFunc on UDP is one datagram; bad
// ops are refused at Submit; a stalled one can be cancelled.
func TestSendFuncOpUDPAndErrors(t *testing.T) {
	a, b := smallBufPair(t)
	ctx := evchantest.Context(t)
	ec := evchantest.New(t, 16)

	rx, err := b.ListenUDP(netip.AddrPortFrom(stacktest.AddrB, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := a.DialUDP(netip.AddrPortFrom(stacktest.AddrB, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	op := &api.Op{Kind: api.OpSendFunc, Sock: tx, EC: ec, Len: 1000, Fill: patternFill(4)}
	if err := a.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	if ev := evchantest.Next(t, ec); ev.Errno != 0 || ev.Result != 1000 {
		t.Fatalf("UDP completion %+v", ev)
	}
	if err := recvPattern(ctx, rx, 1000, 4); err != nil {
		t.Fatal(err)
	}

	for name, bad := range map[string]*api.Op{
		"no Len":   {Kind: api.OpSendFunc, Sock: tx, EC: ec, Fill: patternFill(0)},
		"no Fill":  {Kind: api.OpSendFunc, Sock: tx, EC: ec, Len: 10},
		"UDP Ack":  {Kind: api.OpSendFunc, Sock: tx, EC: ec, Len: 10, Fill: patternFill(0), Ack: true},
		"with Buf": {Kind: api.OpSendFunc, Sock: tx, EC: ec, Len: 10, Fill: patternFill(0), Buf: reserve(t, a, 10)},
	} {
		if err := a.Submit(ctx, false, bad); !errors.Is(err, api.ErrInvalidOp) {
			t.Errorf("%s: Submit %v, want ErrInvalidOp", name, err)
		}
		if bad.Buf.Valid() == nil {
			bad.Buf.Release()
		}
	}

	// A TCP send to a peer that does not read stalls; Cancel ends it.
	c, _ := dialPair(t, a, b, 6003)
	stalled := &api.Op{Kind: api.OpSendFunc, Sock: c, EC: ec, Len: 8 << 20, Fill: patternFill(5)}
	if err := a.Submit(ctx, false, stalled); err != nil {
		t.Fatal(err)
	}
	// Cancel is refused only if the op completed, which it cannot.
	if err := stalled.Cancel(); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	ev := evchantest.Next(t, ec)
	if ev.Errno != unix.ECANCELED || !errors.Is(stalled.Err(), unix.ECANCELED) {
		t.Fatalf("cancelled send: %+v, Err %v; want ECANCELED", ev, stalled.Err())
	}
	if ev.Result >= 8<<20 {
		t.Fatalf("cancelled send reports all %d bytes sent", ev.Result)
	}
}

func reserve(t *testing.T, s *api.Stack, n int) api.Buf {
	t.Helper()
	b, err := s.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSendFuncOpThenClose: an OpClose submitted behind an OpSendFunc
// waits for it, so the peer gets every byte, then the end of the stream.
func TestSendFuncOpThenClose(t *testing.T) {
	a, b := smallBufPair(t)
	ctx := evchantest.Context(t)
	c, s := dialPair(t, a, b, 6004)
	ec := evchantest.New(t, 8)
	const n = 2 << 20 // several times the send buffer: the op waits for room
	send := &api.Op{Kind: api.OpSendFunc, Sock: c, EC: ec, Len: n, Fill: patternFill(6), Cookie: 1}
	closeOp := &api.Op{Kind: api.OpClose, Sock: c, EC: ec, Cookie: 2}
	if err := a.Submit(ctx, false, send, closeOp); err != nil {
		t.Fatal(err)
	}
	if err := recvPattern(ctx, s, n, 6); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the data: %v, want io.EOF", err)
	}
	for _, want := range []uint64{1, 2} {
		ev := evchantest.Next(t, ec)
		if ev.Cookie != want || ev.Errno != 0 {
			t.Fatalf("completion %+v, want cookie %d without error", ev, want)
		}
		if want == 1 && ev.Result != n {
			t.Fatalf("send completed with %d bytes, want %d", ev.Result, n)
		}
	}
}
