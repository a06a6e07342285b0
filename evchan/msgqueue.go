package evchan

import (
	"context"
	"fmt"
	"sync"
)

// MsgQueue is a bounded in-process message queue of T with the
// notification of POSIX message queues (§7: mq_notify with SIGEV_EC):
// Notify registers a channel to receive one SourceMsgQueue event when a
// message arrives, and the consumer of that event receives the messages
// with TryReceive. Send and Receive also come in blocking forms with a
// context. Methods are safe for concurrent use.
//
// Notification rules, after mq_notify(3):
//   - one registration at a time (ErrBusy otherwise); it is one-shot:
//     it is removed when its event is posted;
//   - the event is posted when a message arrives on an empty queue and no
//     goroutine is blocked in Receive (that goroutine gets the message);
//   - unlike mq_notify, registering on a non-empty queue posts the event
//     at once, which closes the window in which a message that arrived
//     between the last receive and the registration would go unnoticed.
//
// The event has Op OpMsgQueue, Result the number of messages queued when
// it was posted, and the registration's data in Event.Data. Registering
// reserves the event's slot on the channel, so the notification is never
// lost to a full channel.
type MsgQueue[T any] struct {
	mu sync.Mutex
	// buf is the ring of messages, len(buf) == capacity; the queued ones
	// are buf[head], …, buf[(head+n-1)%len(buf)]. +checklocks:mu
	buf     []T
	head, n int // +checklocks:mu
	// closed is set by Close. +checklocks:mu
	closed bool
	// changed is closed (and set to nil) when messages or room appear or
	// the queue closes; blocked Send and Receive wait on it. Created on
	// demand. +checklocks:mu
	changed chan struct{}
	// receivers is the number of goroutines blocked in Receive.
	// +checklocks:mu
	receivers int
	// note is the registered notification, if any. +checklocks:mu
	note *msgNote
}

type msgNote struct {
	res Reservation
	ev  Event
}

// NewMsgQueue returns a queue holding up to capacity messages
// (ErrInvalid unless capacity ≥ 1).
func NewMsgQueue[T any](capacity int) (*MsgQueue[T], error) {
	if capacity < 1 {
		return nil, fmt.Errorf("evchan: message queue capacity %d: %w", capacity, ErrInvalid)
	}
	return &MsgQueue[T]{buf: make([]T, capacity)}, nil
}

// Cap returns the queue's capacity.
func (q *MsgQueue[T]) Cap() int { return len(q.buf) }

// Len returns the number of messages queued.
func (q *MsgQueue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// TrySend queues v if there is room: ErrFull if not, ErrClosed after
// Close.
func (q *MsgQueue[T]) TrySend(v T) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sendLocked(v)
}

// Send queues v, waiting for room until ctx ends or the queue closes.
func (q *MsgQueue[T]) Send(ctx context.Context, v T) error {
	q.mu.Lock()
	for {
		err := q.sendLocked(v)
		if err != ErrFull {
			q.mu.Unlock()
			return err
		}
		if err := q.waitLocked(ctx); err != nil {
			return err
		}
	}
}

func (q *MsgQueue[T]) sendLocked(v T) error {
	if q.closed {
		return ErrClosed
	}
	if q.n == len(q.buf) {
		return ErrFull
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
	if q.n == 1 {
		if q.receivers == 0 {
			q.notifyLocked()
		}
		q.broadcastLocked()
	}
	return nil
}

// TryReceive dequeues the oldest message: ErrEmpty if there is none,
// ErrClosed if there is none and the queue is closed. Messages queued
// before Close can still be received after it.
func (q *MsgQueue[T]) TryReceive() (T, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.receiveLocked()
}

// Receive dequeues the oldest message, waiting for one until ctx ends or
// the queue closes.
func (q *MsgQueue[T]) Receive(ctx context.Context) (T, error) {
	q.mu.Lock()
	for {
		v, err := q.receiveLocked()
		if err != ErrEmpty {
			q.mu.Unlock()
			return v, err
		}
		q.receivers++
		err = q.waitLocked(ctx)
		if err != nil {
			q.mu.Lock()
			q.receivers--
			// A message that skipped the notification because we were
			// waiting for it is now nobody's: notify after all.
			if q.receivers == 0 && q.n > 0 {
				q.notifyLocked()
			}
			q.mu.Unlock()
			return v, err
		}
		q.receivers--
	}
}

func (q *MsgQueue[T]) receiveLocked() (T, error) {
	var zero T
	if q.n == 0 {
		if q.closed {
			return zero, ErrClosed
		}
		return zero, ErrEmpty
	}
	v := q.buf[q.head]
	q.buf[q.head] = zero // do not keep the message alive
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == len(q.buf)-1 {
		q.broadcastLocked() // room for blocked senders
	}
	return v, nil
}

// waitLocked waits for the next change with mu held on entry. It returns
// with mu held and nil, or with mu released and ctx's error.
func (q *MsgQueue[T]) waitLocked(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		q.mu.Unlock()
		return err
	}
	if q.changed == nil {
		q.changed = make(chan struct{})
	}
	ch := q.changed
	q.mu.Unlock()
	select {
	case <-ch:
		q.mu.Lock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *MsgQueue[T]) broadcastLocked() {
	if q.changed != nil {
		close(q.changed)
		q.changed = nil
	}
}

// Notify registers ec to receive one SourceMsgQueue event (see the type's
// documentation), carrying data. It returns ErrBusy if a registration
// exists, ErrClosed if the queue or ec is closed, and ErrFull if ec has
// no room for the event.
func (q *MsgQueue[T]) Notify(ec *Channel, data any) error {
	if ec == nil {
		return fmt.Errorf("evchan: MsgQueue.Notify without a channel: %w", ErrInvalid)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if q.note != nil {
		return ErrBusy
	}
	note := &msgNote{ev: Event{Source: SourceMsgQueue, Op: OpMsgQueue, Data: data}}
	var err error
	if note.res, err = ec.Reserve(1); err != nil {
		return err
	}
	q.note = note
	if q.n > 0 {
		q.note.ev.Flags |= FlagInline
		q.notifyLocked()
	}
	return nil
}

// notifyLocked posts the registered notification, if any, and removes
// the registration.
func (q *MsgQueue[T]) notifyLocked() {
	note := q.note
	if note == nil {
		return
	}
	q.note = nil
	note.ev.Result = int64(q.n)
	note.res.Post(note.ev) // ErrClosed: the channel is gone, nothing to tell
}

// CancelNotify removes the registration and reports whether there was
// one.
func (q *MsgQueue[T]) CancelNotify() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	note := q.note
	if note == nil {
		return false
	}
	q.note = nil
	note.res.Release()
	return true
}

// Close closes the queue: Send fails with ErrClosed, blocked Send and
// Receive calls return, the registration is removed, and the messages
// still queued can be received. Close is idempotent.
func (q *MsgQueue[T]) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	if q.note != nil {
		q.note.res.Release()
		q.note = nil
	}
	q.broadcastLocked()
	return nil
}
