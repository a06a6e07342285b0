package api

import (
	"context"
	"io"
	"net"
	"os"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// ctxErr maps a finished context to the error package net reports.
func ctxErr(ctx context.Context) error {
	if ctx.Err() == context.DeadlineExceeded {
		return os.ErrDeadlineExceeded
	}
	return ctx.Err()
}

// ListenBacklog is the accept queue length of listeners: Linux's default
// somaxconn.
const ListenBacklog = 4096

// copyWriter is the io.Writer a net adapter's TCP Read passes to the
// endpoint: it copies the stack's received bytes straight into the
// caller's slice, and stops the endpoint's Read when the slice is full
// (the rest stays queued in the stack).
type copyWriter struct {
	b []byte
	n int // bytes copied into b
}

func (w *copyWriter) Write(p []byte) (int, error) {
	m := copy(w.b[w.n:], p)
	w.n += m
	if m < len(p) {
		return m, errLimit
	}
	return m, nil
}

// recvCopy copies what the stack has received for a TCP socket into b, up
// to len(b), waiting (until ctx ends or the socket closes) while nothing is
// queued: io.EOF after the peer's FIN. w is the caller's writer, reused so
// that a read allocates nothing. It is the receive path of a socket
// without a zero-copy flow (the net adapters'): the copy into b is the one
// copy, counted as copied; nothing is handed over, nothing held.
func (sock *Socket) recvCopy(ctx context.Context, b []byte, w *copyWriter) (int, error) {
	sock.recvMu.Lock()
	defer sock.recvMu.Unlock()
	for {
		select {
		case <-sock.closed:
			return 0, net.ErrClosed
		default:
		}
		*w = copyWriter{b: b}
		res, terr := sock.ep.Read(w, tcpip.ReadOptions{})
		w.b = nil // forget the caller's slice
		switch terr.(type) {
		case nil:
			if res.Count > 0 {
				sock.ep.ModerateRecvBuf(res.Count)
			}
			sock.count(0, res.Count)
			return res.Count, nil
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrClosedForReceive:
			return 0, io.EOF
		default:
			return 0, errnoError("recv", terr)
		}
		if err := sock.waitReadableLocked(ctx, nil); err != nil {
			return 0, err
		}
	}
}
