package api

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
)

// The asynchronous side of a Socket. Ops wait in per-kind FIFOs guarded by
// opMu; serveLocked runs whatever is ready, first on the submitter's
// goroutine (inline completion: "check for available data before calling
// the kernel"), then on a stack worker each time the endpoint reports
// readiness, the association regains room, or a paused multishot's channel
// does.

// asyncState is the part of Socket the asynchronous operations use.
type asyncState struct {
	recvOps, sendOps, acceptOps, connectOps []*Op // +checklocks:opMu
	closeOp                                 *Op   // +checklocks:opMu
	entry                                   waiter.Entry
	registered                              bool // +checklocks:opMu

	// ackWaits are sends with Op.Ack whose bytes the stack has taken,
	// waiting for the peer's acknowledgement, in ackEnd order (ack.go).
	ackWaits []*Op // +checklocks:opMu
}

// queue adds a submitted op and runs what is ready at once.
func (sock *Socket) queue(op *Op) {
	sock.opMu.Lock()
	defer sock.opMu.Unlock()
	sock.watchLocked()
	switch op.Kind {
	case OpRecv, OpRecvMulti:
		sock.async.recvOps = append(sock.async.recvOps, op)
	case OpSend, OpSendFunc:
		sock.async.sendOps = append(sock.async.sendOps, op)
	case OpAccept:
		sock.async.acceptOps = append(sock.async.acceptOps, op)
	case OpConnect:
		if !sock.startConnectLocked(op) {
			return
		}
		sock.async.connectOps = append(sock.async.connectOps, op)
	case OpClose:
		if sock.async.closeOp != nil {
			op.completeLocked(evchan.Event{Flags: evchan.FlagInline, Errno: syscall.EALREADY}, net.ErrClosed)
			return
		}
		sock.async.closeOp = op
	}
	sock.serveLocked(true)
}

// serveCloseLocked runs a queued OpClose once the sends queued before it
// have completed, so that closing after sending loses nothing.
//
// +checklocks:sock.opMu
func (sock *Socket) serveCloseLocked(flags evchan.Flags) {
	op := sock.async.closeOp
	if op == nil || len(sock.async.sendOps) > 0 || len(sock.async.ackWaits) > 0 {
		// A send with Op.Ack has completed when the peer has its bytes.
		return
	}
	sock.async.closeOp = nil
	op.completeLocked(evchan.Event{Flags: flags}, nil)
	// Close takes opMu itself (to fail what is still queued).
	sock.opMu.Unlock()
	sock.Close()
	sock.opMu.Lock()
}

// watchLocked makes the endpoint's readiness, and credit returning to the
// association, queue the socket for a stack worker.
//
// +checklocks:sock.opMu
func (sock *Socket) watchLocked() {
	if sock.async.registered {
		return
	}
	sock.s.workers.start(sock.s)
	sock.async.registered = true
	sock.async.entry = waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.WritableEvents|waiter.EventErr|waiter.EventHUp,
		func(waiter.EventMask) { sock.s.workers.kick(sock) })
	sock.wq.EventRegister(&sock.async.entry)
	sock.assoc.setNotify(func() { sock.s.workers.kick(sock) })
}

// popFront removes the head of an op FIFO, clearing its slot so that the
// backing array, which later appends reuse, does not keep a finished op
// (its Fill, its Buf's handle, the caller's cookie) alive.
func popFront(l *[]*Op) {
	(*l)[0] = nil
	*l = (*l)[1:]
}

// unqueueLocked removes op from its FIFO; false if it is not there.
//
// +checklocks:sock.opMu
func (sock *Socket) unqueueLocked(op *Op) bool {
	for _, l := range []*[]*Op{&sock.async.recvOps, &sock.async.sendOps, &sock.async.acceptOps, &sock.async.connectOps, &sock.async.ackWaits} {
		for i, o := range *l {
			if o == op {
				*l = slices.Delete(*l, i, i+1) // clears the freed tail slot
				sock.ackWaiting.Store(int32(len(sock.async.ackWaits)))
				return true
			}
		}
	}
	return false
}

// serve runs ready operations; called by a stack worker.
func (sock *Socket) serve() {
	sock.opMu.Lock()
	defer sock.opMu.Unlock()
	sock.serveLocked(false)
}

// serveLocked completes every queued op that can complete now.
//
// +checklocks:sock.opMu
func (sock *Socket) serveLocked(inline bool) {
	var flags evchan.Flags
	if inline {
		flags = evchan.FlagInline
	}
	sock.serveConnectLocked(flags)
	sock.serveLatestLocked()
	sock.serveRecvLocked(flags)
	sock.serveSendLocked(flags)
	// After the sends: an ack that came while a send was being written
	// must be seen once that send waits for it (see Socket.ackNotify).
	sock.serveAckLocked(flags)
	sock.serveAcceptLocked(flags)
	sock.serveCloseLocked(flags)
}

// serveLatestLocked drains a latest-wins socket's datagrams from the stack
// as they arrive, so the stack's own queue (which drops the newest when
// full) never fills; fillLocked drops the oldest instead.
//
// +checklocks:sock.opMu
func (sock *Socket) serveLatestLocked() {
	if !sock.latestWins.Load() || len(sock.async.recvOps) > 0 {
		// Queued receives take datagrams themselves, oldest first.
		return
	}
	sock.recvMu.Lock()
	defer sock.recvMu.Unlock()
	for i := 0; i < latestDrainBatch; i++ {
		if sock.fillLocked() != nil {
			return
		}
	}
	// More may be waiting: let other sockets have a worker first.
	sock.s.workers.kick(sock)
}

// latestDrainBatch bounds the datagrams one worker visit drains.
const latestDrainBatch = 256

// +checklocks:sock.opMu
func (sock *Socket) serveRecvLocked(flags evchan.Flags) {
	for len(sock.async.recvOps) > 0 {
		op := sock.async.recvOps[0]
		if op.paused {
			// Waiting for room on its channel: ReserveFunc's callback
			// leaves the slot in op.resume and kicks the socket.
			r := op.resume.Swap(nil)
			if r == nil {
				return
			}
			op.paused = false
			if r.err != nil {
				// The channel closed: the multishot ends without an event.
				popFront(&sock.async.recvOps)
				op.finishLocked(r.err)
				continue
			}
			op.credit, _ = r.r.Split(r.r.Len())
			if op.cancelled {
				// Cancel came while it waited: the slot carries the
				// final event.
				popFront(&sock.async.recvOps)
				op.completeLocked(evchan.Event{Errno: syscall.ECANCELED}, ErrCanceled)
				continue
			}
		}
		b, from, err := sock.recv(nil)
		if errors.Is(err, ErrWouldBlock) {
			return
		}
		if err != nil {
			popFront(&sock.async.recvOps)
			ev := evchan.Event{Flags: flags, Errno: errnoOf(err)}
			if err == io.EOF {
				ev.Flags |= FlagEOF
			}
			op.completeLocked(ev, err)
			continue
		}
		b.h.from = from
		ev := evchan.Event{Flags: flags, Result: int64(len(b.h.data)), Buffer: b.h}
		if op.Kind == OpRecv {
			popFront(&sock.async.recvOps)
			op.completeLocked(ev, nil)
			continue
		}
		// Multishot: post with FlagMore and take the next slot.
		ev.Flags |= evchan.FlagMore
		op.post(ev)
		op.res += ev.Result
		var err2 error
		op.credit, err2 = op.EC.Reserve(1)
		if err2 == nil {
			continue
		}
		err = err2
		if errors.Is(err, evchan.ErrFull) {
			op.paused = true
			var ok bool
			op.credit, ok = op.EC.ReserveFunc(1, func(r *evchan.Reservation, err error) {
				// Runs under the channel's lock: hand over, wake a worker.
				res := &resumed{err: err}
				res.r, _ = r.Split(r.Len())
				op.resume.Store(res)
				sock.s.workers.kick(sock)
			})
			if ok {
				// Room appeared in between: go on at once.
				op.paused = false
				continue
			}
			return
		}
		// Closed channel: the multishot ends without a final event.
		popFront(&sock.async.recvOps)
		op.finishLocked(err)
	}
}

// +checklocks:sock.opMu
func (sock *Socket) serveSendLocked(flags evchan.Flags) {
	for len(sock.async.sendOps) > 0 {
		op := sock.async.sendOps[0]
		if op.Kind == OpSendFunc {
			if !sock.serveSendFuncLocked(op, flags) { // sendfunc.go
				return
			}
			continue
		}
		h := op.Buf.h
		if h == nil {
			// The Buf was released between Submit's check and its
			// taking it over.
			popFront(&sock.async.sendOps)
			op.completeLocked(evchan.Event{Flags: flags, Errno: syscall.EINVAL}, ErrInvalidBuffer)
			continue
		}
		var opts tcpip.WriteOptions
		if op.Addr.IsValid() {
			fa := stack.FullAddress(op.Addr, 0)
			opts.To = &fa
		}
		var r bytes.Reader
		r.Reset(h.data[op.sent:])
		n, terr := sock.epWrite(&r, opts)
		r.Reset(nil) // the endpoint keeps its last reader (see TCPConn.wr)
		op.sent += int(n)
		for _, c := range []*counters{&sock.c, &sock.s.c} {
			c.txCopied.Add(uint64(n))
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
			return
		}
		if terr == nil && op.sent < len(h.data) && sock.proto == tcp.ProtocolNumber {
			continue
		}
		popFront(&sock.async.sendOps)
		var err error
		if terr != nil {
			err = errnoError("send", terr)
		}
		ev := evchan.Event{Flags: flags, Result: int64(op.sent), Errno: errnoOf(err)}
		if op.Ack && err == nil {
			sock.awaitAckLocked(op, ev) // ack.go
			continue
		}
		op.completeLocked(ev, err)
	}
}

// +checklocks:sock.opMu
func (sock *Socket) serveAcceptLocked(flags evchan.Flags) {
	for len(sock.async.acceptOps) > 0 {
		op := sock.async.acceptOps[0]
		child, err := sock.acceptOne()
		if errors.Is(err, ErrWouldBlock) {
			return
		}
		popFront(&sock.async.acceptOps)
		ev := evchan.Event{Flags: flags, Errno: errnoOf(err)}
		if child != nil {
			ev.Buffer = child
		}
		op.completeLocked(ev, err)
	}
}

// startConnectLocked starts op's connection; it reports whether the op
// waits (it has completed otherwise).
//
// +checklocks:sock.opMu
func (sock *Socket) startConnectLocked(op *Op) bool {
	flow, err := sock.s.st.RegisterFlow(tcp.ProtocolNumber, netip.AddrPortFrom(netip.Addr{}, sock.laddr.Port()), op.Addr, sock.s.opts.MaxShadowBytes)
	if err != nil {
		op.completeLocked(evchan.Event{Flags: evchan.FlagInline, Errno: syscall.EISCONN}, err)
		return false
	}
	sock.flow = flow
	sock.raddr = op.Addr
	terr := sock.ep.Connect(stack.FullAddress(op.Addr, 0))
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		return true
	}
	var err2 error
	if terr != nil {
		err2 = errnoError("connect", terr)
	}
	op.completeLocked(evchan.Event{Flags: evchan.FlagInline, Errno: errnoOf(err2)}, err2)
	return false
}

// +checklocks:sock.opMu
func (sock *Socket) serveConnectLocked(flags evchan.Flags) {
	for len(sock.async.connectOps) > 0 {
		if sock.ep.Readiness(waiter.WritableEvents|waiter.EventErr|waiter.EventHUp) == 0 {
			return
		}
		op := sock.async.connectOps[0]
		popFront(&sock.async.connectOps)
		var err error
		if terr := sock.ep.LastError(); terr != nil {
			err = errnoError("connect", terr)
		} else {
			sock.laddr = localAddr(sock.ep)
			err = sock.watchAcks()
		}
		op.completeLocked(evchan.Event{Flags: flags, Errno: errnoOf(err)}, err)
	}
}

// failAllLocked completes every queued op with err (the socket closed).
//
// +checklocks:sock.opMu
func (sock *Socket) failAllLocked(err error) {
	if op := sock.async.closeOp; op != nil {
		sock.async.closeOp = nil
		op.completeLocked(evchan.Event{}, nil)
	}
	for _, l := range []*[]*Op{&sock.async.recvOps, &sock.async.sendOps, &sock.async.acceptOps, &sock.async.connectOps, &sock.async.ackWaits} {
		for _, op := range *l {
			if op.fill != nil {
				op.fill.detach() // the endpoint may keep it (see TCPConn.wr)
			}
			if op.paused {
				// Its slot is not held yet: it ends without an event. A
				// slot granted later is released by the callback's
				// receiver (see resumed).
				op.paused = false
				op.finishLocked(err)
				continue
			}
			op.completeLocked(evchan.Event{Errno: errnoOf(err)}, err)
		}
		*l = nil
	}
	sock.ackWaiting.Store(0)
	if sock.async.registered {
		sock.wq.EventUnregister(&sock.async.entry)
		sock.async.registered = false
	}
}

// NewTCP returns an unconnected TCP socket for an asynchronous OpConnect.
// v6 picks the address family of the peer it will connect to.
func (s *Stack) NewTCP(v6 bool) (*Socket, error) {
	a := netip.IPv4Unspecified()
	if v6 {
		a = netip.IPv6Unspecified()
	}
	ep, wq, err := s.netEndpoint(tcp.ProtocolNumber, familyOf(a), a)
	if err != nil {
		return nil, err
	}
	if terr := ep.Bind(tcpip.FullAddress{}); terr != nil {
		ep.Close()
		return nil, errnoError("bind", terr)
	}
	sock, err := s.newSocket(tcp.ProtocolNumber, ep, wq)
	if err != nil {
		return nil, err // newSocket closed ep
	}
	sock.laddr = localAddr(ep)
	return sock, nil
}
