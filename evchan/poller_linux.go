package evchan

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// This file wraps epoll(7) for fd readiness: one process-wide poller with
// one goroutine blocked in epoll_wait, shared by every WatchFD and PosixMQ
// notification of every channel. The goroutine starts with the first
// watch and exits when the last watch is removed, so a program (or test)
// that stops its watches leaves no goroutine behind.
//
// Each watch is identified in epoll by a 64-bit id (in epoll_event.data),
// never by its fd: an event for a watch that was removed meanwhile, or for
// an fd number reused by another file, finds no watch and is dropped.
//
// Locks: life serialises start/stop and is held by add and remove; mu
// guards the id map and the epoll set and is held only briefly, never
// while taking another lock. A watch's mu is held by the loop while it
// runs the callback (which may take its source's lock, and that source
// may call add or rearm), and by remove while it marks the watch stopped.
// The loop never takes life, so remove may wait for a callback, or for the
// loop to exit, while holding life.

// pollWatch is one registration.
type pollWatch struct {
	id uint64
	fd int
	mu sync.Mutex
	// stopped is set by remove; afterwards cb is not called. +checklocks:mu
	stopped bool
	// cb is called on the poller goroutine with mu held; it must not
	// block or call remove.
	cb func(ready FDEvents)
}

type poller struct {
	// life serialises starting and stopping the loop goroutine.
	life sync.Mutex
	// running: the loop goroutine runs and epfd/wakefd are open.
	// +checklocks:life (written under life and mu; read under either)
	running bool
	// epfd, wakefd are valid while running. Written under life and mu.
	epfd, wakefd int
	// done is closed when the loop goroutine returns. +checklocks:life
	done chan struct{}
	// stopping tells the loop that a wake-up on wakefd means "exit".
	stopping atomic.Bool
	// loopErr is the error that ended the loop unexpectedly, if any.
	loopErr atomic.Pointer[error]

	mu sync.Mutex
	// watches maps ids to registrations. +checklocks:mu
	watches map[uint64]*pollWatch
	// nextID is the id of the next watch; 0 is the wake eventfd.
	// +checklocks:mu
	nextID uint64
}

// procPoller is the process's poller.
var procPoller poller

const pollWakeID = 0

// add registers fd for events (oneshot: disarmed after one report until
// rearm; otherwise edge-triggered) and calls cb on readiness.
func (p *poller) add(fd int, events FDEvents, oneshot bool, cb func(FDEvents)) (*pollWatch, error) {
	if fd < 0 {
		return nil, fmt.Errorf("evchan: watch fd %d: %w", fd, ErrInvalid)
	}
	p.life.Lock()
	defer p.life.Unlock()
	if errp := p.loopErr.Load(); errp != nil {
		return nil, fmt.Errorf("evchan: fd poller failed: %w", *errp)
	}
	if !p.running {
		if err := p.startLocked(); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	p.nextID++
	w := &pollWatch{id: p.nextID, fd: fd, cb: cb}
	p.watches[w.id] = w
	p.mu.Unlock()

	ev := epollEvent(w.id, events, oneshot)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.watches, w.id)
		left := len(p.watches)
		p.mu.Unlock()
		if left == 0 {
			p.stopLocked()
		}
		return nil, fmt.Errorf("evchan: epoll_ctl(ADD, fd %d): %w", fd, err)
	}
	return w, nil
}

// rearm re-enables a oneshot watch (or changes its events).
func (p *poller) rearm(w *pollWatch, events FDEvents, oneshot bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches[w.id] != w {
		return ErrClosed
	}
	ev := epollEvent(w.id, events, oneshot)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, w.fd, &ev); err != nil {
		return fmt.Errorf("evchan: epoll_ctl(MOD, fd %d): %w", w.fd, err)
	}
	return nil
}

// remove unregisters w. When it returns, w's callback is not running and
// will not run again. It must not be called from a callback.
func (p *poller) remove(w *pollWatch) {
	p.life.Lock()
	defer p.life.Unlock()
	p.mu.Lock()
	if p.watches[w.id] != w {
		p.mu.Unlock()
		return
	}
	delete(p.watches, w.id)
	left := len(p.watches)
	// ENOENT/EBADF: the fd was closed first (which removed it from the
	// epoll set); the id check in the loop covers stray events.
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	p.mu.Unlock()

	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	if left == 0 {
		p.stopLocked()
	}
}

// startLocked creates the epoll set and the wake eventfd and starts the
// loop.
func (p *poller) startLocked() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("evchan: epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("evchan: eventfd: %w", err)
	}
	ev := epollEvent(pollWakeID, Readable, false)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return fmt.Errorf("evchan: epoll_ctl(ADD, wake fd): %w", err)
	}
	p.mu.Lock()
	p.epfd, p.wakefd = epfd, wakefd
	if p.watches == nil {
		p.watches = make(map[uint64]*pollWatch)
	}
	p.running = true
	p.mu.Unlock()
	p.done = make(chan struct{})
	go p.loop(epfd, p.done)
	return nil
}

// stopLocked makes the loop exit, waits for it and closes the fds.
func (p *poller) stopLocked() {
	if !p.running {
		return
	}
	p.stopping.Store(true)
	eventFDRaise(p.wakefd)
	<-p.done
	p.stopping.Store(false)
	p.mu.Lock()
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
	p.epfd, p.wakefd = -1, -1
	p.running = false
	p.mu.Unlock()
}

func (p *poller) loop(epfd int, done chan struct{}) {
	defer close(done)
	evs := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(epfd, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			p.loopErr.Store(&err)
			return
		}
		for i := range evs[:n] {
			id := epollID(&evs[i])
			if id == pollWakeID {
				if p.stopping.Load() {
					return
				}
				continue
			}
			p.mu.Lock()
			w := p.watches[id]
			p.mu.Unlock()
			if w == nil {
				continue // removed meanwhile
			}
			w.mu.Lock()
			if !w.stopped {
				w.cb(fromEpoll(evs[i].Events))
			}
			w.mu.Unlock()
		}
	}
}

// epollEvent builds the epoll_event for a watch: the id in the 64-bit data
// word (the Fd and Pad fields of unix.EpollEvent on every architecture).
func epollEvent(id uint64, events FDEvents, oneshot bool) unix.EpollEvent {
	var e uint32
	if events&Readable != 0 {
		e |= unix.EPOLLIN
	}
	if events&Writable != 0 {
		e |= unix.EPOLLOUT
	}
	if events&Priority != 0 {
		e |= unix.EPOLLPRI
	}
	if events&ReadHangup != 0 {
		e |= unix.EPOLLRDHUP
	}
	if oneshot {
		e |= unix.EPOLLONESHOT
	} else {
		e |= unix.EPOLLET
	}
	return unix.EpollEvent{Events: e, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
}

func epollID(e *unix.EpollEvent) uint64 {
	return uint64(uint32(e.Fd)) | uint64(uint32(e.Pad))<<32
}

// fromEpoll maps epoll's bits to FDEvents.
func fromEpoll(e uint32) FDEvents {
	var m FDEvents
	if e&unix.EPOLLIN != 0 {
		m |= Readable
	}
	if e&unix.EPOLLOUT != 0 {
		m |= Writable
	}
	if e&unix.EPOLLPRI != 0 {
		m |= Priority
	}
	if e&unix.EPOLLRDHUP != 0 {
		m |= ReadHangup
	}
	if e&unix.EPOLLHUP != 0 {
		m |= Hangup
	}
	if e&unix.EPOLLERR != 0 {
		m |= Error
	}
	return m
}
