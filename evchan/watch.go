package evchan

import (
	"fmt"
	"sync"
)

// FDWatch delivers readiness of a file descriptor (socket, pipe, tty,
// eventfd, another channel's FD…) to a channel as SourceFDReady events, so
// that one channel carries a program's fds together with its timers,
// locks and completions (§7). All watches share one epoll poller
// goroutine per process.
//
// Readiness is edge-triggered (EPOLLET): an event means the fd became
// ready for something in Op since the last event; the consumer must then
// read (or write) until EAGAIN before it can count on another event. While
// an event is queued, further edges merge into it: Op is the union of the
// readiness seen (Hangup and Error are always reported) and Result counts
// the edges. Cookie is the fd. An edge that finds the channel full is
// reported by an Overflow event.
type FDWatch struct {
	ch   *Channel
	fd   int
	n    *Notifier
	pw   *pollWatch
	once sync.Once
}

var _ stopper = (*FDWatch)(nil)

// WatchFD starts watching fd for events (any of Readable, Writable,
// Priority, ReadHangup) and posts SourceFDReady events to ec carrying data
// in Event.Data. The watch does not own fd: call Stop before closing fd
// (closing it first removes it from the poller silently, and the number
// may be reused). It returns ErrInvalid for a negative fd or an empty
// mask, ErrClosed if ec is closed, ErrUnsupported outside Linux, or the
// error of epoll_ctl (EPERM for a regular file, for example).
func WatchFD(fd int, events FDEvents, ec *Channel, data any) (*FDWatch, error) {
	if events&(Readable|Writable|Priority|ReadHangup) == 0 {
		return nil, fmt.Errorf("evchan: watch fd %d for %v: %w", fd, events, ErrInvalid)
	}
	n, err := ec.NewNotifier(Event{Source: SourceFDReady, Cookie: uint64(fd), Data: data})
	if err != nil {
		return nil, err
	}
	if ec.Closed() {
		return nil, ErrClosed
	}
	w := &FDWatch{ch: ec, fd: fd, n: n}
	w.pw, err = procPoller.add(fd, events, false, func(ready FDEvents) { n.Notify(uint16(ready)) })
	if err != nil {
		return nil, err
	}
	// Bind to the channel last, so that Close never sees a half-made
	// watch; readiness before that goes to n as usual.
	if err := ec.addSource(w); err != nil {
		procPoller.remove(w.pw)
		return nil, err
	}
	return w, nil
}

// FD returns the watched fd.
func (w *FDWatch) FD() int { return w.fd }

// Stop ends the watch; when it returns no further event will be posted.
// Events already queued stay queued. Stop is idempotent.
func (w *FDWatch) Stop() {
	w.once.Do(func() {
		procPoller.remove(w.pw)
		w.ch.removeSource(w)
	})
}

// stopForClose implements stopper.
func (w *FDWatch) stopForClose() { w.Stop() }
