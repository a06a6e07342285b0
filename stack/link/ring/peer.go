//go:build linux

package ring

import (
	"fmt"
	"net"
	"os"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack/link"
)

// Peer is the other process's side of a ring link: it maps the stack side's
// pool and moves raw Ethernet frames. Use either its Send/Recv or, to put a
// second stack on it, Endpoint — not both.
type Peer struct {
	endpoint
	conn *net.UnixConn
	m    *dmapool.Mapping
	ch   *channel // the session; shadows endpoint.ch (nil once the stack side is gone), which p.endpoint.ch names
	evs  []*os.File

	closeOnce sync.Once
	wg        sync.WaitGroup
	gone      chan struct{} // closed when the stack side is gone or Close ran
	rxOnce    sync.Once

	// recvMu keeps the mapping alive under Recv: Recv holds it for
	// reading, Close for writing before it unmaps, so a Recv that races
	// Close returns ErrPeerGone instead of touching unmapped memory.
	recvMu   sync.RWMutex
	unmapped bool // +checklocks:recvMu
}

// Dial connects to a Link's socket at path, checks the version and, when cfg
// names them, the sizes (MTU, FrameSize, Frames, Slots; zero accepts the
// stack side's), and maps the shared segment.
func Dial(path string, cfg Config) (*Peer, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ring: dial: %w", err)
	}
	p, err := dialConn(c, cfg, Version)
	if err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}

func dialConn(c *net.UnixConn, cfg Config, version uint32) (*Peer, error) {
	if err := sendHello(c, version); err != nil {
		return nil, fmt.Errorf("%w: sending hello: %v", ErrHandshake, err)
	}
	r, files, err := readReply(c)
	if err != nil {
		return nil, err
	}
	lay := layout{slots: r.slots, frames: r.frames, frameSize: r.frameSize}
	bad := func(what string, got, want uint32) error {
		closeFiles(files)
		return fmt.Errorf("%w: stack side has %s %d, we want %d", ErrMismatch, what, got, want)
	}
	switch {
	case cfg.MTU != 0 && cfg.MTU != r.mtu:
		return nil, bad("MTU", r.mtu, cfg.MTU)
	case cfg.FrameSize != 0 && cfg.FrameSize != r.frameSize:
		return nil, bad("frame size", r.frameSize, cfg.FrameSize)
	case cfg.Frames != 0 && cfg.Frames != r.frames:
		return nil, bad("frames", r.frames, cfg.Frames)
	case cfg.Slots != 0 && cfg.Slots != r.slots:
		return nil, bad("slots", r.slots, cfg.Slots)
	case cfg.GSO && r.features&featureGSO == 0:
		closeFiles(files)
		return nil, fmt.Errorf("%w: stack side has no GSO, we want it", ErrMismatch)
	}
	gso := r.features&featureGSO != 0 && r.frameSize >= GSOFrameSize
	if err := lay.check(); err != nil || r.mtu+14 > r.frameSize || r.regionSize < r.base+uint64(lay.size()) || r.regionSize > dmapool.MaxRegionSize {
		closeFiles(files)
		return nil, fmt.Errorf("%w: inconsistent geometry from stack side", ErrHandshake)
	}
	m, err := dmapool.MapShared(rawFD(files[0]), int(r.regionSize))
	files[0].Close()
	if err != nil {
		closeFiles(files[1:])
		return nil, fmt.Errorf("ring: mapping pool: %w", err)
	}
	mem, err := m.Slice(int(r.base), lay.size())
	if err != nil {
		m.Close()
		closeFiles(files[1:])
		return nil, fmt.Errorf("ring: %w", err)
	}
	p := &Peer{conn: c, m: m, evs: files[1:], gone: make(chan struct{})}
	if cfg.LinkAddress != "" && !header.IsValidUnicastEthernetAddress(cfg.LinkAddress) {
		p.m.Close()
		closeFiles(p.evs)
		return nil, fmt.Errorf("%w: %q is not a unicast Ethernet address", ErrInvalidConfig, cfg.LinkAddress)
	}
	p.init(r.mtu, r.frameSize, gso, cfg.LinkAddress)
	// files[1] is the stack's eventfd (we kick it), files[2] ours.
	p.ch = newChannel(mem, lay, &p.ctr, false, rawFD(files[2]), rawFD(files[1]))
	p.endpoint.ch.Store(p.ch)
	p.ctr.peersUp.Add(1)
	p.wg.Add(1)
	go p.watch()
	return p, nil
}

// watch blocks on the socket; its end means the stack side is gone.
func (p *Peer) watch() {
	defer p.wg.Done()
	var b [64]byte
	for {
		if _, err := p.conn.Read(b[:]); err != nil {
			break
		}
	}
	p.endpoint.ch.Store(nil)
	p.ch.shutdown()
	p.ctr.peersLost.Add(1)
	close(p.gone)
}

// Gone is closed when the stack side has gone (or Close ran).
func (p *Peer) Gone() <-chan struct{} { return p.gone }

// Send copies each frame into one of the peer's shared frames and publishes
// it; the batch costs at most one kick. It returns how many were sent:
// fewer than len(frames) with ErrNoFrame when the stack side holds all our
// frames, ErrTooBig for a frame over the frame size, ErrPeerGone when the
// stack side is gone.
func (p *Peer) Send(frames ...[]byte) (int, error) {
	if p.endpoint.ch.Load() == nil {
		return 0, ErrPeerGone
	}
	ch := p.ch
	ch.txMu.Lock()
	defer ch.txMu.Unlock()
	if ch.dead {
		return 0, ErrPeerGone
	}
	defer ch.flushLocked(false)
	for i, f := range frames {
		if len(f) > int(p.frameSize) || len(f) == 0 {
			return i, fmt.Errorf("%w: %d bytes, frame size %d", ErrTooBig, len(f), p.frameSize)
		}
		if err := ch.sendLocked(len(f), func(dst []byte) { copy(dst, f) }); err != nil {
			return i, ErrNoFrame
		}
		p.ctr.txFrames.Add(1)
		p.ctr.txBytes.Add(uint64(len(f)))
		p.ctr.txCopied.Add(uint64(len(f)))
	}
	return len(frames), nil
}

// Recv waits for frames and calls fn with each (the bytes are shared memory,
// valid only during the call), up to a batch; it returns how many, or
// ErrPeerGone once the stack side is gone or Close has run. A Recv may run
// while another goroutine calls Close (Close waits for it to return); fn
// must not call Close.
func (p *Peer) Recv(fn func(frame []byte)) (int, error) {
	p.recvMu.RLock()
	defer p.recvMu.RUnlock()
	if p.unmapped {
		return 0, ErrPeerGone
	}
	for {
		n := p.ch.recvBatch(rxBatch, func(f []byte) {
			p.ctr.rxFrames.Add(1)
			p.ctr.rxBytes.Add(uint64(len(f)))
			fn(f)
		})
		if n > 0 {
			return n, nil
		}
		if !p.ch.wait() {
			return 0, ErrPeerGone
		}
	}
}

// Close ends the session: the stack side sees the socket close and takes
// its frames back. It waits for the watcher and an attached receive loop.
func (p *Peer) Close() error {
	if fn := p.takeOnClose(); fn != nil {
		fn() // gVisor's action removes the NIC, which calls Close again
	}
	p.closeOnce.Do(func() {
		p.conn.Close()
		p.wg.Wait()
		// Fence transmit before the eventfds close: nothing kicks a
		// descriptor number that may be reused.
		p.ch.txMu.Lock()
		p.ch.dead = true
		p.ch.txMu.Unlock()
		// The watcher's end shut the channel down, which wakes a Recv
		// asleep on it; wait for every Recv to leave the mapping.
		p.recvMu.Lock()
		p.unmapped = true
		p.recvMu.Unlock()
		p.ch.closeEvents(p.evs)
		p.m.Close()
	})
	return nil
}

// Endpoint returns the peer as a stack.LinkEndpoint, so a second stack can
// sit on it. Its receive loop starts on the first Attach.
func (p *Peer) Endpoint() *PeerEndpoint { return &PeerEndpoint{p} }

// PeerEndpoint is a Peer seen as a stack.LinkEndpoint.
type PeerEndpoint struct{ *Peer }

var (
	_ stack.LinkEndpoint = (*PeerEndpoint)(nil)
	_ stack.GSOEndpoint  = (*PeerEndpoint)(nil)
	_ link.PayloadHooker = (*PeerEndpoint)(nil)
	_ link.Counted       = (*PeerEndpoint)(nil)
	_ link.Admitter      = (*PeerEndpoint)(nil)
)

// Attach implements stack.LinkEndpoint.Attach; the first non-nil dispatcher
// starts the receive loop.
func (e *PeerEndpoint) Attach(d stack.NetworkDispatcher) {
	e.endpoint.mu.Lock()
	e.dispatcher = d
	e.endpoint.mu.Unlock()
	if d != nil {
		e.rxOnce.Do(func() {
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				e.rxLoop(e.ch)
			}()
		})
	}
}

// Wait implements stack.LinkEndpoint.Wait.
func (e *PeerEndpoint) Wait() { e.wg.Wait() }

// Close implements stack.LinkEndpoint.Close.
func (e *PeerEndpoint) Close() { _ = e.Peer.Close() }
