// Package pair is an in-process Ethernet link: two endpoints joined by a
// pair of bounded frame queues, for demos, tests and benchmarks that need
// two stacks but no privileges. It behaves like a wire between two NICs:
//
//  1. WritePackets (sender's goroutine) serialises each packet into a fresh
//     view owned by the receiving side — the one copy a device's DMA or a TAP
//     read would make — and queues it. A full queue drops the frame and counts
//     it, as a NIC ring does; blocking instead could deadlock two stacks whose
//     receive goroutines each wait to transmit to the other.
//  2. The receiving endpoint's goroutine takes frames in batches, splits the
//     headers from the payload (link.SplitPayload) and hands each packet to
//     its stack with DeliverNetworkPacket, calling the stack's payload hook
//     (link.PayloadHooker) for the payload view first.
//
// The package owns the two endpoints, their queues and receive goroutines.
// It does not own the stacks, and it neither parses beyond the header
// split nor checks checksums: the stack does.
package pair

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// Config configures New. The zero value is usable.
type Config struct {
	// MTU is the largest IP packet either side sends. Default 1500; at most
	// 65 535 - 14.
	MTU uint32
	// QueueLen is the number of frames each direction holds before it drops.
	// Default 4096.
	QueueLen int
	// AddrA and AddrB are the two sides' MAC addresses. Default: random,
	// locally administered.
	AddrA, AddrB tcpip.LinkAddress
}

// Pair defaults.
const (
	DefaultMTU      = 1500
	DefaultQueueLen = 4096
	maxPairMTU      = 0xffff - header.EthernetMinimumSize
	pairBatch       = 64
)

// ErrInvalidConfig reports a configuration value out of range.
var ErrInvalidConfig = errors.New("pair: invalid configuration")

// Stats counts what crossed one side of a pair. All fields are
// monotonic.
type Stats struct {
	TxFrames, TxBytes uint64 // frames and bytes this side sent
	RxFrames, RxBytes uint64 // frames and bytes this side delivered to its stack
	TxDropsQueueFull  uint64 // frames dropped because the peer's queue was full
	TxDropsClosed     uint64 // frames dropped because the pair was closed
	RxDropsBadFrame   uint64 // frames too short or not for this side's MAC
	RxHeaderBytes     uint64 // bytes copied by the header split on receive
}

// Endpoint is one side of an in-process link made by New. It
// implements stack.LinkEndpoint.
type Endpoint struct {
	peer  *Endpoint
	queue chan *buffer.View // frames travelling towards this side
	done  chan struct{}     // closed by Close; shared by both sides
	wg    *sync.WaitGroup   // both sides' receive goroutines

	closeOnce *sync.Once

	// mtu and addr are set at construction and by SetMTU/SetLinkAddress.
	mtu  atomic.Uint32
	addr atomic.Value // tcpip.LinkAddress

	mu         sync.Mutex
	dispatcher stack.NetworkDispatcher // +checklocks:mu
	onClose    func()                  // +checklocks:mu
	started    bool                    // +checklocks:mu

	hook link.HookSlot

	txFrames, txBytes, rxFrames, rxBytes     atomic.Uint64
	txDropFull, txDropClosed, rxDropBad, rxH atomic.Uint64
}

var (
	_ stack.LinkEndpoint = (*Endpoint)(nil)
	_ link.PayloadHooker = (*Endpoint)(nil)
	_ link.Counted       = (*Endpoint)(nil)
)

// New returns the two ends of a new in-process link. Each end starts its
// receive goroutine when a stack attaches it; Close on either end stops both.
func New(cfg Config) (a, b *Endpoint, err error) {
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < header.IPv4MinimumProcessableDatagramSize || cfg.MTU > maxPairMTU {
		return nil, nil, fmt.Errorf("%w: pair MTU %d outside [%d, %d]", ErrInvalidConfig, cfg.MTU, header.IPv4MinimumProcessableDatagramSize, maxPairMTU)
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = DefaultQueueLen
	}
	if cfg.QueueLen < 1 {
		return nil, nil, fmt.Errorf("%w: pair queue length %d, want > 0", ErrInvalidConfig, cfg.QueueLen)
	}
	for _, addr := range []*tcpip.LinkAddress{&cfg.AddrA, &cfg.AddrB} {
		if *addr == "" {
			*addr = randomMAC()
		} else if !header.IsValidUnicastEthernetAddress(*addr) {
			return nil, nil, fmt.Errorf("%w: %q is not a unicast Ethernet address", ErrInvalidConfig, *addr)
		}
	}
	done := make(chan struct{})
	wg := new(sync.WaitGroup)
	once := new(sync.Once)
	mk := func(addr tcpip.LinkAddress) *Endpoint {
		e := &Endpoint{queue: make(chan *buffer.View, cfg.QueueLen), done: done, wg: wg, closeOnce: once}
		e.mtu.Store(cfg.MTU)
		e.addr.Store(addr)
		return e
	}
	a, b = mk(cfg.AddrA), mk(cfg.AddrB)
	a.peer, b.peer = b, a
	return a, b, nil
}

// randomMAC returns a random unicast, locally administered MAC address.
func randomMAC() tcpip.LinkAddress {
	for {
		if a := tcpip.GetRandMacAddr(); header.IsValidUnicastEthernetAddress(a) {
			return a
		}
	}
}

// SetPayloadHook installs fn, which the receive path calls for every frame
// it splits, before delivery (see PayloadHook). nil removes the hook.
func (e *Endpoint) SetPayloadHook(fn link.PayloadHook) {
	e.hook.Set(fn)
}

// Stats returns this side's counters.
func (e *Endpoint) Stats() Stats {
	return Stats{
		TxFrames: e.txFrames.Load(), TxBytes: e.txBytes.Load(),
		RxFrames: e.rxFrames.Load(), RxBytes: e.rxBytes.Load(),
		TxDropsQueueFull: e.txDropFull.Load(), TxDropsClosed: e.txDropClosed.Load(),
		RxDropsBadFrame: e.rxDropBad.Load(), RxHeaderBytes: e.rxH.Load(),
	}
}

// Totals implements link.Counted: the frame and byte totals of Stats.
func (e *Endpoint) Totals() link.Totals {
	s := e.Stats()
	return link.Totals{RxFrames: s.RxFrames, RxBytes: s.RxBytes, TxFrames: s.TxFrames, TxBytes: s.TxBytes}
}

// MTU implements stack.LinkEndpoint.MTU.
func (e *Endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU. Values outside the pair's
// range are ignored.
func (e *Endpoint) SetMTU(mtu uint32) {
	if mtu >= header.IPv4MinimumProcessableDatagramSize && mtu <= maxPairMTU {
		e.mtu.Store(mtu)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength.
func (*Endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *Endpoint) LinkAddress() tcpip.LinkAddress { return e.addr.Load().(tcpip.LinkAddress) }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (e *Endpoint) SetLinkAddress(addr tcpip.LinkAddress) { e.addr.Store(addr) }

// Capabilities implements stack.LinkEndpoint.Capabilities. The pair carries
// frames unchanged, so the stack computes and verifies every checksum.
func (*Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// Attach implements stack.LinkEndpoint.Attach. The first attach starts the
// receive goroutine; a nil dispatcher (the NIC is being removed) makes it
// drop what arrives.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dispatcher = d
	if d != nil && !e.started {
		select {
		case <-e.done:
			return // closed before it was attached: nothing to run
		default:
		}
		e.started = true
		e.wg.Add(1)
		go e.receiveLoop()
	}
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *Endpoint) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait: it waits for both sides' receive
// goroutines, which stop after Close.
func (e *Endpoint) Wait() { e.wg.Wait() }

// Close implements stack.LinkEndpoint.Close. It closes the whole pair: both
// receive goroutines stop and frames still queued are released. Safe to call
// more than once and from either side.
func (e *Endpoint) Close() {
	e.mu.Lock()
	fn := e.onClose
	e.onClose = nil
	e.mu.Unlock()
	if fn != nil {
		// gVisor's action removes the NIC, which calls Close again: run it
		// outside closeOnce.
		fn()
	}
	e.closeOnce.Do(func() { close(e.done) })
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *Endpoint) SetOnCloseAction(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onClose = fn
}

// AddHeader implements stack.LinkEndpoint.AddHeader.
func (e *Endpoint) AddHeader(pkt *stack.PacketBuffer) {
	link.AddEthernetHeader(pkt, e.LinkAddress())
}

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*Endpoint) ParseHeader(pkt *stack.PacketBuffer) bool { return link.ParseEthernetHeader(pkt) }

// WritePackets implements stack.LinkWriter.WritePackets. It copies each
// packet into a frame owned by the peer and queues it; see the flow comment
// at the top of this file. The caller keeps its references to the packets
// (gVisor's callers release them after the call, whatever its doc says).
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		size := pkt.Size()
		frame := buffer.NewView(size)
		for _, s := range pkt.AsSlices() {
			frame.Write(s)
		}
		select {
		case <-e.done:
			frame.Release()
			e.txDropClosed.Add(1)
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		default:
		}
		select {
		case e.peer.queue <- frame:
			e.txFrames.Add(1)
			e.txBytes.Add(uint64(size))
		default:
			frame.Release()
			e.txDropFull.Add(1)
		}
		n++
	}
	return n, nil
}

// receiveLoop delivers frames from this side's queue to its stack until the
// pair is closed, then releases whatever is left.
func (e *Endpoint) receiveLoop() {
	defer e.wg.Done()
	batch := make([]*buffer.View, 0, pairBatch)
	for {
		select {
		case v := <-e.queue:
			batch = append(batch[:0], v)
		case <-e.done:
			e.drain()
			return
		}
	fill:
		for len(batch) < pairBatch {
			select {
			case v := <-e.queue:
				batch = append(batch, v)
			default:
				break fill
			}
		}
		e.mu.Lock()
		d := e.dispatcher
		e.mu.Unlock()
		for i, v := range batch {
			e.deliver(d, v)
			batch[i] = nil
		}
	}
}

// deliver splits one frame and hands it to d; it takes ownership of v.
func (e *Endpoint) deliver(d stack.NetworkDispatcher, v *buffer.View) {
	frame := v.AsSlice()
	size := len(frame)
	if d == nil || size < header.EthernetMinimumSize {
		v.Release()
		e.rxDropBad.Add(1)
		return
	}
	eth := header.Ethernet(frame)
	dst := eth.DestinationAddress()
	if dst != e.LinkAddress() && !header.IsMulticastEthernetAddress(dst) && dst != header.EthernetBroadcastAddress {
		v.Release()
		e.rxDropBad.Add(1)
		return
	}
	proto := eth.Type()
	hl := link.HeaderLen(frame)
	payload := link.SplitPayload(v, hl)
	if hl > 0 {
		e.rxH.Add(uint64(hl))
		if fn := e.hook.Load(); fn != nil {
			// frame[:hl] still holds the headers: SplitPayload copied them
			// and trimmed v, leaving the memory as it was.
			(*fn)(frame[:hl], v, 0)
		}
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	if !e.ParseHeader(pkt) {
		pkt.DecRef()
		e.rxDropBad.Add(1)
		return
	}
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
	// Counted once the stack is done with the frame, so a reader that sees
	// the count knows the frame's effects (a queued datagram, an ACK) are
	// in place: tests wait on it.
	e.rxFrames.Add(1)
	e.rxBytes.Add(uint64(size))
}

// drain releases frames left in the queue after Close.
func (e *Endpoint) drain() {
	for {
		select {
		case v := <-e.queue:
			v.Release()
		default:
			return
		}
	}
}
