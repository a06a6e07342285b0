// Package apitest holds helpers for tests of programs built on package api:
// two stacks with the socket layer and a pool on each (NewPair, over
// stacktest's stacks), net adapters over a stack (Net), and moving a stream
// through a zero-copy socket and checking it. It owns nothing a program
// needs at run time. The layers below have their own: stacktest builds the
// stacks, evchantest the channels, contexts and waits.
package apitest

import (
	"context"
	"io"

	"github.com/zcnet/zcnet/api"
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
