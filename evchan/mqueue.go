package evchan

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// PosixMQ is an open POSIX message queue (mq_overview(7)) whose arrivals
// can be delivered to an event channel: the paper's mq_notify with
// SIGEV_EC (§7). Other processes open the same queue by name and send to
// it with mq_send. On Linux the queue descriptor is a file descriptor,
// and Notify watches it with the process's epoll poller instead of
// asking the kernel for a signal or a thread.
//
// The descriptor is non-blocking: Send returns ErrFull on a full queue,
// Receive ErrEmpty on an empty one; a program waits with Notify. Methods
// are safe for concurrent use. Available on Linux; elsewhere OpenPosixMQ
// returns ErrUnsupported.
type PosixMQ struct {
	name string

	mu sync.Mutex
	// closed is set when Close begins. +checklocks:mu
	closed bool
	// fd is the queue descriptor; -1 once Close has closed it.
	// +checklocks:mu
	fd int
	// pw is the poller registration, made by the first Notify and kept
	// (disarmed between notifications) until Close. +checklocks:mu
	pw *pollWatch
	// note is the armed notification, if any. +checklocks:mu
	note *msgNote
}

// MQAttr holds a queue's attributes (struct mq_attr).
type MQAttr struct {
	MaxMsg  int64 // most messages the queue holds (mq_maxmsg)
	MsgSize int64 // largest message, in bytes (mq_msgsize)
	CurMsgs int64 // messages queued now (mq_curmsgs); ignored by OpenPosixMQ
}

// MQPrioMax bounds message priorities: 0 ≤ prio < MQPrioMax (Linux's
// MQ_PRIO_MAX).
const MQPrioMax = 32768

// checkMQName validates a queue name: "/" followed by 1 to 254 characters,
// none of them '/' or NUL. It returns the name without the slash, as the
// system call wants it.
func checkMQName(name string) (string, error) {
	if len(name) < 2 || len(name) > 255 || name[0] != '/' || strings.ContainsAny(name[1:], "/\x00") {
		return "", fmt.Errorf("evchan: message queue name %q: want \"/name\" of 1-254 characters without '/': %w", name, ErrInvalid)
	}
	return name[1:], nil
}

// OpenPosixMQ opens the message queue name ("/something") with flag
// (os.O_RDONLY, os.O_WRONLY or os.O_RDWR, with os.O_CREATE and os.O_EXCL)
// and, when creating it, permissions perm and attributes attr (nil: the
// system's defaults, /proc/sys/fs/mqueue/msg_default and
// msgsize_default). Errors from the system call (ENOENT, EEXIST, EACCES,
// EINVAL for attributes beyond the limits, EMFILE) are wrapped.
func OpenPosixMQ(name string, flag int, perm os.FileMode, attr *MQAttr) (*PosixMQ, error) {
	sysName, err := checkMQName(name)
	if err != nil {
		return nil, err
	}
	var maxmsg, msgsize int64
	if attr != nil {
		if attr.MaxMsg < 1 || attr.MsgSize < 1 {
			return nil, fmt.Errorf("evchan: message queue attributes %+v: %w", *attr, ErrInvalid)
		}
		maxmsg, msgsize = attr.MaxMsg, attr.MsgSize
	}
	fd, err := mqOpen(sysName, flag, uint32(perm.Perm()), maxmsg, msgsize)
	if err != nil {
		return nil, fmt.Errorf("evchan: mq_open %s: %w", name, err)
	}
	return &PosixMQ{name: name, fd: fd}, nil
}

// UnlinkPosixMQ removes the queue name; processes that have it open keep
// using it until they close it.
func UnlinkPosixMQ(name string) error {
	sysName, err := checkMQName(name)
	if err != nil {
		return err
	}
	if err := mqUnlink(sysName); err != nil {
		return fmt.Errorf("evchan: mq_unlink %s: %w", name, err)
	}
	return nil
}

// Name returns the queue's name.
func (m *PosixMQ) Name() string { return m.name }

// FD returns the queue descriptor (-1 after Close). It stays owned by m.
func (m *PosixMQ) FD() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fd
}

// Send queues msg with priority prio (0 ≤ prio < MQPrioMax). It returns
// ErrFull if the queue is full, ErrClosed after Close, or the system
// call's error (EMSGSIZE for a message longer than MsgSize, EBADF for a
// queue opened read-only).
func (m *PosixMQ) Send(msg []byte, prio uint) error {
	if prio >= MQPrioMax {
		return fmt.Errorf("evchan: message priority %d: %w", prio, ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := mqSend(m.fd, msg, prio); err != nil {
		if isEAGAIN(err) {
			return ErrFull
		}
		return fmt.Errorf("evchan: mq_send %s: %w", m.name, err)
	}
	return nil
}

// Receive dequeues the oldest message of the highest priority into buf,
// which must hold MsgSize bytes, and returns its length and priority. It
// returns ErrEmpty if the queue is empty, ErrClosed after Close, or the
// system call's error (EMSGSIZE for a short buf).
func (m *PosixMQ) Receive(buf []byte) (n int, prio uint, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, 0, ErrClosed
	}
	n, prio, err = mqReceive(m.fd, buf)
	if err != nil {
		if isEAGAIN(err) {
			return 0, 0, ErrEmpty
		}
		return 0, 0, fmt.Errorf("evchan: mq_receive %s: %w", m.name, err)
	}
	return n, prio, nil
}

// Attr returns the queue's attributes, CurMsgs included.
func (m *PosixMQ) Attr() (MQAttr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return MQAttr{}, ErrClosed
	}
	maxmsg, msgsize, cur, err := mqGetAttr(m.fd)
	if err != nil {
		return MQAttr{}, fmt.Errorf("evchan: mq_getattr %s: %w", m.name, err)
	}
	return MQAttr{MaxMsg: maxmsg, MsgSize: msgsize, CurMsgs: cur}, nil
}

// Notify registers ec to receive one SourceMsgQueue event with Op
// OpPosixMQ when the queue holds a message, carrying data in Event.Data,
// the descriptor in Cookie and the number of messages queued in Result.
// Like mq_notify it is one-shot (register again after each event) and
// there is one registration per PosixMQ (ErrBusy); unlike mq_notify it
// fires at once if the queue is already non-empty, so a message that
// arrived before the registration is not missed, and it also fires when
// another receiver is waiting. The event's slot is reserved now: Notify
// returns ErrFull if ec has no room, ErrClosed if m or ec is closed.
func (m *PosixMQ) Notify(ec *Channel, data any) error {
	if ec == nil {
		return fmt.Errorf("evchan: PosixMQ.Notify without a channel: %w", ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.note != nil {
		return ErrBusy
	}
	note := &msgNote{ev: Event{Source: SourceMsgQueue, Op: OpPosixMQ, Cookie: uint64(m.fd), Data: data}}
	var err error
	if note.res, err = ec.Reserve(1); err != nil {
		return err
	}
	m.note = note
	if m.pw == nil {
		m.pw, err = procPoller.add(m.fd, Readable, true, m.fire)
	} else {
		err = procPoller.rearm(m.pw, Readable, true)
	}
	if err != nil {
		m.note = nil
		note.res.Release()
		return err
	}
	return nil
}

// fire runs on the poller goroutine when the armed descriptor is
// readable; the oneshot registration is disarmed by then.
func (m *PosixMQ) fire(FDEvents) {
	m.mu.Lock()
	defer m.mu.Unlock()
	note := m.note
	if note == nil {
		return
	}
	m.note = nil
	if _, _, cur, err := mqGetAttr(m.fd); err == nil {
		note.ev.Result = cur
	}
	note.res.Post(note.ev) // ErrClosed: the channel is gone, nothing to tell
}

// CancelNotify removes the registration and reports whether there was
// one.
func (m *PosixMQ) CancelNotify() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	note := m.note
	if note == nil {
		return false
	}
	m.note = nil
	note.res.Release()
	return true
}

// Close removes the registration and closes the descriptor (the queue
// itself lives on until unlinked and closed everywhere). It is
// idempotent.
func (m *PosixMQ) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	if m.note != nil {
		m.note.res.Release()
		m.note = nil
	}
	pw := m.pw
	m.pw = nil
	m.mu.Unlock()
	// Unregister before closing, so that epoll never holds a closed (or
	// reused) descriptor; fire may run until remove returns and finds no
	// note.
	if pw != nil {
		procPoller.remove(pw)
	}
	m.mu.Lock()
	fd := m.fd
	m.fd = -1
	m.mu.Unlock()
	if err := mqClose(fd); err != nil {
		return fmt.Errorf("evchan: close %s: %w", m.name, err)
	}
	return nil
}
