package api

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
)

// Options configures New.
type Options struct {
	// Pool is the buffer memory sockets are associated with by default, the
	// memory Reserve hands out, and where received data that cannot be
	// referenced in place is copied. Required (New fails without it) unless
	// FilesOnly; a socket can be associated with other pools as well
	// (Assoc).
	Pool *dmapool.Pool
	// FilesOnly makes an API for file, pipe and FIFO operations alone: New
	// then needs no Pool, and every call that would make a socket fails
	// with an error wrapping ErrAssoc (a socket without a pool could never
	// receive).
	FilesOnly bool
	// DefaultAssoc is how many bytes of Pool each new socket is associated
	// with: the received bytes it may hold unreleased before the stack stops
	// taking data from the connection. Default 4 MiB, the default TCP
	// receive buffer, so a socket's window is not the association's to
	// limit unless the application asks.
	DefaultAssoc int
	// Workers is the number of goroutines that serve asynchronous
	// operations for all sockets of the stack, started at the first Submit.
	// Default runtime.GOMAXPROCS(0).
	Workers int
	// Files configures the engine that runs file, pipe and FIFO
	// operations (ConfigureFiles); the zero value starts the defaults at
	// the first file op.
	Files file.Config
	// MaxShadowBytes bounds the received memory one socket keeps referenced
	// for zero-copy hand-off (see stack.Flow). Default
	// stack.DefaultMaxShadowBytes.
	MaxShadowBytes int
}

// DefaultAssoc is Options.DefaultAssoc's default.
const DefaultAssoc = 4 << 20

// Stack is the zero-copy socket API over one zcnet stack: the paper's
// sockets (§5, §6), which hand received data over as buffers the
// application owns, and the memory they use. Its methods are safe for
// concurrent use.
type Stack struct {
	st      *stack.Stack
	opts    Options
	c       counters
	workers workers // serve sockets with asynchronous ops
	files   file.Engine

	// unhook removes Close from st's OnClose registrations.
	unhook func()

	mu     sync.Mutex
	socks  map[*Socket]struct{} // +checklocks:mu; open sockets
	closed bool                 // +checklocks:mu
}

// New returns the socket API for st. It fails with an error wrapping
// ErrAssoc without opts.Pool (unless opts.FilesOnly). The API closes with
// st: st.Close closes it first if Close has not (see stack.Stack.OnClose).
func New(st *stack.Stack, opts Options) (*Stack, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: nil stack", ErrAssoc)
	}
	if opts.Pool == nil && !opts.FilesOnly {
		return nil, fmt.Errorf("%w: New needs Options.Pool, the memory sockets receive into (make one with dmapool.New; "+
			"for file operations alone set Options.FilesOnly)", ErrAssoc)
	}
	if opts.DefaultAssoc == 0 {
		opts.DefaultAssoc = DefaultAssoc
	}
	if opts.DefaultAssoc < 0 {
		return nil, fmt.Errorf("%w: DefaultAssoc %d is negative", ErrAssoc, opts.DefaultAssoc)
	}
	if opts.Workers == 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("%w: Workers %d is negative", ErrInvalidOp, opts.Workers)
	}
	s := &Stack{st: st, opts: opts, socks: map[*Socket]struct{}{}}
	if opts.Files != (file.Config{}) {
		if err := s.ConfigureFiles(opts.Files); err != nil {
			return nil, err
		}
	}
	s.unhook = st.OnClose(func() { s.Close() })
	return s, nil
}

// Close closes every socket of the API (their queued operations complete
// with EBADF) and stops the workers. It does not close the underlying
// stack.Stack, which the caller owns; closing that stack first closes the
// API too.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.unhook != nil {
		s.unhook()
	}
	socks := make([]*Socket, 0, len(s.socks))
	for sock := range s.socks {
		socks = append(socks, sock)
	}
	s.mu.Unlock()
	for _, sock := range socks {
		sock.Close()
	}
	s.files.Close()
	s.workers.close()
	return nil
}

// Pool returns the pool the stack was configured with (Options.Pool).
func (s *Stack) Pool() *dmapool.Pool { return s.opts.Pool }

// Net returns the net-shaped adapters (DialContext, Listen, ListenPacket)
// over the same stack.
func (s *Stack) Net() *Net { return NewNet(s) }

// Reserve returns a writable n-byte buffer from the stack's pool, to fill
// and Send (which takes it over) or Release.
func (s *Stack) Reserve(n int) (Buf, error) {
	if s.opts.Pool == nil {
		return Buf{}, fmt.Errorf("%w: Reserve needs Options.Pool", ErrAssoc)
	}
	pb, err := s.opts.Pool.Reserve(n)
	if err != nil {
		return Buf{}, err
	}
	return newBuf(kindReserved, pb.Bytes(), nil, pb, nil), nil
}

// counters are the copy budget's books, per stack and per socket: every
// byte received is either handed over (zero copy) or copied, and every byte
// sent is either written in place (SendFunc) or copied (Send).
type counters struct {
	rxHanded, rxCopied   atomic.Uint64 // bytes
	rxHandoffs, releases atomic.Uint64 // buffers
	txInPlace, txCopied  atomic.Uint64 // bytes
	dropsOldest          atomic.Uint64 // UDP datagrams dropped by latest-wins
	dropsNoPool          atomic.Uint64 // UDP datagrams lost: no pool memory to copy them into
}

// Counters is a snapshot of the copy budget.
type Counters struct {
	RxHandedOver uint64 // received bytes handed over without a copy
	RxCopied     uint64 // received bytes copied into pool memory, or by a net adapter's Read into the caller's slice
	RxHandoffs   uint64 // received buffers handed to the application
	TxInPlace    uint64 // bytes sent by SendFunc, written straight into the stack's buffers
	TxCopied     uint64 // bytes sent by Send or a net adapter's Write, copied into the stack
	// DropsNoRoom counts UDP datagrams the stack dropped because the
	// socket's queue in the stack was full: the socket stops taking
	// datagrams off that queue while the application holds its whole
	// association, and the stack drops what does not fit behind it (read
	// from gVisor's receive-buffer overflow counters when the snapshot is
	// taken; stack-wide, every UDP endpoint of the stack).
	DropsNoRoom uint64
	DropsOldest uint64 // UDP datagrams dropped by latest-wins
	DropsNoPool uint64 // UDP datagrams lost because no pool memory was left to copy them into
}

func (c *counters) snapshot() Counters {
	return Counters{
		RxHandedOver: c.rxHanded.Load(), RxCopied: c.rxCopied.Load(), RxHandoffs: c.rxHandoffs.Load(),
		TxInPlace: c.txInPlace.Load(), TxCopied: c.txCopied.Load(),
		DropsOldest: c.dropsOldest.Load(), DropsNoPool: c.dropsNoPool.Load(),
	}
}

// Counters returns the stack-wide copy budget.
func (s *Stack) Counters() Counters {
	c := s.c.snapshot()
	c.DropsNoRoom = s.st.Netstack().Stats().UDP.ReceiveBufferErrors.Value()
	return c
}
