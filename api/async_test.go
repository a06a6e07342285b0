package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// echoServer runs an event-style echo server on s until ctx ends: one
// channel, accept ops, a multishot receive per connection, and each received
// Buf sent back as it is (no copy in user space; one into the stack). When
// the channel has no room for a new op's completion, the op waits in a local
// list and is submitted again after the next batch of events frees room.
func echoServer(ctx context.Context, s *api.Stack, ln *api.Socket, ec *evchan.Channel) error {
	var later []*api.Op
	submit := func(op *api.Op) error {
		if len(later) == 0 {
			err := s.Submit(ctx, false, op)
			if !errors.Is(err, evchan.ErrFull) {
				return err
			}
		}
		later = append(later, op)
		return nil
	}
	if err := submit(&api.Op{Kind: api.OpAccept, Sock: ln, EC: ec}); err != nil {
		return err
	}
	evs := make([]evchan.Event, 64)
	for {
		n, err := ec.Next(ctx, evs)
		if err != nil {
			return err
		}
		for _, ev := range evs[:n] {
			switch api.OpKind(ev.Op) {
			case api.OpAccept:
				c, ok := api.SocketOf(ev)
				if !ok {
					return fmt.Errorf("accept failed: %v", ev.Errno)
				}
				if err := submit(&api.Op{Kind: api.OpRecvMulti, Sock: c, EC: ec, Data: c}); err != nil {
					return err
				}
				if err := submit(&api.Op{Kind: api.OpAccept, Sock: ln, EC: ec}); err != nil {
					return err
				}
			case api.OpRecvMulti:
				c := ev.Data.(*api.Socket)
				if b, ok := api.BufOf(ev); ok {
					if err := submit(&api.Op{Kind: api.OpSend, Sock: c, EC: ec, Buf: b}); err != nil {
						return err
					}
				}
				if ev.Flags&api.FlagEOF != 0 {
					// Close once the sends queued before the EOF are done.
					if err := submit(&api.Op{Kind: api.OpClose, Sock: c, EC: ec}); err != nil {
						return err
					}
				}
			case api.OpSend:
				if ev.Errno != 0 {
					return fmt.Errorf("send: %w", ev.Errno)
				}
			}
		}
		for len(later) > 0 {
			err := s.Submit(ctx, false, later[0])
			if errors.Is(err, evchan.ErrFull) {
				break
			}
			if err != nil {
				return err
			}
			later = later[1:]
		}
	}
}

func TestEventEchoServer(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	ln, err := p.B.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7"))
	if err != nil {
		t.Fatal(err)
	}
	ec := evchantest.New(t, 256)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- echoServer(ctx, p.B, ln, ec) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("server: %v", err)
			}
		default:
			// The server already failed; the test has reported it.
		}
	}()
	for i := 0; i < 3; i++ { // several connections, one after another and together
		conn, err := p.A.Net().DialContext(evchantest.Context(t), "tcp", "192.0.2.2:7")
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 2<<20)
		rand.Read(data)
		go func() {
			conn.Write(data)
			conn.(*api.TCPConn).CloseWrite()
		}()
		type result struct {
			b   []byte
			err error
		}
		rc := make(chan result, 1)
		go func() {
			b, err := io.ReadAll(conn)
			rc <- result{b, err}
		}()
		var got []byte
		select {
		case r := <-rc:
			got, err = r.b, r.err
		case err := <-done:
			t.Fatalf("echo server stopped: %v", err)
		}
		conn.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("conn %d: echoed %d bytes (want %d), err %v", i, len(got), len(data), err)
		}
	}
	if c := p.B.Counters(); c.RxHandedOver == 0 || c.TxCopied != c.RxHandedOver+c.RxCopied {
		t.Fatalf("echo copy budget: %+v", c)
	}
}

func TestInlineCompletionCancelAndErrors(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5005"))
	if err != nil {
		t.Fatal(err)
	}
	ec := evchantest.New(t, 8)
	ctx := evchantest.Context(t)

	// A receive with nothing queued waits; Cancel completes it with
	// ECANCELED; a second Cancel is refused.
	op := &api.Op{Kind: api.OpRecv, Sock: srv, EC: ec, Cookie: 42}
	if err := p.B.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	if err := op.Err(); !errors.Is(err, api.ErrInProgress) {
		t.Fatalf("Err before completion: %v", err)
	}
	if err := op.Cancel(); err != nil {
		t.Fatal(err)
	}
	if err := op.Cancel(); !errors.Is(err, api.ErrNotCancelable) {
		t.Fatalf("second Cancel: %v", err)
	}
	evs := make([]evchan.Event, 8)
	n, err := ec.Next(ctx, evs)
	if err != nil || n != 1 || evs[0].Errno != syscall.ECANCELED || evs[0].Cookie != 42 {
		t.Fatalf("cancel completion: %d %v %+v", n, err, evs[0])
	}
	if err := p.B.Submit(ctx, false, op); !errors.Is(err, api.ErrInvalidOp) {
		t.Fatalf("resubmitting a used Op: %v", err)
	}

	// Data already queued: the receive completes inline, at Submit.
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5005"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	primeUDP(t, ctx, p, cl, srv)
	b, _ := p.A.Reserve(5)
	copy(b.Bytes(), "hello")
	if _, err := cl.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitReadable(ctx); err != nil {
		t.Fatal(err)
	}
	op = &api.Op{Kind: api.OpRecv, Sock: srv, EC: ec}
	if err := p.B.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	if res, err := op.Result(); err != nil || res != 5 {
		t.Fatalf("inline receive: %d, %v (should be complete at Submit)", res, err)
	}
	n, _ = ec.Next(ctx, evs)
	got, ok := api.BufOf(evs[0])
	if n != 1 || !ok || evs[0].Flags&evchan.FlagInline == 0 || string(got.Bytes()) != "hello" || got.From().Port() != cl.LocalAddr().Port() {
		t.Fatalf("inline completion: %+v", evs[0])
	}
	got.Release()

	// Invalid batches queue nothing.
	closedEC := evchantest.New(t, 4)
	closedEC.Close()
	for _, bad := range []*api.Op{
		{Kind: api.OpRecv, EC: ec},
		{Kind: api.OpRecv, Sock: srv},
		{Kind: api.OpRecv, Sock: srv, EC: closedEC},
		{Kind: api.OpSend, Sock: srv, EC: ec},
		{Kind: api.OpAccept, Sock: srv, EC: ec},
		{Kind: 99, Sock: srv, EC: ec},
	} {
		if err := p.B.Submit(ctx, false, bad); !errors.Is(err, api.ErrInvalidOp) {
			t.Errorf("Submit(%+v) = %v, want ErrInvalidOp", bad, err)
		}
	}
	// A full channel refuses a batch with ErrFull, queuing nothing.
	full := evchantest.New(t, 2)
	ops := []*api.Op{{Kind: api.OpRecv, Sock: srv, EC: full}, {Kind: api.OpRecv, Sock: srv, EC: full}, {Kind: api.OpRecv, Sock: srv, EC: full}}
	if err := p.B.Submit(ctx, false, ops...); !errors.Is(err, evchan.ErrFull) {
		t.Fatalf("Submit beyond channel capacity: %v", err)
	}
	for _, o := range ops {
		if err := o.Err(); errors.Is(err, api.ErrInProgress) {
			t.Fatal("an op of a refused batch was queued")
		}
	}
	// Closing the socket completes queued ops with EBADF.
	op = &api.Op{Kind: api.OpRecv, Sock: srv, EC: ec}
	if err := p.B.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := api.Suspend(ctx, 5*time.Second, op); err != nil {
		t.Fatal(err)
	}
	n, _ = ec.Next(ctx, evs)
	if n != 1 || evs[0].Errno != syscall.EBADF {
		t.Fatalf("completion after Close: %+v", evs[0])
	}
}

// sendNumbered sends n datagrams of size bytes from cl, the first byte of
// each its index (mod 256), so a receiver can check their order.
func sendNumbered(t testing.TB, ctx context.Context, p *apitest.Pair, cl *api.Socket, n, size int) {
	t.Helper()
	for i := range n {
		b, err := p.A.Reserve(size)
		if err != nil {
			t.Fatal(err)
		}
		b.Bytes()[0] = byte(i)
		if _, err := cl.Send(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// primeUDP resends a datagram from cl until srv receives one (the first may
// wait on neighbour resolution), a bounded number of times.
func primeUDP(t testing.TB, ctx context.Context, p *apitest.Pair, cl, srv *api.Socket) {
	t.Helper()
	for i := 0; ; i++ {
		b, _ := p.A.Reserve(1)
		if _, err := cl.Send(ctx, b); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		got, err := srv.Recv(rctx)
		cancel()
		if err == nil {
			got.Release()
			return
		}
		if i == 20 {
			t.Fatalf("no datagram through after 20 tries: %v", err)
		}
	}
}

// TestMultishotBackpressure: a multishot receive on a small channel pauses
// when the channel is full and resumes as the consumer drains it; every
// datagram arrives, none is lost, and the channel never overflows.
func TestMultishotBackpressure(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5006"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5006"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := evchantest.Context(t)
	primeUDP(t, ctx, p, cl, srv)
	ec := evchantest.New(t, 4)
	op := &api.Op{Kind: api.OpRecvMulti, Sock: srv, EC: ec}
	if err := p.B.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	const total = 100
	sendNumbered(t, ctx, p, cl, total, 8)
	evs := make([]evchan.Event, 2) // a slow consumer: small batches
	seen := 0
	for seen < total {
		n, err := ec.Next(ctx, evs)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", seen, err)
		}
		for _, ev := range evs[:n] {
			if ev.Source == evchan.SourceOverflow {
				t.Fatal("completion channel overflowed")
			}
			b, ok := api.BufOf(ev)
			if !ok || ev.Flags&evchan.FlagMore == 0 {
				t.Fatalf("multishot completion %+v", ev)
			}
			if int(b.Bytes()[0]) != seen {
				t.Fatalf("datagram %d arrived as #%d", b.Bytes()[0], seen)
			}
			seen++
			b.Release()
		}
	}
	if err := op.Cancel(); err != nil {
		t.Fatal(err)
	}
	n, _ := ec.Next(ctx, evs)
	if n != 1 || evs[0].Errno != syscall.ECANCELED || evs[0].Flags&evchan.FlagMore != 0 {
		t.Fatalf("final multishot completion: %+v", evs[0])
	}
	if st := srv.Stats(); st.DropsNoRoom != 0 {
		t.Fatalf("drops: %+v", st)
	}
}

// TestIdleConnectionsNoGoroutines: sockets with a pending receive each cost
// no goroutine; the stack's workers are fixed.
func TestIdleConnectionsNoGoroutines(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{AssocA: 64 << 10, AssocB: 64 << 10})
	defer p.B.Close()
	defer p.A.Close()
	ln, err := p.B.ListenTCP(netip.MustParseAddrPort("192.0.2.2:5007"))
	if err != nil {
		t.Fatal(err)
	}
	ec := evchantest.New(t, 4096)
	ctx := evchantest.Context(t)
	n := 1000
	if raceEnabled {
		n = 300
	}
	// Warm up: the first Submit starts the workers.
	warm := &api.Op{Kind: api.OpAccept, Sock: ln, EC: ec}
	if err := p.B.Submit(ctx, false, warm); err != nil {
		t.Fatal(err)
	}
	warm.Cancel()
	evs := make([]evchan.Event, 1)
	ec.Next(ctx, evs)
	base := runtime.NumGoroutine()
	var clients []*api.Socket
	for i := 0; i < n; i++ {
		c, err := p.A.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:5007"))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.B.Submit(ctx, false, &api.Op{Kind: api.OpRecv, Sock: s, EC: ec}); err != nil {
			t.Fatal(err)
		}
	}
	if g := runtime.NumGoroutine(); g > base+10 {
		t.Fatalf("%d idle connections with a pending receive: %d goroutines, %d before", n, g, base)
	}
	for _, c := range clients {
		c.Close()
	}
}
