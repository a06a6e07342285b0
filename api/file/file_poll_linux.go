package file

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdPoller parks the worker pool's stream ops that would block (an empty
// pipe, a full one) until their fd is ready, in one epoll set: no worker
// waits for a pipe. The epoll fd itself sits in Go's poller, so its
// goroutine is parked, not a thread blocked in epoll_wait.
//
// Each fd with waiting ops is registered once, EPOLLONESHOT, for the union
// of what its ops wait for; when it fires, all of them go back to the
// workers (those that still find nothing come back) and the fd is
// deregistered.
type fdPoller struct {
	ready func([]*Op)   // hands ready ops back to the workers
	ep    *os.File      // the epoll set, in Go's poller
	epfd  int           // its descriptor, valid until stop closes ep
	done  chan struct{} // closed when loop returns

	mu  sync.Mutex
	fds map[int][]*Op // +checklocks:mu; registered fds and their waiting ops
}

func newFDPoller(ready func([]*Op)) (*fdPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	p := &fdPoller{ready: ready, ep: os.NewFile(uintptr(epfd), "zcnet-file-epoll"), epfd: epfd, done: make(chan struct{}), fds: map[int][]*Op{}}
	rc, err := p.ep.SyscallConn()
	if err != nil {
		p.ep.Close()
		return nil, err
	}
	go p.loop(rc)
	return p, nil
}

// pollEvents is what an op waits for.
func pollEvents(ops []*Op) uint32 {
	var ev uint32 = unix.EPOLLONESHOT
	for _, op := range ops {
		if op.Kind.isWrite() {
			ev |= unix.EPOLLOUT
		} else {
			ev |= unix.EPOLLIN | unix.EPOLLRDHUP
		}
	}
	return ev
}

// wait parks op until fd is ready. An error means fd cannot be polled
// (EPERM: a regular file), and op was not parked.
func (p *fdPoller) wait(op *Op, fd int, write bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ops, registered := p.fds[fd]
	ops = append(ops, op)
	ev := unix.EpollEvent{Events: pollEvents(ops), Fd: int32(fd)}
	var err error
	if registered {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	} else {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
		if errors.Is(err, syscall.EEXIST) {
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
		}
	}
	if err != nil {
		return fmt.Errorf("epoll_ctl fd %d: %w", fd, err)
	}
	p.fds[fd] = ops
	return nil
}

// remove unparks op (Cancel); false if it is not parked (any more).
func (p *fdPoller) remove(op *Op) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	fd := op.be.fd
	ops := p.fds[fd]
	for i, o := range ops {
		if o == op {
			ops = append(ops[:i], ops[i+1:]...)
			if len(ops) == 0 {
				delete(p.fds, fd)
				unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			} else {
				p.fds[fd] = ops
			}
			return true
		}
	}
	return false
}

// loop hands ready fds' ops back until stop closes the epoll fd.
func (p *fdPoller) loop(rc syscall.RawConn) {
	defer close(p.done)
	evs := make([]unix.EpollEvent, 64)
	for {
		n := 0
		err := rc.Read(func(fd uintptr) bool {
			var err error
			n, err = unix.EpollWait(int(fd), evs, 0)
			if err != nil {
				n = 0
			}
			return n > 0
		})
		if err != nil {
			return
		}
		for _, ev := range evs[:n] {
			fd := int(ev.Fd)
			p.mu.Lock()
			ops := p.fds[fd]
			delete(p.fds, fd)
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			p.mu.Unlock()
			if len(ops) > 0 {
				p.ready(ops)
			}
		}
	}
}

// stop ends the poller and returns the ops still parked.
func (p *fdPoller) stop() []*Op {
	p.mu.Lock()
	var ops []*Op
	for fd, l := range p.fds {
		ops = append(ops, l...)
		delete(p.fds, fd)
	}
	p.mu.Unlock()
	p.ep.Close()
	<-p.done
	return ops
}
