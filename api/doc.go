// Package api is zcnet's socket interface: TCP and UDP sockets that hand
// received data to the application as buffers it owns instead of copying it
// (Drepper, "The Need for Asynchronous, Zero-Copy Network I/O", OLS 2006,
// §5–6), beside net.Conn, net.Listener and net.PacketConn adapters for code
// written against package net.
//
// # A program's life
//
// Memory first. The application creates a pool of pinned, off-heap buffer
// memory (the paper's dma_alloc, §3):
//
//	pool, err := dmapool.New(dmapool.Config{Size: 64 << 20, Pin: dmapool.PinPrefer})
//
// then a stack on a link (a TAP device, an in-process pair), and the socket
// API over it:
//
//	st, err := stack.New(stack.Options{})
//	link, err := tap.Open(tap.Config{Name: "zc0"})
//	_, err = st.AddNIC(link, stack.NICConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")}})
//	s, err := api.New(st, api.Options{Pool: pool})
//
// (Package api/zcnet does these steps in one call —
// zcnet.OpenTAP, or zcnet.NewPair in-process — and closes them in order:
// this API, the stack with its link, the pool. By hand, close in that
// order too; closing the stack closes the API over it.)
//
// Each socket is associated with DefaultAssoc bytes of the pool (dma_assoc);
// Assoc widens that. The association bounds what the application may hold:
//
//	ln, err := s.ListenTCP(netip.MustParseAddrPort("192.0.2.2:5001"))
//	conn, err := ln.Accept(ctx)
//
// Receiving returns a Buf (sio_recv, Figure 5): the bytes are where the link
// put them, referenced, not copied. The application reads them for as long
// as it likes and releases them (sio_release):
//
//	b, err := conn.Recv(ctx)
//	process(b.Bytes())
//	b.Release()
//
// While the application holds its association's worth, the socket takes no
// more from the stack: TCP's window closes and the sender waits. Nothing is
// dropped; releasing resumes the flow.
//
// Sending without a copy: SendFunc lets the application write straight into
// the stack's send buffer. Send sends a Buf from Stack.Reserve (pool memory)
// or from a receive — echoing what arrived without touching it — at the cost
// of one copy into the stack:
//
//	n, err := conn.SendFunc(ctx, 4096, func(p []byte) int { return copy(p, msg) })
//	b, _ := s.Reserve(512); fill(b.Bytes()); conn.Send(ctx, b)
//
// # Asynchronous operations
//
// An Op is a control block (the paper's aiocb with SIGEV_EC): a socket or
// file, an operation, the event channel its completion goes to, and the
// caller's data. Stack.Submit queues a batch (lio_listio) after reserving
// each completion's slot on its channel, so completions are never dropped;
// Err, Result, Cancel and Suspend are aio_error, aio_return, aio_cancel and
// aio_suspend. A receive that finds data ready completes at submission,
// flagged evchan.FlagInline; a multishot receive posts a completion per
// arrival, pauses while its channel is full, and ends at the peer's FIN
// with a last completion flagged FlagEOF (no FlagMore). A fixed set of
// stack workers serves every socket: no goroutine per connection. A
// cancelled op completes with ECANCELED, and its Err is ErrCanceled.
//
// A send completes when the stack has taken its bytes; the Buf is free
// again. OpSendFunc is SendFunc's write-into without the wait: Fill writes
// Len bytes straight into the stack's send buffer as it has room, on the
// submitter's goroutine or a stack worker, so an event loop that sends to
// a slow peer (its window closed) goes on serving the others:
//
//	op := &api.Op{Kind: api.OpSendFunc, Sock: conn, EC: ec, Len: len(msg),
//		Fill: func(p []byte) int { n := copy(p, msg); msg = msg[n:]; return n }}
//	err = s.Submit(ctx, false, op) // returns at once; completes on ec
//
// On a stack built with stack.Options.TCPAckEvents, a TCP send with
// Op.Ack completes a second time, flagged FlagAcked, once the peer's TCP
// has acknowledged every byte (the first completion then carries
// evchan.FlagMore), so a program can tell "sent" from "delivered" without
// a reply of its own:
//
//	st, err := stack.New(stack.Options{TCPAckEvents: true})
//	…
//	op := &api.Op{Kind: api.OpSend, Sock: conn, EC: ec, Buf: b, Ack: true}
//	err = s.Submit(ctx, false, op) // reserves both completions
//
// OpSendFunc takes Ack the same way.
//
// Files, pipes and FIFOs take the same Ops (OpRead, OpWrite, OpReadv,
// OpWritev, OpFsync, OpFdatasync), run by io_uring where the kernel allows
// it and by a bounded worker pool otherwise (package api/file, the
// engine; Stack.FileEngine says which); an Op names its file, offset and
// memory in a file.Request. A received Buf written to a file is not
// copied in user space. Package api/file/aio gives the same operations a
// POSIX AIO shape (aiocb, aio_read, lio_listio).
//
// # Where bytes are copied
//
// Every socket and the Stack keep the copy budget's books (Counters): bytes
// received and handed over, bytes received and copied, bytes sent in place,
// bytes sent by copy. A received byte is copied only where the stack's
// memory cannot be referenced: data that reached the socket before it was
// registered for zero-copy receive, payloads of links without the header
// split, IP fragments gVisor reassembled, and datagrams that arrived in more
// than one piece (joined into one Buf). On zcnet's links a TCP stream is
// handed over whole (TestZeroCopyTCPReceive asserts at least 99%).
//
// A UDP socket receives through a queue of its own in the stack
// (stack.UDPReceiver, in gVisor's place in the transport demuxer): each
// datagram's payload view is queued as it arrives and handed over as it is,
// a batch per receive, whatever the link; only datagrams in several views
// (reassembled from fragments) and those queued before the socket was ready
// are copied. The queue holds at most the socket's receive buffer (and
// twice that in the link's memory it keeps alive); datagrams past it are
// dropped and counted (Counters.DropsNoRoom, SocketStats.UDP).
//
// The package net adapters (Net, TCPConn, UDPConn) are built on the same
// sockets and keep the same books: a TCPConn's Read copies the received
// bytes from the stack straight into the caller's slice (its socket has no
// zero-copy flow to keep), a UDPConn's takes a hand-off and copies it,
// moving each byte it copies from handed over to copied; both count their
// bytes as copied. Write copies the caller's slice into the stack's send
// buffer and counts it as sent by copy. That one copy each way is the
// price of the net.Conn shape.
//
// # Errors
//
// Socket calls return net.ErrClosed after Close, context errors as
// os.ErrDeadlineExceeded or context.Canceled, ErrWouldBlock from the
// non-waiting variants, ErrInvalidBuffer for a Buf that is not live, and
// *os.SyscallError wrapping the errno Linux would give for protocol errors
// (errors.Is(err, syscall.ECONNREFUSED)).
package api
