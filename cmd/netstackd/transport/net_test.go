package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/api/zcnet"
)

// TestMain checks that no test leaves a goroutine behind: the stacks and
// the sockets are all closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// netPair is Net transports on both nodes of an in-process zcnet pair,
// through api.Net's net.Conn adapters.
func netPair(t *testing.T) (client, server *Net, serverAddr netip.Addr) {
	t.Helper()
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []*zcnet.Node{a, b} {
			if err := n.Close(); err != nil {
				t.Errorf("closing a node: %v", err)
			}
		}
	})
	mk := func(n *zcnet.Node) *Net {
		return &Net{Label: "api.Net",
			Listen: func(ap netip.AddrPort) (net.Listener, error) { return n.Net().Listen("tcp", ap.String()) },
			Dial: func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
				return n.Net().DialContext(ctx, "tcp", ap.String())
			}}
	}
	return mk(a), mk(b), zcnet.PairAddrsB[0].Addr()
}

// TestNetEcho carries bytes both ways over a Net transport and checks the
// addresses, the end of stream and that UDP is refused.
func TestNetEcho(t *testing.T) {
	client, server, addr := netPair(t)
	if client.Name() != "api.Net" || client.CopyBudget() != nil {
		t.Errorf("Name %q, CopyBudget %v", client.Name(), client.CopyBudget())
	}
	if _, err := server.ListenUDP(netip.AddrPortFrom(addr, 9)); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListenUDP: %v, want ErrUnsupported", err)
	}
	ln, err := server.ListenTCP(netip.AddrPortFrom(addr, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.Addr() != netip.AddrPortFrom(addr, 7) {
		t.Errorf("listener at %v", ln.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		for {
			ch, err := c.Recv(ctx)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				done <- err
				return
			}
			_, err = SendBytes(ctx, c, ch.Bytes())
			ch.Release()
			if err != nil {
				done <- err
				return
			}
		}
	}()
	c, err := client.DialTCP(ctx, netip.AddrPortFrom(addr, 7))
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr() != netip.AddrPortFrom(addr, 7) || !c.LocalAddr().IsValid() || c.Retransmits() != -1 {
		t.Errorf("local %v remote %v retransmits %d", c.LocalAddr(), c.RemoteAddr(), c.Retransmits())
	}
	msg := make([]byte, 100<<10)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	if n, err := SendBytes(ctx, c, msg); err != nil || n != len(msg) {
		t.Fatalf("sent %d: %v", n, err)
	}
	var got []byte
	for len(got) < len(msg) {
		ch, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, ch.Bytes()...)
		ch.Release()
	}
	if string(got) != string(msg) {
		t.Fatal("the echo differs from what was sent")
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// TestNetAcceptEndsWithContext: a cancelled context ends a blocked Accept
// with the context's error.
func TestNetAcceptEndsWithContext(t *testing.T) {
	_, server, addr := netPair(t)
	ln, err := server.ListenTCP(netip.AddrPortFrom(addr, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept(ctx)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Accept: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not end with its context")
	}
}
