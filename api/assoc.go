package api

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/zcnet/zcnet/dmapool"
)

// ErrAssoc reports an association change that cannot be made.
var ErrAssoc = errors.New("api: association")

// assoc is a socket's association (the paper's dma_assoc, §3): the pool
// memory associated with it, whose total bounds the received bytes the
// application may hold unreleased. Received data the stack's memory could
// not hand over is copied into these pools.
type assoc struct {
	mu    sync.Mutex
	limit int                   // +checklocks:mu; associated bytes
	held  int                   // +checklocks:mu; bytes handed out or queued, not released
	pools map[*dmapool.Pool]int // +checklocks:mu; bytes associated per pool
	order []*dmapool.Pool       // +checklocks:mu; pools in association order
	// room is signalled (without blocking) whenever credit returns, so a
	// receiver that stopped for lack of room can go on.
	room chan struct{}
	// notify, when set (the socket has asynchronous operations), is called
	// as credit returns, to queue the socket for a worker.
	notify atomic.Pointer[func()]
}

func (a *assoc) setNotify(fn func()) { a.notify.Store(&fn) }

func newAssoc() *assoc {
	return &assoc{pools: map[*dmapool.Pool]int{}, room: make(chan struct{}, 1)}
}

// add associates n more bytes of p.
func (a *assoc) add(p *dmapool.Pool, n int) error {
	if p == nil || n <= 0 {
		return fmt.Errorf("%w: need a pool and a positive size, got %v and %d", ErrAssoc, p, n)
	}
	a.mu.Lock()
	if _, ok := a.pools[p]; !ok {
		a.order = append(a.order, p)
	}
	a.pools[p] += n
	a.limit += n
	a.mu.Unlock()
	a.signal()
	return nil
}

// remove disassociates n bytes of p. Bytes already held stay valid; the
// socket just takes no more until it is under the new limit.
func (a *assoc) remove(p *dmapool.Pool, n int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	have, ok := a.pools[p]
	if !ok || n <= 0 || n > have {
		return fmt.Errorf("%w: cannot disassociate %d bytes of a pool associated with %d", ErrAssoc, n, have)
	}
	a.pools[p] = have - n
	a.limit -= n
	if a.pools[p] == 0 {
		delete(a.pools, p)
		for i, q := range a.order {
			if q == p {
				a.order = append(a.order[:i], a.order[i+1:]...)
				break
			}
		}
	}
	return nil
}

// avail returns the bytes the socket may still take.
func (a *assoc) avail() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return max(a.limit-a.held, 0)
}

// over reports whether more bytes are held than associated.
func (a *assoc) over() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held > a.limit
}

// take charges n bytes.
func (a *assoc) take(n int) {
	a.mu.Lock()
	a.held += n
	a.mu.Unlock()
}

// credit returns n bytes and wakes a receiver waiting for room.
func (a *assoc) credit(n int) {
	a.mu.Lock()
	a.held -= n
	a.mu.Unlock()
	a.signal()
}

func (a *assoc) signal() {
	select {
	case a.room <- struct{}{}:
	default:
	}
	if fn := a.notify.Load(); fn != nil {
		(*fn)()
	}
}

// reserve copies into memory of the associated pools, in association order.
func (a *assoc) reserve(n int) (dmapool.Buf, error) {
	a.mu.Lock()
	var few [4]*dmapool.Pool // most sockets have one pool: no allocation
	pools := append(few[:0], a.order...)
	a.mu.Unlock()
	var err error
	for _, p := range pools {
		b, e := p.Reserve(n)
		if e == nil {
			return b, nil
		}
		err = e
	}
	if err == nil {
		// Built only on failure: every copied hand-off reserves.
		err = fmt.Errorf("%w: no pool associated to copy %d bytes into", ErrAssoc, n)
	}
	return dmapool.Buf{}, err
}

// usage returns limit and held, for stats.
func (a *assoc) usage() (limit, held int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit, a.held
}
