// Package apitest holds helpers for tests of programs built on package api:
// two stacks with the socket layer and a pool on each (NewPair, over
// stacktest's stacks), net adapters over a stack (Net), and moving a stream
// through a zero-copy socket and checking it. It owns nothing a program
// needs at run time. The layers below have their own: stacktest builds the
// stacks, evchantest the channels, contexts and waits.
package apitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/netip"
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// Drain receives from sock until the peer's end of stream, writes every
// byte to w (a hash, typically) and releases each Buf. It returns the bytes
// received and the first error other than io.EOF, a failed Release
// included.
func Drain(ctx context.Context, sock *api.Socket, w io.Writer) (int, error) {
	n := 0
	for {
		b, err := sock.Recv(ctx)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		w.Write(b.Bytes())
		n += b.Len()
		if err := b.Release(); err != nil {
			return n, err
		}
	}
}

// HalfCloser is a connection whose sending side can be closed alone, as
// *net.TCPConn and *api.TCPConn can.
type HalfCloser interface {
	io.Writer
	CloseWrite() error
}

// SendAll writes data on c from a new goroutine and then closes c's sending
// side, so the peer sees the end of the stream; the channel reports the
// outcome.
func SendAll(c HalfCloser, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	return done
}

// ReceiveAll drains sock (Drain) and fails tb unless it received exactly
// data, compared by SHA-256, and the sender's outcome werr (SendAll's
// channel) is nil.
func ReceiveAll(tb testing.TB, ctx context.Context, sock *api.Socket, data []byte, werr <-chan error) {
	tb.Helper()
	h := sha256.New()
	got, err := Drain(ctx, sock, h)
	if err != nil {
		tb.Fatal(err)
	}
	if err := <-werr; err != nil {
		tb.Fatal(err)
	}
	if want := sha256.Sum256(data); got != len(data) || !bytes.Equal(h.Sum(nil), want[:]) {
		tb.Fatalf("received %d bytes of %d, data intact %v", got, len(data), bytes.Equal(h.Sum(nil), want[:]))
	}
}

// Transfer sends size random bytes from a to a listener of b at addr,
// receives them with Recv, checks them, and returns the receiving
// socket's counters.
func Transfer(t testing.TB, a, b *api.Stack, addr netip.AddrPort, size int) api.SocketStats {
	t.Helper()
	ctx := evchantest.Context(t)
	ln, err := b.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *api.Socket, 1)
	go func() {
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- s
	}()
	data := make([]byte, size)
	rand.Read(data)
	conn, err := a.Net().DialContext(ctx, "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	werr := SendAll(conn.(*api.TCPConn), data)
	sock := <-accepted
	if sock == nil {
		t.FailNow()
	}
	defer sock.Close()
	ReceiveAll(t, ctx, sock, data, werr)
	return sock.Stats()
}
