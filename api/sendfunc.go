package api

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
)

// Asynchronous zero-copy send (OpSendFunc): SendFunc's write-into, served
// like OpSend.
//
//  1. Submit checks Len and Fill, reserves the completion slots (two with
//     Ack) and queues the op in the socket's send FIFO, behind the sends
//     submitted before it, so a socket's bytes leave in submission order.
//  2. serveSendFuncLocked writes what the send buffer has room for: the
//     endpoint's Write hands fillReader slices of its new send buffer, and
//     Fill writes into them — no copy in user space (Counters.TxInPlace).
//     It runs at Submit (inline) and then on a stack worker each time the
//     endpoint reports room; with none it leaves the op queued and returns,
//     so the submitter, and every other socket the loop serves, go on.
//  3. When Fill has written Len bytes (or ended short, or the write
//     failed), the op completes with Result the bytes sent; with Ack it
//     waits for the peer's acknowledgement as OpSend does (ack.go).

// checkSendFunc validates an OpSendFunc before anything is queued.
func (op *Op) checkSendFunc() error {
	switch {
	case op.Len <= 0:
		return fmt.Errorf("%w: sendfunc: Len %d, want > 0", ErrInvalidOp, op.Len)
	case op.Fill == nil:
		return fmt.Errorf("%w: sendfunc: no Fill", ErrInvalidOp)
	case op.Buf.h != nil:
		return fmt.Errorf("%w: sendfunc takes no Buf (Fill writes the bytes)", ErrInvalidOp)
	case op.Sock.listening:
		return fmt.Errorf("%w: sendfunc on a listening socket", ErrInvalidOp)
	case op.Ack:
		return op.Sock.checkAck()
	}
	return nil
}

// serveSendFuncLocked writes what it can of op, the head of the send FIFO.
// It reports whether op is finished (completed, or waiting for its
// acknowledgement), so the next send may go; false leaves it at the head,
// waiting for room.
//
// +checklocks:sock.opMu
func (sock *Socket) serveSendFuncLocked(op *Op, flags evchan.Flags) bool {
	var opts tcpip.WriteOptions
	if op.Addr.IsValid() {
		fa := stack.FullAddress(op.Addr, 0)
		opts.To = &fa
	}
	var terr tcpip.Error
	for op.fill.Len() > 0 {
		var n int64
		n, terr = sock.epWrite(op.fill, opts)
		op.sent += int(n)
		for _, c := range []*counters{&sock.c, &sock.s.c} {
			c.txInPlace.Add(uint64(n))
		}
		if terr != nil || sock.proto != tcp.ProtocolNumber {
			break // UDP: one datagram per write
		}
	}
	if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
		return false
	}
	op.fill.detach()
	popFront(&sock.async.sendOps)
	var err error
	if terr != nil {
		err = errnoError("send", terr)
	}
	ev := evchan.Event{Flags: flags, Result: int64(op.sent), Errno: errnoOf(err)}
	if op.Ack && err == nil {
		sock.awaitAckLocked(op, ev) // ack.go
		return true
	}
	op.completeLocked(ev, err)
	return true
}
