package evchan

import "errors"

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrClosed: the channel (or source, or queue) has been closed.
	ErrClosed = errors.New("evchan: closed")

	// ErrFull: no room. From Reserve, a channel without enough free
	// completion slots; from a message queue, a queue at its limit.
	ErrFull = errors.New("evchan: full")

	// ErrNoCredit: a Reservation was asked to post more events than it holds
	// credits for.
	ErrNoCredit = errors.New("evchan: reservation has no credit left")

	// ErrInvalid: a caller passed an argument the call cannot accept.
	ErrInvalid = errors.New("evchan: invalid argument")

	// ErrBusy: a one-shot notification is already registered (mq_notify's
	// EBUSY).
	ErrBusy = errors.New("evchan: notification already registered")

	// ErrNotLocked: Unlock or RUnlock of a lock not held in that mode.
	ErrNotLocked = errors.New("evchan: not locked")

	// ErrEmpty: a non-blocking receive found no message.
	ErrEmpty = errors.New("evchan: empty")

	// ErrUnsupported: the source needs an operating-system facility this
	// platform lacks (eventfd, epoll, POSIX message queues outside Linux).
	ErrUnsupported = errors.New("evchan: not supported on this platform")
)
