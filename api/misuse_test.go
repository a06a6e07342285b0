package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// TestNewNeedsPool: New without Options.Pool fails at once, saying what to
// do, instead of making sockets whose receives would wait forever.
func TestNewNeedsPool(t *testing.T) {
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := api.New(st, api.Options{})
	if err == nil {
		s.Close()
		t.Fatal("New without a pool succeeded")
	}
	if !errors.Is(err, api.ErrAssoc) || !strings.Contains(err.Error(), "Options.Pool") || !strings.Contains(err.Error(), "FilesOnly") {
		t.Fatalf("New without a pool: %q, want ErrAssoc naming Options.Pool and FilesOnly", err)
	}
}

// TestFilesOnlyRefusesSockets: an API made for files alone refuses every
// call that makes a socket, at the call.
func TestFilesOnlyRefusesSockets(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	s, err := api.New(p.A, api.Options{FilesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := netip.MustParseAddrPort("192.0.2.1:7")
	peer := netip.MustParseAddrPort("192.0.2.2:7")
	calls := map[string]func() (*api.Socket, error){
		"ListenTCP": func() (*api.Socket, error) { return s.ListenTCP(addr) },
		"DialTCP":   func() (*api.Socket, error) { return s.DialTCP(ctx, peer) },
		"ListenUDP": func() (*api.Socket, error) { return s.ListenUDP(addr) },
		"DialUDP":   func() (*api.Socket, error) { return s.DialUDP(peer) },
		"NewTCP":    func() (*api.Socket, error) { return s.NewTCP(false) },
	}
	for name, call := range calls {
		sock, err := call()
		if sock != nil || !errors.Is(err, api.ErrAssoc) || !strings.Contains(err.Error(), "FilesOnly") {
			t.Errorf("%s on a files-only API: %v, %v; want no socket and ErrAssoc naming FilesOnly", name, sock, err)
		}
	}
}

// TestStackCloseClosesAPI: closing the stack.Stack while its socket API is
// open closes the API first — its sockets fail with net.ErrClosed, queued
// operations complete, and no goroutine (workers, stack, links) is left.
func TestStackCloseClosesAPI(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	la, lb, err := pair.New(pair.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(link *pair.Endpoint, addr string) (*stack.Stack, *api.Stack, *dmapool.Pool) {
		st, err := stack.New(stack.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddNIC(link, stack.NICConfig{Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}}); err != nil {
			t.Fatal(err)
		}
		pool, err := dmapool.New(dmapool.Config{Size: 4 << 20, Pin: dmapool.PinOff})
		if err != nil {
			t.Fatal(err)
		}
		s, err := api.New(st, api.Options{Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		return st, s, pool
	}
	stA, a, poolA := mk(la, "192.0.2.1/24")
	stB, b, poolB := mk(lb, "192.0.2.2/24")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ln, err := b.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:7"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An asynchronous receive waits on B (starting B's workers), a
	// blocking one on A.
	ec, err := evchan.New(evchan.Config{Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	op := &api.Op{Kind: api.OpRecvMulti, Sock: srv, EC: ec}
	if err := b.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	recvErr := make(chan error, 1)
	go func() {
		_, err := c.Recv(ctx)
		recvErr <- err
	}()

	// Close the stacks only — not the APIs — then the pools.
	for _, st := range []*stack.Stack{stA, stB} {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-recvErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Recv across stack.Close: %v, want net.ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Recv still blocked after stack.Close")
	}
	// B's multishot ended by A's FIN (A closed first) or by B's close.
	if err := op.Err(); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.Errorf("multishot receive after stack.Close: Err %v, want io.EOF or net.ErrClosed", err)
	}
	if _, err := a.ListenTCP(netip.MustParseAddrPort("0.0.0.0:8")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenTCP on the API of a closed stack: %v, want net.ErrClosed", err)
	}
	// The API's own Close is now a no-op; the pools have nothing lent.
	for _, s := range []*api.Stack{a, b} {
		if err := s.Close(); err != nil {
			t.Errorf("api Close after stack.Close: %v", err)
		}
	}
	for _, p := range []*dmapool.Pool{poolA, poolB} {
		if err := p.Close(); err != nil {
			t.Errorf("pool Close: %v", err)
		}
	}
}

// TestAPICloseUnhooks: an API closed on its own is not closed again by the
// stack, and a second API on the same stack is still closed by it.
func TestAPICloseUnhooks(t *testing.T) {
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := dmapool.New(dmapool.Config{Size: 1 << 20, Pin: dmapool.PinOff})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	first, err := api.New(st, api.Options{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	second, err := api.New(st, api.Options{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	ln, err := second.ListenTCP(netip.MustParseAddrPort("0.0.0.0:9"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := ln.Accept(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on the second API after stack.Close: %v, want net.ErrClosed", err)
	}
}
