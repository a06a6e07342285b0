package api

import (
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
)

// A UDP socket receives through a stack.UDPReceiver of its own: the stack
// queues each datagram's payload view as it arrives, and a receive takes a
// batch of them and hands each over as a Buf referencing that view. There
// is no shadow to find and no second queue; gVisor's endpoint under the
// socket keeps the port, sending, options and errors.

// rxBatchLen bounds the datagrams one fill takes from the receiver: enough
// to amortise the lock and wake-up over a burst, few enough that one fill
// does not hold a large share of the association.
const rxBatchLen = 64

// attachRx makes sock receive through a stack.UDPReceiver. On failure the
// socket keeps receiving through gVisor's endpoint and a zero-copy flow
// (the caller registers it).
func (sock *Socket) attachRx() error {
	rx, err := sock.s.st.AttachUDPReceiver(sock.ep, func() { sock.wq.Notify(waiter.ReadableEvents) })
	if err != nil {
		return err
	}
	sock.rx = rx
	return nil
}

// readable reports whether a receive would find something without waiting
// (or an error or end of stream).
func (sock *Socket) readable() bool {
	if sock.rx != nil && sock.rx.Len() > 0 {
		return true
	}
	return sock.ep.Readiness(waiter.ReadableEvents) != 0
}

// fillRxLocked moves a batch of datagrams from sock.rx into the socket's
// pending hand-offs: up to room bytes of them (at least one). A datagram in
// one view is handed over as a reference to it; one in several (a
// reassembled datagram) is copied into pool memory, counted as copied.
//
// +checklocks:sock.recvMu
func (sock *Socket) fillRxLocked(room int, latest bool) error {
	if cap(sock.rxBatch) == 0 {
		sock.rxBatch = make([]stack.UDPDatagram, rxBatchLen)
	}
	batch := sock.rxBatch[:cap(sock.rxBatch)]
	n := sock.rx.Pop(batch, max(room, 1))
	if n == 0 {
		return ErrWouldBlock
	}
	var err error
	handed := 0
	for i := range batch[:n] {
		d := &batch[i]
		b, e := sock.rxBuf(d, err)
		from := d.From
		*d = stack.UDPDatagram{}
		if e != nil {
			err = e
			continue
		}
		sock.assoc.take(b.Len())
		sock.pushPendingLocked(received{b: b, from: from})
		handed++
	}
	if latest {
		sock.dropOldestLocked()
	}
	sock.c.rxHandoffs.Add(uint64(handed))
	sock.s.c.rxHandoffs.Add(uint64(handed))
	if handed == 0 {
		return err
	}
	return nil
}

// rxBuf turns a received datagram into a Buf, taking ownership of its
// payload. It fails, the datagram dropped and counted (DropsNoPool), when
// it would have to copy but there is no pool memory (or prev is not nil:
// an earlier datagram of the batch found none).
func (sock *Socket) rxBuf(d *stack.UDPDatagram, prev error) (Buf, error) {
	size := int(d.Payload.Size())
	vl := d.Payload.AsViewList()
	v := vl.Front()
	switch {
	case size == 0:
		d.Payload.Release()
		return newBuf(kindEmpty, []byte{}, nil, dmapool.Buf{}, sock.assoc), nil
	case v != nil && v.Next() == nil:
		// One view: the application's reference is the view itself.
		sock.count(size, 0)
		return newBuf(kindView, v.AsSlice(), v, dmapool.Buf{}, sock.assoc), nil
	}
	err := prev
	if err == nil {
		var pb dmapool.Buf
		if pb, err = sock.assoc.reserve(size); err == nil {
			d.Payload.ReadAt(pb.Bytes()[:size], 0)
			d.Payload.Release()
			sock.count(0, size)
			return newBuf(kindCopied, pb.Bytes()[:size], nil, pb, sock.assoc), nil
		}
	}
	d.Payload.Release()
	sock.c.dropsNoPool.Add(1)
	sock.s.c.dropsNoPool.Add(1)
	return Buf{}, err
}

// pushPendingLocked queues a hand-off. When the array is full with taken
// slots at its front (a latest-wins socket never drained empty), the queue
// moves down rather than grows.
//
// +checklocks:sock.recvMu
func (sock *Socket) pushPendingLocked(r received) {
	if sock.pendingHead > 0 && len(sock.pending) == cap(sock.pending) {
		n := copy(sock.pending, sock.pending[sock.pendingHead:])
		clear(sock.pending[n:])
		sock.pending, sock.pendingHead = sock.pending[:n], 0
	}
	sock.pending = append(sock.pending, r)
}
