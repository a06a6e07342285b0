package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/evchan"
)

// Asynchronous operations (the paper's Figures 1 and 2): an Op is a control
// block — aio's aiocb with SIGEV_EC — naming a socket, an operation, the
// event channel its completion goes to and the caller's data. Submit queues
// a batch of them (lio_listio); each completes as one evchan.Event with
// Source SourceNetOp on its channel. Err, Result, Cancel and Suspend are
// aio_error, aio_return, aio_cancel and aio_suspend.
//
// A completion is never dropped: Submit reserves each op's completion slot
// on its channel before queuing it, and fails with an error wrapping
// evchan.ErrFull when the channel has no room (Submit with wait reserves
// with a wait instead). A multishot receive reserves one slot at a time;
// when the channel is full it pauses, and resumes when the consumer makes
// room — backpressure, never loss.
//
// A TCP send can complete twice (liburing's zero-copy send and its
// notification): with Op.Ack set, the first completion, flagged
// evchan.FlagMore, says the stack has taken the bytes (the Buf is released
// and Result is the bytes sent), and a second one, flagged FlagAcked, says
// the peer's TCP has acknowledged every one of them. Submit reserves both
// slots. Acknowledgement completions of one socket come in submission
// order, never before the first completion of the same op, and never before
// the peer's acknowledgement of the op's last byte has reached the stack.
// The op is done (Err, Result, Suspend) after the second, and an OpClose
// queued after it waits for it. If the connection fails first, the second
// completion carries ECONNRESET; if the socket is closed first, EBADF;
// Cancel between the two, ECANCELED. This needs a stack built with
// stack.Options.TCPAckEvents; Submit rejects Ack on UDP, on other kinds,
// and on a stack without it (errors.Is(err, stack.ErrAckEventsOff)).

// OpKind is what an Op does; it is the Op field of its completion events.
type OpKind uint16

// Operations.
const (
	OpRecv OpKind = iota + 1 // receive once: Result bytes, Buffer the Buf (BufOf)
	// OpRecvMulti receives until it ends: one completion per hand-off,
	// each flagged evchan.FlagMore, then a last one without FlagMore.
	// It ends at the end of a TCP stream (the peer's FIN: the last
	// completion is flagged FlagEOF, Result 0, no Buffer; Err is io.EOF),
	// on an error (the completion's Errno: ECONNRESET, EBADF after Close),
	// or by Cancel (ECANCELED; Err is ErrCanceled). While its channel is
	// full it pauses, and resumes when the consumer makes room.
	OpRecvMulti
	OpSend    // send Op.Buf (taken over at Submit): Result bytes sent
	OpAccept  // accept on a listening socket: Buffer the new *Socket (SocketOf)
	OpConnect // connect a socket from Stack.NewTCP to Op.Addr
	OpClose   // close the socket once the sends queued before it have completed (both completions of a send with Ack)
	// OpSendFunc sends Op.Len bytes that Op.Fill writes straight into the
	// stack's send buffer, as SendFunc does, without blocking the
	// submitter: it completes on Op.EC (Result: bytes sent) once the
	// stack has taken them, and again with FlagAcked when Op.Ack asked
	// for the peer's acknowledgement. See sendfunc.go.
	OpSendFunc

	// OpRead … OpFdatasync (fileops.go), from 64 up, go to the stack's
	// file engine, not to a socket.
)

var opNames = map[OpKind]string{OpRecv: "recv", OpRecvMulti: "recv-multishot", OpSend: "send", OpAccept: "accept", OpConnect: "connect", OpClose: "close", OpSendFunc: "sendfunc"}

func (k OpKind) String() string {
	if n, ok := opNames[k]; ok {
		return n
	}
	if k.isFile() {
		return file.Kind(k).String()
	}
	return fmt.Sprintf("OpKind(%d)", uint16(k))
}

// Flags this package sets on completion events, beside evchan.FlagInline
// (completed at submission) and evchan.FlagMore (a multishot continues).
const (
	// FlagEOF marks a receive completion that found the end of the stream:
	// Result is 0 and there is no Buffer. File reads use the same bit at
	// the end of a file or pipe (file.FlagEOF).
	FlagEOF = file.FlagEOF
	// FlagAcked marks the second completion of an OpSend with Op.Ack.
	// Result is the bytes sent; with Errno 0 the peer has acknowledged
	// every one of them, otherwise the acknowledgement will not be
	// reported (ECONNRESET: the connection failed; EBADF: the socket was
	// closed; ECANCELED: Cancel).
	FlagAcked evchan.Flags = 1 << 17
)

// Errors of asynchronous operations.
var (
	// ErrInProgress is what Err reports while an op has not completed
	// (aio_error's EINPROGRESS).
	ErrInProgress = errors.New("api: operation in progress")
	// ErrNotCancelable reports a Cancel of an op that has already
	// completed, been cancelled, or was never submitted.
	ErrNotCancelable = errors.New("api: operation cannot be cancelled")
	// ErrInvalidOp reports an Op that cannot be submitted; the wrapping
	// message says which field is wrong.
	ErrInvalidOp = errors.New("api: invalid operation")
)

// Op is an asynchronous operation's control block. Fill in the exported
// fields and Submit it; do not change it until it completes. An Op is used
// once.
type Op struct {
	Kind   OpKind
	Sock   *Socket
	EC     *evchan.Channel // where the completion goes
	Cookie uint64          // returned in the completion's Cookie
	Data   any             // returned in the completion's Data (the paper's void *data)
	Buf    Buf             // OpSend: the buffer to send; Submit takes it over
	Addr   netip.AddrPort  // OpSend, OpSendFunc: destination (UDP; zero: connected peer). OpConnect: peer
	Ack    bool            // OpSend, OpSendFunc, TCP: complete again (FlagAcked) once the peer has acknowledged the bytes

	// OpSendFunc: Len bytes to send, written by Fill straight into the
	// stack's send buffer. Fill is called with consecutive parts of them
	// (each at most 64 KiB, in order) as the send buffer has room, and
	// returns how many bytes it wrote into each; less than the part's
	// length ends the send there. It runs on the goroutine that calls
	// Submit (when there is room at once) or on a stack worker, with the
	// socket's operation lock held (and, on a stack with
	// stack.Options.TCPAckEvents, the connection's): it must only write
	// into p, not block, and not call the socket or Submit.
	Len  int
	Fill func(p []byte) int
	fill *fillReader // OpSendFunc: the state of Fill across partial writes

	// File operations (fileops.go): OpRead … OpFdatasync. File names the
	// file, offset and memory; Op.Buf, when set, is used instead of
	// File.Mem and taken over at Submit (OpWrite releases it, OpRead hands
	// it back). A value, not a pointer, so a file op costs no allocation
	// beyond its Op.
	File   file.Request
	fileOp file.Op // the file engine's part

	// state moves submitted → done (or cancelled); see the constants.
	state  atomic.Int32
	credit evchan.Reservation // +checklocks:Sock.opMu; the slot for the next completion
	res    int64
	err    error
	done   chan struct{} // closed when the op completes (for Suspend)
	sent   int           // OpSend: bytes written so far
	paused bool          // +checklocks:Sock.opMu; multishot waiting for channel room
	resume atomic.Pointer[resumed]
	// cancelled marks a paused multishot whose Cancel waits for a slot.
	cancelled bool // +checklocks:Sock.opMu

	// OpSend with Ack (ack.go): awaitingAck marks the op between its two
	// completions, waiting until the socket's stack.AckWatch has Acked
	// ackEnd bytes (its Written count after the op's last byte).
	awaitingAck bool   // +checklocks:Sock.opMu
	ackEnd      uint64 // +checklocks:Sock.opMu
}

// resumed carries the slot ReserveFunc granted a paused multishot (or the
// error that ended its wait) from the channel's goroutine to a worker.
type resumed struct {
	r   evchan.Reservation
	err error
}

// finishLocked ends op without a completion event (its channel cannot take
// one) and returns any slot granted to it after it stopped waiting.
func (op *Op) finishLocked(err error) {
	op.err = err
	op.credit.Release()
	op.state.Store(opDone)
	close(op.done)
	if r := op.resume.Swap(nil); r != nil {
		r.r.Release()
	}
}

const (
	opNew int32 = iota
	opSubmitted
	opDone
)

// Err reports an op's status: ErrInProgress until it completes, then nil or
// its error (aio_error).
func (op *Op) Err() error {
	switch op.state.Load() {
	case opNew:
		return fmt.Errorf("%w: not submitted", ErrInvalidOp)
	case opSubmitted:
		return ErrInProgress
	}
	return op.err
}

// Result returns a completed op's result (aio_return): bytes received or
// sent. It returns ErrInProgress before completion.
func (op *Op) Result() (int64, error) {
	if err := op.Err(); err != nil {
		return op.res, err
	}
	return op.res, nil
}

// Suspend waits until at least one of ops has completed, ctx ends, or
// timeout passes (zero: no timeout) — aio_suspend.
func Suspend(ctx context.Context, timeout time.Duration, ops ...*Op) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	for {
		for _, op := range ops {
			if op != nil && op.state.Load() == opDone {
				return nil
			}
		}
		// Wait on the first op still running; any completion re-checks.
		var wait []<-chan struct{}
		for _, op := range ops {
			if op != nil && op.state.Load() == opSubmitted {
				wait = append(wait, op.done)
			}
		}
		if len(wait) == 0 {
			return fmt.Errorf("%w: Suspend with no submitted op", ErrInvalidOp)
		}
		if err := waitAny(ctx, wait); err != nil {
			return err
		}
	}
}

// waitAny waits for one of chans to close, or ctx.
func waitAny(ctx context.Context, chans []<-chan struct{}) error {
	if len(chans) == 1 {
		select {
		case <-chans[0]:
			return nil
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
	fired := make(chan struct{}, 1)
	stop := make(chan struct{})
	defer close(stop)
	for _, c := range chans {
		go func() {
			select {
			case <-c:
				select {
				case fired <- struct{}{}:
				default:
				}
			case <-stop:
			}
		}()
	}
	select {
	case <-fired:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx)
	}
}

// Submit queues ops (lio_listio). With wait false it returns once all are
// queued, each completing later on its channel (or at once, flagged
// FlagInline, when it finds its data ready). With wait true it also waits
// until every op has completed (LIO_WAIT), or ctx ends.
//
// The batch is checked whole first: if any op is invalid (no socket, no
// channel, a closed socket, a send Buf that is not live, a second
// submission), nothing is queued and the error names the op. Completion
// slots are then reserved on each op's channel; if a channel is full, no op
// is queued and the error wraps evchan.ErrFull (with wait, Submit waits for
// room instead).
func (s *Stack) Submit(ctx context.Context, wait bool, ops ...*Op) error {
	for i, op := range ops {
		if err := s.check(op); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	for i, op := range ops {
		var err error
		if wait {
			op.credit, err = op.EC.ReserveContext(ctx, op.completions())
		} else {
			op.credit, err = op.EC.Reserve(op.completions())
		}
		if err != nil {
			for _, o := range ops[:i] {
				o.credit.Release()
			}
			return fmt.Errorf("op %d: completion slot on its channel: %w", i, err)
		}
	}
	s.workers.start(s)
	var files []*Op // handed to the file engine as one batch
	for _, op := range ops {
		op.done = make(chan struct{})
		op.state.Store(opSubmitted)
		if op.Kind == OpSend {
			// Submit takes the buffer over now, so the caller's copies of
			// the Buf are invalid from here on, whatever happens later.
			h, _ := op.Buf.claim()
			op.Buf = Buf{h: h}
		}
		if op.Kind == OpSendFunc {
			op.fill = &fillReader{fill: op.Fill, left: op.Len}
		}
		if op.Kind.isFile() {
			files = append(files, op)
			continue
		}
		op.Sock.queue(op)
	}
	if len(files) > 0 {
		s.submitFiles(files)
	}
	if !wait {
		return nil
	}
	for _, op := range ops {
		select {
		case <-op.done:
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
	return nil
}

// check validates an op before anything is queued.
func (s *Stack) check(op *Op) error {
	switch {
	case op == nil:
		return fmt.Errorf("%w: nil", ErrInvalidOp)
	case op.state.Load() != opNew:
		return fmt.Errorf("%w: already submitted (an Op is used once)", ErrInvalidOp)
	case op.EC == nil:
		return fmt.Errorf("%w: no event channel", ErrInvalidOp)
	case op.Ack && op.Kind != OpSend && op.Kind != OpSendFunc:
		return fmt.Errorf("%w: Ack is for OpSend and OpSendFunc, not %v", ErrInvalidOp, op.Kind)
	case op.Kind.isFile():
		return s.checkFile(op) // fileops.go
	case op.Sock == nil:
		return fmt.Errorf("%w: no socket", ErrInvalidOp)
	case op.Sock.s != s:
		return fmt.Errorf("%w: socket of another stack", ErrInvalidOp)
	case op.EC.Closed():
		return fmt.Errorf("%w: %w", ErrInvalidOp, evchan.ErrClosed)
	case op.Sock.isClosed() && op.Kind != OpClose:
		return fmt.Errorf("%w: %w", ErrInvalidOp, net.ErrClosed)
	}
	switch op.Kind {
	case OpRecv, OpRecvMulti:
		if op.Sock.listening {
			return fmt.Errorf("%w: receive on a listening socket", ErrInvalidOp)
		}
	case OpAccept:
		if !op.Sock.listening {
			return fmt.Errorf("%w: accept on a socket that is not listening", ErrInvalidOp)
		}
	case OpSend:
		if err := op.Buf.Valid(); err != nil {
			return fmt.Errorf("%w: send: %w", ErrInvalidOp, err)
		}
		if op.Ack {
			if err := op.Sock.checkAck(); err != nil {
				return err
			}
		}
	case OpSendFunc:
		if err := op.checkSendFunc(); err != nil { // sendfunc.go
			return err
		}
	case OpConnect:
		if !op.Addr.IsValid() {
			return fmt.Errorf("%w: connect without an address", ErrInvalidOp)
		}
	case OpClose:
	default:
		return fmt.Errorf("%w: kind %v", ErrInvalidOp, op.Kind)
	}
	return nil
}

// completions is the number of completion events op posts: two for a send
// that also reports the peer's acknowledgement, else one.
func (op *Op) completions() int {
	if (op.Kind == OpSend || op.Kind == OpSendFunc) && op.Ack {
		return 2
	}
	return 1
}

// Cancel cancels a submitted op that has not completed (aio_cancel): it
// completes with ECANCELED on its channel, and Err then reports
// ErrCanceled (errors.Is(err, syscall.ECANCELED)). A multishot receive
// ends this way unless the stream ends first. Cancelling an op that
// already completed returns ErrNotCancelable.
func (op *Op) Cancel() error {
	if op.Kind.isFile() {
		if op.state.Load() != opSubmitted || !op.fileOp.Cancel(ErrCanceled) {
			return ErrNotCancelable
		}
		return nil
	}
	sock := op.Sock
	if sock == nil || op.state.Load() != opSubmitted {
		return ErrNotCancelable
	}
	sock.opMu.Lock()
	defer sock.opMu.Unlock()
	if op.cancelled {
		return ErrNotCancelable
	}
	if op.paused {
		// A multishot waiting for room holds no slot for its final event.
		// Take the slot if it has just been granted; otherwise the
		// cancellation completes when the channel has room (see
		// serveRecvLocked), so the final event is never lost.
		r := op.resume.Swap(nil)
		if r == nil {
			op.cancelled = true
			return nil
		}
		op.paused = false
		if r.err != nil {
			sock.unqueueLocked(op)
			op.finishLocked(r.err)
			return nil
		}
		op.credit, _ = r.r.Split(r.r.Len())
	}
	if !sock.unqueueLocked(op) {
		return ErrNotCancelable
	}
	op.completeLocked(evchan.Event{Errno: syscall.ECANCELED}, ErrCanceled)
	return nil
}

// completeLocked posts op's final completion with its reserved slot and
// marks it done. ev's Source, Op, Cookie and Data are filled in here. Err
// and Result are final before the event is posted, so a consumer that
// takes the event sees them (as fileCompleter does for file ops).
//
// +checklocks:op.Sock.opMu
func (op *Op) completeLocked(ev evchan.Event, err error) {
	if op.awaitingAck {
		// The second completion of a send with Ack (ack.go), whatever
		// ends it: acknowledgement, failure, close or Cancel.
		ev.Flags |= FlagAcked
		ev.Result = op.res
	}
	op.res, op.err = ev.Result, err
	op.state.Store(opDone)
	op.post(ev)
	op.credit.Release()
	close(op.done)
	op.releaseBuf()
}

// releaseBuf frees the Buf a send took over at Submit, once the stack has
// its bytes (or the send failed).
func (op *Op) releaseBuf() {
	if op.Kind == OpSend && op.Buf.h != nil {
		op.Buf.h.release()
		op.Buf = Buf{}
	}
}

// post queues one completion event for op, spending its reserved slot.
func (op *Op) post(ev evchan.Event) {
	ev.Source = evchan.SourceNetOp
	ev.Op = uint16(op.Kind)
	ev.Cookie, ev.Data = op.Cookie, op.Data
	if err := op.credit.Post(ev); err != nil {
		// The channel was closed under us: whatever the event carried
		// is ours to release.
		releaseCarried(ev)
	}
}

// releaseCarried frees what an undeliverable completion carried.
func releaseCarried(ev evchan.Event) {
	switch v := ev.Buffer.(type) {
	case *bufHandle:
		Buf{h: v, gen: v.gen.Load()}.Release()
	case *Socket:
		v.Close()
	}
}

// BufOf returns the buffer a receive completion handed over; the consumer
// owns it and must Release it. ok is false for events that carry none.
func BufOf(ev evchan.Event) (b Buf, ok bool) {
	h, ok := ev.Buffer.(*bufHandle)
	if !ok {
		return Buf{}, false
	}
	return Buf{h: h, gen: h.gen.Load()}, true
}

// SocketOf returns the socket an accept completion carries; the consumer
// owns it and must Close it.
func SocketOf(ev evchan.Event) (*Socket, bool) {
	s, ok := ev.Buffer.(*Socket)
	return s, ok
}

// errnoOf turns an operation's error into the completion's errno.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e
	case errors.Is(err, net.ErrClosed):
		return syscall.EBADF
	case errors.Is(err, io.EOF):
		return 0
	}
	return syscall.EIO
}

// workers is the stack's fixed set of goroutines that serve sockets with
// asynchronous operations: a socket whose endpoint reports readiness (or
// whose association or channel regains room) is queued once, and the next
// free worker runs its ready operations. No goroutine per connection.
type workers struct {
	once  sync.Once
	mu    sync.Mutex
	cond  *sync.Cond
	queue []*Socket // +checklocks:mu; each at most once (Socket.queued)
	stop  bool      // +checklocks:mu
	wg    sync.WaitGroup
	n     int
}

func (w *workers) start(s *Stack) {
	w.once.Do(func() {
		w.cond = sync.NewCond(&w.mu)
		w.n = s.opts.Workers
		for i := 0; i < w.n; i++ {
			w.wg.Add(1)
			go w.run()
		}
	})
}

// kick queues sock for a worker unless it is queued already.
func (w *workers) kick(sock *Socket) {
	if !sock.queued.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	if w.stop || w.cond == nil {
		w.mu.Unlock()
		sock.queued.Store(false)
		return
	}
	w.queue = append(w.queue, sock)
	w.mu.Unlock()
	w.cond.Signal()
}

func (w *workers) run() {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.stop {
			w.cond.Wait()
		}
		if w.stop {
			w.mu.Unlock()
			return
		}
		sock := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()
		// Clear the flag before serving: readiness that arrives while we
		// serve queues the socket again, so nothing is missed.
		sock.queued.Store(false)
		sock.serve()
	}
}

// close stops the workers and waits for them.
func (w *workers) close() {
	w.mu.Lock()
	w.stop = true
	w.queue = nil
	w.mu.Unlock()
	if w.cond != nil {
		w.cond.Broadcast()
	}
	w.wg.Wait()
}
