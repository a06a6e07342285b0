package impair

import (
	"fmt"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// Endpoint is a link endpoint that impairs the traffic between a stack and
// an inner link endpoint. Create it with New; it is safe for concurrent use.
//
// It is built on link.Nested, which forwards every link-endpoint method
// it does not override to the inner link, guards the stack's dispatcher
// (gVisor's nested.Endpoint), and forwards the stack's zcnet hooks (the
// payload hook of zero-copy receive, the connection lookup and SYN
// pressure of admission) to the inner link, so impairing a link does not
// make its receive copy. The inner link adds its Ethernet header before a
// packet reaches WritePackets, so the outbound direction sees (and
// corruption skips) the link header.
type Endpoint struct {
	// Nested holds the inner link and the stack's dispatcher. Initialised
	// by New (its own lock guards the dispatcher).
	link.Nested
	// cfg is the configuration, validated, defaults filled in. Immutable.
	cfg Config
	// out and in impair the two directions. Immutable pointers.
	out, in *pipe

	// wg counts timer goroutines, for Wait.
	wg sync.WaitGroup

	// mu orders Attach and Close, so no pipe starts after Close.
	mu sync.Mutex
	// +checklocks:mu
	closed bool
}

var (
	_ stack.LinkEndpoint        = (*Endpoint)(nil)
	_ stack.GSOEndpoint         = (*Endpoint)(nil)
	_ stack.NetworkDispatcher   = (*Endpoint)(nil)
	_ stack.NetworkLinkEndpoint = (*Endpoint)(nil)
	_ link.PayloadHooker        = (*Endpoint)(nil)
	_ link.Admitter             = (*Endpoint)(nil)
)

// New returns an Endpoint that impairs the traffic between its stack and
// inner as cfg says. The Endpoint takes over inner: Close closes it, and
// inner's dispatcher becomes the Endpoint. Timer goroutines start when a
// stack attaches the Endpoint (Attach) and stop when it detaches or
// closes it.
func New(inner stack.LinkEndpoint, cfg Config) (*Endpoint, error) {
	if inner == nil {
		return nil, fmt.Errorf("nil inner link endpoint: %w", ErrInvalidConfig)
	}
	var err error
	if cfg.Outbound, err = cfg.Outbound.validate("Outbound"); err != nil {
		return nil, err
	}
	if cfg.Inbound, err = cfg.Inbound.validate("Inbound"); err != nil {
		return nil, err
	}
	e := &Endpoint{cfg: cfg}
	e.Init(inner, e)
	e.out = newPipe(cfg.Outbound, cfg.Seed, outboundStream, e.writeOut)
	e.in = newPipe(cfg.Inbound, cfg.Seed, inboundStream, e.deliverIn)
	return e, nil
}

// Config returns the configuration in effect, with defaults filled in.
func (e *Endpoint) Config() Config { return e.cfg }

// Stats returns a snapshot of the counters. Counters of the two
// directions, and of one direction, are read one by one while traffic may
// flow; the balance in DirectionStats holds for a quiet direction.
func (e *Endpoint) Stats() Stats {
	return Stats{Outbound: e.out.c.snapshot(e.out.pass), Inbound: e.in.c.snapshot(e.in.pass)}
}

// WritePackets implements stack.LinkWriter.WritePackets: the outbound
// direction. As with every gVisor link, the caller keeps its references to
// the packets; the Endpoint takes its own for those it holds back, delays
// or hands to the inner link later.
//
// For an impaired direction it reports every packet as written, lost ones
// included (a lossy wire does not tell the sender), and returns
// ErrClosedForSend, having taken nothing, while the Endpoint is detached or
// closed. A pass-through direction returns what the inner link returns.
func (e *Endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	p := e.out
	n := pkts.Len()
	if p.pass {
		w, err := e.Inner().WritePackets(pkts)
		p.c.in.Add(uint64(n))
		if w < n {
			p.c.refused.Add(uint64(n - w))
		}
		return w, err
	}
	if !p.offer(pkts.AsSlice(), 0) {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return n, nil
}

// writeOut is the outbound sink: it hands batch to the inner link and
// releases the batch's references.
func (e *Endpoint) writeOut(batch []entry) {
	var l stack.PacketBufferList
	for i := range batch {
		l.PushBack(batch[i].pkt)
	}
	w, _ := e.Inner().WritePackets(l)
	w = min(max(w, 0), len(batch))
	e.out.c.passed.Add(uint64(w))
	if w < len(batch) {
		e.out.c.refused.Add(uint64(len(batch) - w))
	}
	l.DecRef()
}

// DeliverNetworkPacket implements stack.NetworkDispatcher for the inner
// link: the inbound direction. As the interface requires, the caller keeps
// its reference to pkt; the Endpoint takes its own for a packet it holds
// back or delays. Packets that arrive while the Endpoint is detached or
// closed are dropped and counted in DroppedClosed.
func (e *Endpoint) DeliverNetworkPacket(protocol tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	p := e.in
	if p.pass {
		p.c.in.Add(1)
		e.Nested.DeliverNetworkPacket(protocol, pkt)
		return
	}
	one := [1]*stack.PacketBuffer{pkt}
	p.offer(one[:], protocol)
}

// deliverIn is the inbound sink: it hands each packet of batch to the
// stack and releases the batch's references.
func (e *Endpoint) deliverIn(batch []entry) {
	for i := range batch {
		e.Nested.DeliverNetworkPacket(batch[i].proto, batch[i].pkt)
		batch[i].pkt.DecRef()
	}
	e.in.c.passed.Add(uint64(len(batch)))
}

// Attach implements stack.LinkEndpoint.Attach. Attaching a dispatcher
// starts the timer goroutines of impaired directions; attaching nil (the
// stack removing its NIC) stops them, waits for them, and releases every
// packet still held or queued, so that no packet reaches the old
// dispatcher after Attach returns. Like gVisor's fdbased link, it waits
// for a delivery in progress to return, and the stack calls it with its
// own lock held: a delivery that needs that lock (one that finds a route
// for a reply while the NIC is being removed) would wait for it. Stop
// traffic before removing the NIC.
func (e *Endpoint) Attach(dispatcher stack.NetworkDispatcher) {
	if dispatcher == nil {
		e.out.stop()
		e.in.stop()
		e.Nested.Attach(nil)
		return
	}
	e.mu.Lock()
	if !e.closed {
		e.out.start(&e.wg)
		e.in.start(&e.wg)
	}
	e.mu.Unlock()
	e.Nested.Attach(dispatcher)
}

// Close implements stack.LinkEndpoint.Close. It stops the timer goroutines,
// releases every packet still held or queued (counted in DroppedClosed) and
// closes the inner link. It is idempotent.
func (e *Endpoint) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.mu.Unlock()
	e.out.stop()
	e.in.stop()
	e.Nested.Close()
}

// Wait implements stack.LinkEndpoint.Wait: it waits for the timer
// goroutines, which Attach(nil) or Close stop, and then for the inner
// link's goroutines.
func (e *Endpoint) Wait() {
	e.wg.Wait()
	e.Nested.Wait()
}

// Capabilities implements stack.LinkEndpoint.Capabilities: the inner link's,
// minus the checksum offloads that would let corruption through unseen.
// With inbound corruption the stack must verify received checksums, so
// CapabilityRXChecksumOffload is withheld; with outbound corruption the
// stack must write complete checksums before the damage, so
// CapabilityTXChecksumOffload is withheld.
func (e *Endpoint) Capabilities() stack.LinkEndpointCapabilities {
	c := e.Inner().Capabilities()
	if e.cfg.Inbound.Corrupt > 0 {
		c &^= stack.CapabilityRXChecksumOffload
	}
	if e.cfg.Outbound.Corrupt > 0 {
		c &^= stack.CapabilityTXChecksumOffload
	}
	return c
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO. With outbound
// corruption it reports no GSO, because GSO packets carry only a partial
// checksum that the inner link or the kernel completes after the damage.
func (e *Endpoint) SupportedGSO() stack.SupportedGSO {
	if e.cfg.Outbound.Corrupt > 0 {
		return stack.GSONotSupported
	}
	return e.Nested.SupportedGSO()
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize (0 without GSO; see
// SupportedGSO).
func (e *Endpoint) GSOMaxSize() uint32 {
	if e.cfg.Outbound.Corrupt > 0 {
		return 0
	}
	return e.Nested.GSOMaxSize()
}
