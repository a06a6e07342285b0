// Package aio is a POSIX-AIO-shaped façade over api's file operations,
// for code ported from C (the paper's §2: aio_read and friends with
// SIGEV_EC, completion to an event channel instead of a signal or a
// thread). It owns only the control block and its mapping: each call
// builds one api.Op from the block and submits it with api.Stack.Submit,
// without waiting; the stack's file engine (package api/file) runs it.
//
//	C                                  zcnet
//	struct aiocb                       Aiocb
//	  aio_fildes                         File (os.NewFile wraps a raw fd)
//	  aio_offset                         Offset (-1: the file position)
//	  aio_buf, aio_nbytes                Buf (len is the byte count)
//	  aio_sigevent SIGEV_EC, ec, data    EC, Data, Cookie
//	aio_read, aio_write                Read, Write
//	aio_fsync(O_SYNC / O_DSYNC)        Fsync(s, cb, datasync)
//	lio_listio(LIO_WAIT / LIO_NOWAIT)  ListIO
//	aio_error, aio_return              Aiocb.Error, Aiocb.Return
//	aio_cancel, aio_suspend            Aiocb.Cancel, Suspend
//
// The completion event is the file op's (see package file): Source
// SourceFileOp, Op api.OpRead/OpWrite/OpFsync/OpFdatasync, Result, Errno,
// Cookie, Data. Unlike an api.Op, an Aiocb may be reused once its
// previous operation has completed, as in C.
package aio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/evchan"
)

// Aiocb is an asynchronous I/O control block.
type Aiocb struct {
	File   *os.File        // the file; keep it open until completion
	Offset int64           // file offset; -1: the file position (pipes, FIFOs)
	Buf    []byte          // the memory read into or written from, lent until completion; a pool Buf's Bytes() works
	EC     *evchan.Channel // where the completion goes (SIGEV_EC)
	Data   any             // returned in the completion's Data
	Cookie uint64          // returned in the completion's Cookie

	// LioOpcode is the operation ListIO runs for this block
	// (api.OpRead, api.OpWrite, or 0 to skip it, like LIO_NOP).
	LioOpcode api.OpKind

	op *api.Op // the current (or last) operation; nil before the first
}

// Read starts reading len(cb.Buf) bytes at cb.Offset on s (aio_read).
func Read(s *api.Stack, cb *Aiocb) error { return start(s, cb, api.OpRead) }

// Write starts writing cb.Buf at cb.Offset on s (aio_write).
func Write(s *api.Stack, cb *Aiocb) error { return start(s, cb, api.OpWrite) }

// Fsync starts an fsync (or, with datasync, an fdatasync) of cb.File on s
// (aio_fsync with O_SYNC or O_DSYNC).
func Fsync(s *api.Stack, cb *Aiocb, datasync bool) error {
	if datasync {
		return start(s, cb, api.OpFdatasync)
	}
	return start(s, cb, api.OpFsync)
}

func start(s *api.Stack, cb *Aiocb, kind api.OpKind) error {
	op, err := cb.prepare(kind)
	if err != nil {
		return err
	}
	if err := s.Submit(context.Background(), false, op); err != nil {
		return err
	}
	cb.op = op
	return nil
}

// prepare builds the api.Op for cb's next operation.
func (cb *Aiocb) prepare(kind api.OpKind) (*api.Op, error) {
	if cb == nil {
		return nil, fmt.Errorf("%w: nil Aiocb", api.ErrInvalidOp)
	}
	if cb.op != nil && errors.Is(cb.op.Err(), api.ErrInProgress) {
		return nil, fmt.Errorf("%w: Aiocb still in progress", api.ErrInvalidOp)
	}
	op := &api.Op{Kind: kind, File: file.Request{File: cb.File, Offset: cb.Offset}, EC: cb.EC, Data: cb.Data, Cookie: cb.Cookie}
	if kind == api.OpRead || kind == api.OpWrite {
		op.File.Mem = cb.Buf
	}
	return op, nil
}

// ListIO starts the operations of cbs (each by its LioOpcode) on s as one
// batch (lio_listio): with wait, it returns when all have completed
// (LIO_WAIT) or ctx ends. As with api.Stack.Submit, a batch with an
// invalid block starts nothing.
func ListIO(ctx context.Context, s *api.Stack, wait bool, cbs ...*Aiocb) error {
	ops := make([]*api.Op, 0, len(cbs))
	used := make([]*Aiocb, 0, len(cbs))
	for i, cb := range cbs {
		if cb == nil || cb.LioOpcode == 0 {
			continue
		}
		if cb.LioOpcode != api.OpRead && cb.LioOpcode != api.OpWrite {
			return fmt.Errorf("block %d: %w: LioOpcode %v (OpRead or OpWrite)", i, api.ErrInvalidOp, cb.LioOpcode)
		}
		op, err := cb.prepare(cb.LioOpcode)
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
		ops = append(ops, op)
		used = append(used, cb)
	}
	for i, cb := range used {
		cb.op = ops[i]
	}
	err := s.Submit(ctx, wait, ops...)
	if err != nil && !wait {
		// Nothing was queued: the blocks are free again.
		for _, cb := range used {
			cb.op = nil
		}
	}
	return err
}

// Error returns the status of cb's operation (aio_error): api.ErrInProgress
// until it completes, then nil or its error (with the errno as
// *os.SyscallError, io.EOF for a read at the end).
func (cb *Aiocb) Error() error {
	if cb.op == nil {
		return fmt.Errorf("%w: no operation started", api.ErrInvalidOp)
	}
	return cb.op.Err()
}

// Return returns the bytes cb's operation moved (aio_return), and its
// error as Error does.
func (cb *Aiocb) Return() (int64, error) {
	if cb.op == nil {
		return 0, fmt.Errorf("%w: no operation started", api.ErrInvalidOp)
	}
	return cb.op.Result()
}

// Cancel cancels cb's operation if it has not completed (aio_cancel); it
// then completes with ECANCELED. It returns api.ErrNotCancelable otherwise.
func (cb *Aiocb) Cancel() error {
	if cb.op == nil {
		return api.ErrNotCancelable
	}
	return cb.op.Cancel()
}

// Suspend waits until one of cbs' operations has completed, ctx ends, or
// timeout passes (aio_suspend).
func Suspend(ctx context.Context, timeout time.Duration, cbs ...*Aiocb) error {
	ops := make([]*api.Op, 0, len(cbs))
	for _, cb := range cbs {
		if cb != nil && cb.op != nil {
			ops = append(ops, cb.op)
		}
	}
	return api.Suspend(ctx, timeout, ops...)
}
