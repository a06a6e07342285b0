package dmapool

import "errors"

// Sentinel errors. Every error the package returns wraps one of these with
// context; test for them with errors.Is.
var (
	// ErrExhausted: no free run of slots is large enough for the request.
	// Reserve returns it at once; ReserveContext waits for a Release or Grow.
	ErrExhausted = errors.New("dmapool: pool exhausted")

	// ErrInvalidBuffer: a Buf handle that is not a live part of its pool: the
	// zero Buf, a handle already released (or consumed by Split or Trim), a
	// forged handle, or a handle of another pool. The pool is unchanged.
	ErrInvalidBuffer = errors.New("dmapool: invalid buffer handle")

	// ErrBusy: Close found buffers still outstanding; the pool stays open.
	ErrBusy = errors.New("dmapool: buffers outstanding")

	// ErrClosed: the pool has been closed.
	ErrClosed = errors.New("dmapool: pool closed")

	// ErrSize: a size, split point or trim range out of bounds.
	ErrSize = errors.New("dmapool: bad size")

	// ErrConfig: an invalid Config field.
	ErrConfig = errors.New("dmapool: bad config")

	// ErrPin: PinRequire was asked for and mlock failed (usually
	// RLIMIT_MEMLOCK); the message says which limit and how to raise it.
	ErrPin = errors.New("dmapool: cannot pin memory")

	// ErrHugePages: HugeOn was asked for and neither hugetlb pages nor
	// transparent huge pages are available for this kind of mapping.
	ErrHugePages = errors.New("dmapool: huge pages unavailable")

	// ErrUnsupported: the platform has no implementation (only Linux has).
	ErrUnsupported = errors.New("dmapool: unsupported on this platform")
)
