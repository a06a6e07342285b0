package file

import (
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/zcnet/zcnet/evchan"
)

// The worker-pool engine, for kernels without io_uring and containers that
// forbid it. Flow of a file op:
//
//  1. Submit → Engine.submit → workerBackend.submit: the op joins the
//     queue (FIFO) and one idle worker is woken.
//  2. A worker takes it and makes the system call (runFileOp,
//     file_sys_linux.go): pread/pwrite/preadv/pwritev at an offset, fsync,
//     fdatasync; for streams (offset -1) readv2/writev2 with RWF_NOWAIT, so
//     that an empty pipe does not hold a worker.
//  3. A stream that would block goes to the poller (one epoll set, one
//     goroutine, file_poll_linux.go) and back to the front of the queue
//     when it is ready; a file the poller cannot watch (a regular file read
//     at its position) is read blocking instead.
//  4. The worker posts the completion.
//
// Workers and the poller are a fixed set of goroutines, started with the
// engine. Cancel removes an op that is queued or polling; one inside its
// system call runs to completion.

// workerBackend is the worker-pool engine.
type workerBackend struct {
	e    *Engine
	poll *fdPoller // nil where streams cannot be polled: they block a worker

	// noNowaitRead and noNowaitWrite are set once a file said it knows no
	// RWF_NOWAIT: submitters stop trying reads (writes) inline.
	noNowaitRead, noNowaitWrite atomic.Bool

	mu      sync.Mutex
	work    sync.Cond // on mu: signalled when queue grows or closing is set
	queue   []*Op     // +checklocks:mu; FIFO
	closing bool      // +checklocks:mu
	wg      sync.WaitGroup
}

func newWorkerBackend(e *Engine, cfg Config) (backend, error) {
	b := &workerBackend{e: e}
	b.work.L = &b.mu
	var err error
	if b.poll, err = newFDPoller(b.ready); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Workers; i++ {
		b.wg.Add(1)
		go b.worker()
	}
	return b, nil
}

// submit implements backend. Reads and writes are first tried on the
// submitter's goroutine without blocking (RWF_NOWAIT: the page cache, a
// pipe with data or room), as io_uring tries them inline; what would
// block goes to the workers.
func (b *workerBackend) submit(ops []*Op) {
	if b.poll != nil {
		queue := ops[:0]
		for _, op := range ops {
			skip := &b.noNowaitRead
			if op.Kind.isWrite() {
				skip = &b.noNowaitWrite
			}
			if !skip.Load() {
				res, ok, unsupported := tryNowait(op)
				if ok {
					b.e.finish(op, res, 0, nil, evchan.FlagInline)
					continue
				}
				if unsupported {
					skip.Store(true)
				}
			}
			queue = append(queue, op)
		}
		if ops = queue; len(ops) == 0 {
			return
		}
	}
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		for _, op := range ops {
			b.e.finish(op, 0, syscall.ECANCELED, ErrClosed, evchan.FlagInline)
		}
		return
	}
	for _, op := range ops {
		op.be.phase = phaseQueued
	}
	b.queue = append(b.queue, ops...)
	b.mu.Unlock()
	if len(ops) == 1 {
		b.work.Signal()
	} else {
		b.work.Broadcast()
	}
}

// ready puts ops whose streams became ready back at the front of the
// queue (the poller calls it).
func (b *workerBackend) ready(ops []*Op) {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		for _, op := range ops {
			b.e.finish(op, 0, syscall.ECANCELED, ErrClosed, 0)
		}
		return
	}
	for _, op := range ops {
		op.be.phase = phaseQueued
	}
	b.queue = append(ops[:len(ops):len(ops)], b.queue...)
	b.mu.Unlock()
	b.work.Broadcast()
}

func (b *workerBackend) worker() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closing {
			b.work.Wait()
		}
		if b.closing {
			b.mu.Unlock()
			return
		}
		op := b.queue[0]
		b.queue[0] = nil
		b.queue = b.queue[1:]
		op.be.phase = phaseRunning
		b.mu.Unlock()
		b.run(op)
	}
}

// run makes op's system call and completes it, or parks it with the
// poller.
func (b *workerBackend) run(op *Op) {
	nowait := b.poll != nil
	for {
		res, errno, again := runFileOp(op, nowait)
		if !again {
			b.e.finish(op, res, errno, nil, 0)
			return
		}
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			b.e.finish(op, 0, syscall.ECANCELED, ErrClosed, 0)
			return
		}
		op.be.phase = phasePolling
		err := b.poll.wait(op, op.be.fd, op.Kind.isWrite())
		if err == nil {
			b.mu.Unlock()
			return
		}
		// Not pollable (a regular file read at its position, say): block.
		op.be.phase = phaseRunning
		b.mu.Unlock()
		nowait = false
	}
}

// cancel implements backend.
func (b *workerBackend) cancel(op *Op, cause error) bool {
	b.mu.Lock()
	ok := false
	switch op.be.phase {
	case phaseQueued:
		for i, o := range b.queue {
			if o == op {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				ok = true
				break
			}
		}
	case phasePolling:
		ok = b.poll.remove(op)
	}
	b.mu.Unlock()
	if ok {
		b.e.finish(op, 0, syscall.ECANCELED, cause, 0)
	}
	return ok
}

// close implements backend: queued and polling ops complete with
// ECANCELED; running ones finish; then the goroutines end.
func (b *workerBackend) close() {
	b.mu.Lock()
	b.closing = true
	cancelled := b.queue
	b.queue = nil
	b.mu.Unlock()
	b.work.Broadcast()
	if b.poll != nil {
		cancelled = append(cancelled, b.poll.stop()...)
	}
	for _, op := range cancelled {
		b.e.finish(op, 0, syscall.ECANCELED, ErrClosed, 0)
	}
	b.wg.Wait()
}
