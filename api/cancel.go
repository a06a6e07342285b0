package api

import (
	"context"
	"syscall"
)

// ErrCanceled is the error of an op that Cancel (aio_cancel) ended, as Err
// and Aiocb.Error report it. It matches the errno its completion event
// carries, errors.Is(err, syscall.ECANCELED) (golang.org/x/sys/unix's
// ECANCELED is the same value), and, for code written against contexts,
// errors.Is(err, context.Canceled).
var ErrCanceled error = canceledError{}

type canceledError struct{}

func (canceledError) Error() string { return "api: operation cancelled (ECANCELED)" }

// Is makes errors.Is match ECANCELED and context.Canceled.
func (canceledError) Is(target error) bool {
	return target == syscall.ECANCELED || target == context.Canceled
}
