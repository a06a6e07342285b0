package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/stack"
)

// The tools (echo, perf) and the daemon's services run over either zcnet's
// zero-copy sockets or the kernel's, through the small interfaces below, so
// one tool measures both sides of a comparison with the same code.
//
// Today the zcnet side is the synchronous zero-copy Socket API (Recv hands
// over a Buf, SendFunc writes into the stack's buffer). The interfaces were
// cut so that an implementation on the event API (Op/Submit with completions
// on an event channel) can replace it without touching the tools: a receive
// yields a Chunk the caller owns until Release, a send is a fill function
// that writes straight into the transmit buffer.

// Transport opens sockets on one network: a zcnet stack or the kernel.
type Transport interface {
	// Name is "zcnet" or "kernel", for reports.
	Name() string
	ListenTCP(laddr netip.AddrPort) (Listener, error)
	DialTCP(ctx context.Context, raddr netip.AddrPort) (Conn, error)
	// ListenUDP binds laddr; RecvFrom tells senders apart.
	ListenUDP(laddr netip.AddrPort) (PacketConn, error)
	// DialUDP returns a socket connected to raddr.
	DialUDP(raddr netip.AddrPort) (PacketConn, error)
	// TCPRetransmits returns the network's count of TCP retransmissions so
	// far, where it keeps one (zcnet: stack-wide), and whether it does.
	TCPRetransmits() (uint64, bool)
	// CopyBudget returns zcnet's copy counters so far (stack-wide), or nil
	// for kernel sockets.
	CopyBudget() *CopyBudget
}

// Listener accepts TCP connections.
type Listener interface {
	// Accept waits for a connection until ctx ends or the listener closes.
	Accept(ctx context.Context) (Conn, error)
	Addr() netip.AddrPort
	Close() error
}

// Conn is one TCP connection. Recv and Send may run concurrently
// with each other (one goroutine each); Close may be called from any
// goroutine and wakes both.
type Conn interface {
	// Recv returns the next received bytes as a Chunk the caller owns until
	// it calls Release (and, for kernel sockets, no longer than the next
	// Recv). It returns io.EOF after the peer's FIN.
	Recv(ctx context.Context) (Chunk, error)
	// Send sends n bytes that fill writes straight into the transmit buffer
	// (zcnet: the stack's own memory; kernel: a scratch buffer that write(2)
	// copies). fill gets consecutive parts of the n bytes and returns how
	// much it wrote into each; a short return ends the send there.
	Send(ctx context.Context, n int, fill func(p []byte) int) (int, error)
	LocalAddr() netip.AddrPort
	RemoteAddr() netip.AddrPort
	// Retransmits returns this connection's TCP retransmissions, or -1 where
	// the transport keeps none per connection.
	Retransmits() int64
	Close() error
}

// PacketConn is a UDP socket. One goroutine receives; any number may send.
type PacketConn interface {
	// RecvFrom returns the next datagram as a Chunk the caller owns until
	// Release (kernel sockets: no longer than the next RecvFrom), and its
	// sender.
	RecvFrom(ctx context.Context) (Chunk, netip.AddrPort, error)
	// SendTo sends one datagram of n bytes that fill writes, to to, or to
	// the connected peer if to is the zero value.
	SendTo(ctx context.Context, n int, fill func(p []byte) int, to netip.AddrPort) (int, error)
	// Bounce sends a received Chunk to to and takes ownership of it (zcnet:
	// the received buffer itself goes to the stack, copied once there).
	Bounce(ctx context.Context, c Chunk, to netip.AddrPort) (int, error)
	LocalAddr() netip.AddrPort
	Close() error
}

// Chunk is received data the caller owns until Release: a zcnet Buf (the
// stack's memory or a pool copy) or a slice of a kernel socket's read
// buffer. It is a small value; Release ends every copy's validity.
type Chunk struct {
	p  []byte
	zb api.Buf // valid for zcnet chunks
	zc bool
}

// Bytes returns the received bytes; read-only, valid until Release.
func (c Chunk) Bytes() []byte { return c.p }

// Release gives the memory back.
func (c Chunk) Release() {
	if c.zc {
		c.zb.Release()
	}
}

// CopyBudget is the zero-copy socket API's copy counters: bytes handed
// over in place and bytes copied, each way.
type CopyBudget struct {
	RxHandedOver uint64 `json:"rx_handed_over_bytes"`
	RxCopied     uint64 `json:"rx_copied_bytes"`
	TxInPlace    uint64 `json:"tx_in_place_bytes"`
	TxCopied     uint64 `json:"tx_copied_bytes"`
}

// SendBytes sends p whole through c's fill-style Send.
func SendBytes(ctx context.Context, c Conn, p []byte) (int, error) {
	off := 0
	return c.Send(ctx, len(p), func(dst []byte) int {
		n := copy(dst, p[off:])
		off += n
		return n
	})
}

// AcceptLoop accepts connections until ctx ends or the listener closes and
// runs handle on each, on a goroutine wg tracks; handle's connection is
// closed when it returns.
func AcceptLoop(ctx context.Context, ln Listener, wg *sync.WaitGroup, handle func(Conn)) error {
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			handle(c)
		}()
	}
}

// AddrString prints a listening address, ":7" for every address.
func AddrString(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
		return fmt.Sprintf(":%d", ap.Port())
	}
	return ap.String()
}

// ---- zcnet ----

// ZC is zcnet's zero-copy sockets on one stack.
type ZC struct {
	zs *api.Stack
	st *stack.Stack
}

// NewZC returns the zero-copy sockets of zs on the stack st (whose
// counters give TCPRetransmits).
func NewZC(zs *api.Stack, st *stack.Stack) *ZC {
	return &ZC{zs: zs, st: st}
}

func (t *ZC) Name() string { return "zcnet" }

func (t *ZC) TCPRetransmits() (uint64, bool) {
	return t.st.Counters()["TCP.Retransmits"], true
}

func (t *ZC) CopyBudget() *CopyBudget {
	c := t.zs.Counters()
	return &CopyBudget{RxHandedOver: c.RxHandedOver, RxCopied: c.RxCopied, TxInPlace: c.TxInPlace, TxCopied: c.TxCopied}
}

func (t *ZC) ListenTCP(laddr netip.AddrPort) (Listener, error) {
	s, err := t.zs.ListenTCP(laddr)
	if err != nil {
		return nil, err
	}
	return zcListener{s}, nil
}

func (t *ZC) DialTCP(ctx context.Context, raddr netip.AddrPort) (Conn, error) {
	s, err := t.zs.DialTCP(ctx, raddr)
	if err != nil {
		return nil, err
	}
	return &zcConn{s: s}, nil
}

func (t *ZC) ListenUDP(laddr netip.AddrPort) (PacketConn, error) {
	s, err := t.zs.ListenUDP(laddr)
	if err != nil {
		return nil, err
	}
	return &zcPacket{zs: t.zs, s: s}, nil
}

func (t *ZC) DialUDP(raddr netip.AddrPort) (PacketConn, error) {
	s, err := t.zs.DialUDP(raddr)
	if err != nil {
		return nil, err
	}
	return &zcPacket{zs: t.zs, s: s}, nil
}

type zcListener struct{ s *api.Socket }

func (l zcListener) Accept(ctx context.Context) (Conn, error) {
	s, err := l.s.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return &zcConn{s: s}, nil
}

func (l zcListener) Addr() netip.AddrPort { return l.s.LocalAddr() }
func (l zcListener) Close() error         { return l.s.Close() }

type zcConn struct{ s *api.Socket }

func (c *zcConn) Recv(ctx context.Context) (Chunk, error) {
	b, err := c.s.Recv(ctx)
	if err != nil {
		return Chunk{}, err
	}
	return Chunk{p: b.Bytes(), zb: b, zc: true}, nil
}

func (c *zcConn) Send(ctx context.Context, n int, fill func([]byte) int) (int, error) {
	return c.s.SendFunc(ctx, n, fill)
}

func (c *zcConn) LocalAddr() netip.AddrPort  { return c.s.LocalAddr() }
func (c *zcConn) RemoteAddr() netip.AddrPort { return c.s.RemoteAddr() }
func (c *zcConn) Retransmits() int64         { return -1 }
func (c *zcConn) Close() error               { return c.s.Close() }

type zcPacket struct {
	zs *api.Stack
	s  *api.Socket
}

func (c *zcPacket) RecvFrom(ctx context.Context) (Chunk, netip.AddrPort, error) {
	b, from, err := c.s.RecvFrom(ctx)
	if err != nil {
		return Chunk{}, from, err
	}
	return Chunk{p: b.Bytes(), zb: b, zc: true}, from, nil
}

// SendTo writes in place on a connected socket. To another destination the
// API has no in-place send yet, so the datagram is built in a reserved pool
// buffer and copied once into the stack (counted as TxCopied).
func (c *zcPacket) SendTo(ctx context.Context, n int, fill func([]byte) int, to netip.AddrPort) (int, error) {
	if !to.IsValid() || to == c.s.RemoteAddr() {
		return c.s.SendFunc(ctx, n, fill)
	}
	b, err := c.zs.Reserve(n)
	if err != nil {
		return 0, err
	}
	if m := fill(b.Bytes()); m != n {
		b.Release()
		return 0, errShortFill
	}
	return c.s.SendTo(ctx, b, to)
}

func (c *zcPacket) Bounce(ctx context.Context, ch Chunk, to netip.AddrPort) (int, error) {
	if !ch.zc {
		return 0, errForeignChunk
	}
	return c.s.SendTo(ctx, ch.zb, to)
}

func (c *zcPacket) LocalAddr() netip.AddrPort { return c.s.LocalAddr() }
func (c *zcPacket) Close() error              { return c.s.Close() }

var (
	errShortFill    = errors.New("fill wrote less than the datagram")
	errForeignChunk = errors.New("Chunk was not received by this transport")
)

// ---- kernel ----

// Kernel is the kernel's sockets in the process's network
// namespace.
type Kernel struct{}

func (Kernel) Name() string                   { return "kernel" }
func (Kernel) TCPRetransmits() (uint64, bool) { return 0, false }
func (Kernel) CopyBudget() *CopyBudget        { return nil }

// kernelReadBuffer is the size of a kernel socket's read buffer: iperf3's
// default TCP block.
const kernelReadBuffer = 128 << 10

func (Kernel) ListenTCP(laddr netip.AddrPort) (Listener, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, err
	}
	return &netListener{ln: ln}, nil
}

func (Kernel) DialTCP(ctx context.Context, raddr netip.AddrPort) (Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", raddr.String())
	if err != nil {
		return nil, err
	}
	return newKernelConn(c), nil
}

func (Kernel) ListenUDP(laddr netip.AddrPort) (PacketConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return nil, err
	}
	return newKernelPacket(c, netip.AddrPort{}), nil
}

func (Kernel) DialUDP(raddr netip.AddrPort) (PacketConn, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(raddr))
	if err != nil {
		return nil, err
	}
	return newKernelPacket(c, raddr), nil
}

type kernelConn struct {
	c      net.Conn
	rbuf   []byte
	wbuf   []byte
	rb, wb ctxBinder
}

func newKernelConn(c net.Conn) *kernelConn {
	return &kernelConn{c: c}
}

func (c *kernelConn) Recv(ctx context.Context) (Chunk, error) {
	if err := c.rb.bind(ctx, c.c.SetReadDeadline); err != nil {
		return Chunk{}, err
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, kernelReadBuffer)
	}
	n, err := c.c.Read(c.rbuf)
	if n > 0 {
		return Chunk{p: c.rbuf[:n]}, nil
	}
	return Chunk{}, ctxOr(ctx, err)
}

func (c *kernelConn) Send(ctx context.Context, n int, fill func([]byte) int) (int, error) {
	if err := c.wb.bind(ctx, c.c.SetWriteDeadline); err != nil {
		return 0, err
	}
	if c.wbuf == nil {
		c.wbuf = make([]byte, MaxFillPart)
	}
	sent := 0
	for sent < n {
		part := c.wbuf[:min(n-sent, len(c.wbuf))]
		m := fill(part)
		if m < 0 || m > len(part) {
			m = 0
		}
		w, err := c.c.Write(part[:m])
		sent += w
		if err != nil {
			return sent, ctxOr(ctx, err)
		}
		if m < len(part) {
			break
		}
	}
	return sent, nil
}

// MaxFillPart is the largest part a fill function is handed at once, by
// either transport (the zcnet API hands over at most this much).
const MaxFillPart = 64 << 10

func (c *kernelConn) LocalAddr() netip.AddrPort { return addrPortOf(c.c.LocalAddr()) }

func (c *kernelConn) RemoteAddr() netip.AddrPort { return addrPortOf(c.c.RemoteAddr()) }

// Retransmits reads TCP_INFO of a kernel socket; other stacks' counts are
// unknown (-1).
func (c *kernelConn) Retransmits() int64 {
	if tc, ok := c.c.(*net.TCPConn); ok {
		return tcpRetransmits(tc)
	}
	return -1
}

func (c *kernelConn) Close() error {
	c.rb.stop()
	c.wb.stop()
	return c.c.Close()
}

type kernelPacket struct {
	c      *net.UDPConn
	raddr  netip.AddrPort // zero unless connected
	rbuf   []byte
	rb, wb ctxBinder
	wmu    chanMutex // serialises senders sharing wbuf
	wbuf   []byte
}

func newKernelPacket(c *net.UDPConn, raddr netip.AddrPort) *kernelPacket {
	return &kernelPacket{c: c, raddr: raddr, wmu: newChanMutex()}
}

func (c *kernelPacket) RecvFrom(ctx context.Context) (Chunk, netip.AddrPort, error) {
	if err := c.rb.bind(ctx, c.c.SetReadDeadline); err != nil {
		return Chunk{}, netip.AddrPort{}, err
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, 65536)
	}
	n, from, err := c.c.ReadFromUDPAddrPort(c.rbuf)
	if err != nil {
		return Chunk{}, from, ctxOr(ctx, err)
	}
	return Chunk{p: c.rbuf[:n]}, unmapAddrPort(from), nil
}

func (c *kernelPacket) SendTo(ctx context.Context, n int, fill func([]byte) int, to netip.AddrPort) (int, error) {
	if err := c.wmu.lock(ctx); err != nil {
		return 0, err
	}
	defer c.wmu.unlock()
	if len(c.wbuf) < n {
		c.wbuf = make([]byte, n)
	}
	p := c.wbuf[:n]
	if m := fill(p); m != n {
		return 0, errShortFill
	}
	return c.write(ctx, p, to)
}

func (c *kernelPacket) Bounce(ctx context.Context, ch Chunk, to netip.AddrPort) (int, error) {
	return c.write(ctx, ch.p, to)
}

// write sends p; a deadline from ctx applies (writes of a UDP socket block
// only while the socket buffer is full).
func (c *kernelPacket) write(ctx context.Context, p []byte, to netip.AddrPort) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var n int
	var err error
	if !to.IsValid() || c.raddr.IsValid() {
		n, err = c.c.Write(p)
	} else {
		n, err = c.c.WriteToUDPAddrPort(p, to)
	}
	return n, ctxOr(ctx, err)
}

func (c *kernelPacket) LocalAddr() netip.AddrPort {
	return unmapAddrPort(c.c.LocalAddr().(*net.UDPAddr).AddrPort())
}

func (c *kernelPacket) Close() error {
	c.rb.stop()
	c.wb.stop()
	return c.c.Close()
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ctxOr returns ctx's error when ctx has ended (the kernel reports it as a
// deadline in the past), else err.
func ctxOr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// ctxBinder makes a kernel socket's blocking calls end with a context, as
// zcnet's do: it applies ctx's deadline and, when ctx is cancelled, a
// deadline in the past. It remembers the last context, so a loop that
// passes the same one pays for the binding once. One goroutine binds at a
// time (the reader or the writer); stop may come from any.
type ctxBinder struct {
	mu     sync.Mutex
	ctx    context.Context // +checklocks:mu; the context bound last
	gen    uint64          // +checklocks:mu; counts bindings, so a stale callback does nothing
	stopFn func() bool     // +checklocks:mu; unregisters the cancellation callback
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

func (b *ctxBinder) bind(ctx context.Context, set func(time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ctx == b.ctx {
		return nil
	}
	if b.stopFn != nil {
		b.stopFn()
		b.stopFn = nil
	}
	b.gen++
	gen := b.gen
	b.ctx = ctx
	dl, _ := ctx.Deadline() // zero: none
	set(dl)
	if ctx.Done() != nil {
		b.stopFn = context.AfterFunc(ctx, func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.gen == gen {
				set(aLongTimeAgo)
			}
		})
	}
	return nil
}

// stop drops the binding's callback; the socket is being closed.
func (b *ctxBinder) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopFn != nil {
		b.stopFn()
		b.stopFn = nil
	}
	b.gen++
}

// chanMutex is a mutex whose Lock can give up when a context ends.
type chanMutex chan struct{}

func newChanMutex() chanMutex { return make(chanMutex, 1) }

func (m chanMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m chanMutex) unlock() { <-m }
