package api

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/evchan"
)

// File, pipe and FIFO operations go through the same Ops, Submit, Cancel,
// Suspend and event channels as sockets, so one inner loop serves a
// program's files beside its network I/O. An Op names the file, offset
// and memory in Op.File (a file.Request) and may hand over a Buf instead
// of Request.Mem; the stack's file engine (package api/file, whose doc
// says what the completion events carry) runs it and the completion is
// posted on Op.EC with Source evchan.SourceFileOp.
//
// Op.Buf, when set, is taken over at Submit: OpWrite releases it when the
// write completes (like OpSend), so a Buf received from a socket is
// written to a file and freed with no copy in user space; OpRead needs a
// writable Buf (from Stack.Reserve) and hands it back in the completion's
// Buffer (BufOf), Result bytes filled in from its start, also when the
// read failed.

// File operations. Their events have Source SourceFileOp.
const (
	OpRead      = OpKind(file.Read)      // read Request.Mem or into Buf at Offset (pread; -1: read)
	OpWrite     = OpKind(file.Write)     // write Request.Mem or Buf at Offset (pwrite; -1: write); takes a Buf over
	OpReadv     = OpKind(file.Readv)     // read into Request.Iov at Offset (preadv)
	OpWritev    = OpKind(file.Writev)    // write Request.Iov at Offset (pwritev)
	OpFsync     = OpKind(file.Fsync)     // fsync(2)
	OpFdatasync = OpKind(file.Fdatasync) // fdatasync(2)
)

func (k OpKind) isFile() bool { return file.Kind(k).Valid() }

// ConfigureFiles starts the stack's file engine with cfg (see
// file.Engine.Configure). Call it before the first file op; without it
// the engine starts with the defaults (or Options.Files) at the first one.
func (s *Stack) ConfigureFiles(cfg file.Config) error { return s.files.Configure(cfg) }

// FileEngine names the engine that runs file ops, "io_uring" or
// "workers", with the reason when io_uring or fixed buffers were refused
// (see file.Engine.Name).
func (s *Stack) FileEngine() string { return s.files.Name() }

// FileCounters returns a snapshot of the file engine's books.
func (s *Stack) FileCounters() file.Counters { return s.files.Counters() }

// checkFile validates a file op before anything is queued (Stack.check).
func (s *Stack) checkFile(op *Op) error {
	if op.EC.Closed() {
		return fmt.Errorf("%w: %w", ErrInvalidOp, evchan.ErrClosed)
	}
	hasBuf := op.Buf.h != nil
	if hasBuf {
		if op.Kind != OpRead && op.Kind != OpWrite {
			return fmt.Errorf("%w: %v takes no Buf", ErrInvalidOp, op.Kind)
		}
		if err := op.Buf.Valid(); err != nil {
			return fmt.Errorf("%w: %v: %w", ErrInvalidOp, op.Kind, err)
		}
		if op.Kind == OpRead && op.Buf.h.kind != kindReserved {
			return fmt.Errorf("%w: read into a received Buf (read-only; use Stack.Reserve)", ErrInvalidOp)
		}
	}
	if err := s.files.Check(file.Kind(op.Kind), &op.File, hasBuf); err != nil {
		if errors.Is(err, evchan.ErrFull) {
			return err // backpressure, not a bad op
		}
		return fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	return nil
}

// submitFiles hands checked file ops, whose completion slots are reserved
// and done channels made, to the engine as one batch.
func (s *Stack) submitFiles(ops []*Op) {
	run := make([]*file.Op, 0, len(ops))
	for _, op := range ops {
		fop := &op.fileOp
		*fop = file.Op{Kind: file.Kind(op.Kind), Req: &op.File, Completer: (*fileCompleter)(op), Done: op.done}
		if op.Buf.h != nil {
			h, ok := op.Buf.claim()
			op.Buf = Buf{h: h}
			if !ok || (op.Kind == OpRead && h.kind != kindReserved) {
				// Released (or handed over) between check and now.
				s.files.Fail(fop, syscall.EINVAL, fmt.Errorf("%v: %w", op.Kind, ErrInvalidBuffer))
				continue
			}
			fop.Buf = h.data
			switch h.kind {
			case kindReserved:
				fop.From, fop.Pool = file.FromPool, h.pb
			case kindCopied:
				fop.From, fop.Pool = file.FromReceivedCopy, h.pb
			case kindView:
				fop.From = file.FromReceived
			}
		}
		run = append(run, fop)
	}
	s.files.Submit(run...)
}

// fileCompleter is an Op as its file op's file.Completer.
type fileCompleter Op

// CompleteFile hands a read's Buf back in the event or frees a write's,
// then posts the completion with the op's reserved slot and marks the op
// done (the engine closes op.done after). Err and Result are final before
// the event is posted, so a consumer that takes the event sees them.
func (c *fileCompleter) CompleteFile(ev evchan.Event, err error) {
	op := (*Op)(c)
	if h := op.Buf.h; h != nil {
		op.Buf = Buf{}
		if op.Kind == OpRead {
			ev.Buffer = h
		} else {
			// The write is done with the Buf: free it before the event, so
			// that whoever sees the completion finds the memory back.
			h.release()
		}
	}
	ev.Cookie, ev.Data = op.Cookie, op.Data
	op.res, op.err = ev.Result, err
	op.state.Store(opDone)
	if perr := op.credit.Post(ev); perr != nil {
		// The channel was closed under us: what the event carried is ours.
		releaseCarried(ev)
	}
	op.credit.Release()
}
