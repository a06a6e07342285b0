package api_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// waitQueued waits (bounded) until srv's receive queue in the stack holds
// n datagrams.
func waitQueued(t *testing.T, srv *api.Socket, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().UDP.Queued < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d datagrams queued after 10 s, want %d", srv.Stats().UDP.Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUDPReceiveHandsOverViews: datagrams a UDP socket receives come from
// its own queue in the stack, a batch per RecvMsg, each handed over as the
// view it arrived in: counted as handed over, none copied.
func TestUDPReceiveHandsOverViews(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5020"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5020"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := evchantest.Context(t)
	primeUDP(t, ctx, p, cl, srv)
	before := srv.Stats()
	const n, size = 40, 64
	sendNumbered(t, ctx, p, cl, n, size)
	waitQueued(t, srv, n)
	bufs := make([]api.Buf, n)
	got, first, err := srv.RecvMsg(ctx, bufs)
	if err != nil || got != n {
		t.Fatalf("RecvMsg with %d queued: %d, %v; want all in one batch", n, got, err)
	}
	if first != cl.LocalAddr() {
		t.Fatalf("RecvMsg's sender %v, want %v", first, cl.LocalAddr())
	}
	for i, b := range bufs[:got] {
		if b.Len() != size || b.Bytes()[0] != byte(i) || b.Copied() || b.From() != cl.LocalAddr() {
			t.Fatalf("datagram %d: %d bytes, first %d, copied %v, from %v", i, b.Len(), b.Bytes()[0], b.Copied(), b.From())
		}
		b.Release()
	}
	st := srv.Stats()
	if h, c := st.RxHandedOver-before.RxHandedOver, st.RxCopied-before.RxCopied; h != n*size || c != 0 {
		t.Fatalf("handed over %d bytes, copied %d; want %d and 0", h, c, n*size)
	}
	if st.UDP.Received-before.UDP.Received != n || st.UDP.Queued != 0 || st.HeldBytes != 0 {
		t.Fatalf("receive queue %+v, held %d", st.UDP, st.HeldBytes)
	}
}

// TestUDPCloseQueued: closing a UDP socket with datagrams in its stack
// queue, in its pending hand-offs and in the application's hands loses
// nothing: the queues are released at Close, the held Bufs stay valid
// until released, and the pools end empty (apitest checks them).
func TestUDPCloseQueued(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5021"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5021"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := evchantest.Context(t)
	primeUDP(t, ctx, p, cl, srv)
	const n = 100
	sendNumbered(t, ctx, p, cl, n, 100)
	waitQueued(t, srv, n)
	held, err := srv.Recv(ctx) // takes a batch: the rest waits in pending
	if err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.UDP.Queued == 0 || st.HeldBytes <= held.Len() {
		t.Fatalf("before Close: %+v: want datagrams both queued in the stack and pending", st)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.UDP.Queued != 0 || st.UDP.QueuedMem != 0 || st.HeldBytes != held.Len() {
		t.Fatalf("after Close: %+v, want only the held datagram", st)
	}
	if held.Bytes()[0] != 0 {
		t.Fatalf("held datagram changed after Close: %d", held.Bytes()[0])
	}
	if err := held.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Recv(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
}

// TestUDPRefused: a connected UDP socket whose datagram meets a closed
// port learns it (ICMP port unreachable, through the socket's receive
// queue to gVisor's endpoint) as ECONNREFUSED from its next receive.
func TestUDPRefused(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	cl, err := p.B.DialUDP(netip.MustParseAddrPort("192.0.2.1:5999"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := evchantest.Context(t)
	b, err := p.B.Reserve(10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cl.Recv(rctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Recv after a datagram to a closed port: %v, want ECONNREFUSED", err)
	}
}
