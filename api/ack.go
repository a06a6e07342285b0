package api

import (
	"fmt"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
)

// Send completions when the peer has the data (Op.Ack, FlagAcked).
//
//  1. On a stack with stack.Options.TCPAckEvents, every TCP socket gets a
//     stack.AckWatch when its connection is established (DialTCP, Accept,
//     OpConnect), and all its writes go through the watch (epWrite), which
//     counts the bytes the endpoint takes.
//  2. When a send with Ack has written its last byte, its first completion
//     is posted (FlagMore), its Buf released, and the op waits in
//     ackWaits with ackEnd = the watch's Written count: the peer has every
//     byte of the send once it has acknowledged that many.
//  3. The stack's TCP probe advances the watch's Acked count as ACKs
//     arrive and calls ackNotify, which queues the socket for a worker
//     while sends wait.
//  4. The worker (serveAckLocked) posts the second completion, FlagAcked,
//     for every waiting send whose ackEnd has been acknowledged, in order;
//     if the connection has failed, it fails the rest.

// checkAck reports why a send on sock cannot ask for an acknowledgement
// completion.
func (sock *Socket) checkAck() error {
	switch {
	case sock.proto != tcp.ProtocolNumber:
		return fmt.Errorf("%w: send with Ack: acknowledgements are TCP's, not UDP's", ErrInvalidOp)
	case sock.listening:
		return fmt.Errorf("%w: send with Ack on a listening socket", ErrInvalidOp)
	case !sock.s.st.TCPAckEvents():
		return fmt.Errorf("%w: send with Ack: %w", ErrInvalidOp, stack.ErrAckEventsOff)
	}
	return nil
}

// watchAcks gives a newly connected TCP socket its acknowledgement watch,
// when the stack tracks acknowledgements. It runs before the socket's
// first write.
func (sock *Socket) watchAcks() error {
	if sock.proto != tcp.ProtocolNumber || !sock.s.st.TCPAckEvents() {
		return nil
	}
	w, err := sock.s.st.WatchAcks(sock.ep, sock.ackNotify)
	if err != nil {
		return err
	}
	sock.ack.Store(w)
	return nil
}

// ackNotify is the watch's notify: it runs on the stack's goroutine with
// the endpoint locked, so it only queues the socket for a worker, and only
// while sends wait. The watch stores Acked before calling it, and
// awaitAckLocked stores ackWaiting before serveAckLocked loads Acked: one
// of the two sides sees the other, so no acknowledgement is missed.
func (sock *Socket) ackNotify() {
	if sock.ackWaiting.Load() > 0 {
		sock.s.workers.kick(sock)
	}
}

// epWrite writes to the endpoint, through the acknowledgement watch when
// the socket has one, so that Written counts every byte.
func (sock *Socket) epWrite(p tcpip.Payloader, opts tcpip.WriteOptions) (int64, tcpip.Error) {
	if w := sock.ack.Load(); w != nil {
		return w.Write(p, opts)
	}
	return sock.ep.Write(p, opts)
}

// awaitAckLocked posts the first completion of a send with Ack, whose
// bytes the stack has all taken, and queues the op for the peer's
// acknowledgement.
//
// +checklocks:sock.opMu
func (sock *Socket) awaitAckLocked(op *Op, ev evchan.Event) {
	w := sock.ack.Load()
	if w == nil {
		// Unreachable on a connected socket of a stack that tracks
		// acknowledgements (checkAck, watchAcks); fail loudly rather
		// than never complete.
		err := fmt.Errorf("send: acknowledgement: %w", sockErr(syscall.ENOTCONN))
		ev.Errno = syscall.ENOTCONN
		op.completeLocked(ev, err)
		return
	}
	ev.Flags |= evchan.FlagMore
	op.post(ev)
	op.res = ev.Result
	op.releaseBuf()
	op.ackEnd = w.Written()
	op.awaitingAck = true
	sock.async.ackWaits = append(sock.async.ackWaits, op)
	sock.ackWaiting.Store(int32(len(sock.async.ackWaits)))
}

// serveAckLocked posts the acknowledgement completions that are due.
//
// +checklocks:sock.opMu
func (sock *Socket) serveAckLocked(flags evchan.Flags) {
	if len(sock.async.ackWaits) == 0 {
		return
	}
	acked, failed := sock.ack.Load().Progress()
	for len(sock.async.ackWaits) > 0 && sock.async.ackWaits[0].ackEnd <= acked {
		op := sock.async.ackWaits[0]
		popFront(&sock.async.ackWaits)
		op.completeLocked(evchan.Event{Flags: flags}, nil)
	}
	if failed {
		// The connection ended before the peer acknowledged the rest.
		err := fmt.Errorf("send: acknowledgement: %w", sockErr(syscall.ECONNRESET))
		for _, op := range sock.async.ackWaits {
			op.completeLocked(evchan.Event{Flags: flags, Errno: syscall.ECONNRESET}, err)
		}
		sock.async.ackWaits = nil
	}
	sock.ackWaiting.Store(int32(len(sock.async.ackWaits)))
}
