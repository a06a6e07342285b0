//go:build linux

package xdp

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// rxBatch is the most descriptors the receive loop takes per pass, and
// txKicks the most sendto calls per WritePackets batch (copy mode sends a
// bounded number of frames per call and says EAGAIN when more remain).
const (
	rxBatch = 64
	txKicks = 8
)

// kernel is what the data path needs of the socket: the system calls.
// *xsk is the real one; tests play the kernel with a fake.
type kernel interface {
	kick() (again bool, err error)
	wakeRx()
	wait() bool
	stop()
}

// Link is a stack.LinkEndpoint on one queue of a network interface through
// an AF_XDP socket. Open makes it; Close (or removing its NIC) detaches
// the program and frees the socket and the UMEM once the receive loop has
// stopped.
type Link struct {
	info  Info
	umem  []byte // the UMEM's bytes (a dmapool region's reservation)
	k     kernel
	fill  *addrRing
	comp  *addrRing
	rx    *descRing
	tx    *descRing
	book  *frameBook
	busy  time.Duration
	csum  bool // Config.PartialChecksums
	ctr   counters
	addrs atomic.Pointer[map[netip.Addr]struct{}]
	mtu   atomic.Uint32
	mac   atomic.Pointer[tcpip.LinkAddress]
	hook  link.HookSlot
	adm   link.Admission         // budget for TCP segments at listeners
	allow func(netip.Addr) error // adds to the program's maps; nil in tests
	free  func()                 // releases socket, program and UMEM after the loop stops
	sock  *xsk                   // for KernelStats; nil in tests
	prog  *program               // the loaded program; nil in tests

	mu         sync.Mutex
	dispatcher stack.NetworkDispatcher // +checklocks:mu
	onClose    func()                  // +checklocks:mu
	closed     bool                    // +checklocks:mu

	txMu   sync.Mutex
	txDead bool // +checklocks:txMu; after Close, writers drop

	err atomic.Pointer[error] // the first failed kick, for Err

	wg sync.WaitGroup
}

var (
	_ stack.LinkEndpoint = (*Link)(nil)
	_ link.PayloadHooker = (*Link)(nil)
	_ link.Counted       = (*Link)(nil)
	_ link.Admitter      = (*Link)(nil)
)

// newLink builds the data path over rings and memory already set up; start
// starts it. The frame book starts with every receive frame
// held: the first pass puts them on the fill ring.
func newLink(info Info, umem []byte, k kernel, fill, comp *addrRing, rx, tx *descRing, cfg Config) *Link {
	l := &Link{info: info, umem: umem, k: k, fill: fill, comp: comp, rx: rx, tx: tx, busy: cfg.BusyPoll, csum: cfg.PartialChecksums}
	l.book = newFrameBook(uint32(info.Frames), uint64(info.FrameSize), &l.ctr.census)
	set := make(map[netip.Addr]struct{}, len(cfg.Addresses))
	for _, a := range cfg.Addresses {
		set[a.Unmap()] = struct{}{}
	}
	l.addrs.Store(&set)
	mac := cfg.LinkAddress
	l.mac.Store(&mac)
	mtu := cfg.MTU
	if limit := uint32(frameRoom(info.FrameSize) - header.EthernetMinimumSize); mtu == 0 || mtu > limit {
		mtu = limit
	}
	l.mtu.Store(mtu)
	return l
}

// start fills the fill ring and starts the receive loop.
func (l *Link) start() {
	l.refill()
	l.wg.Add(1)
	go l.rxLoop()
}

// Info says how the link attached.
func (l *Link) Info() Info { return l.info }

// Err returns the first error the kernel gave a transmit kick (ENETDOWN
// once the interface is gone, say), or nil. The link goes on counting
// what it cannot send; a caller that wants to stop on such an error
// closes it.
func (l *Link) Err() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the link's counters.
func (l *Link) Stats() Stats {
	s := l.ctr.snapshot()
	d := l.adm.Drops()
	s.RxDropFloodSYN, s.RxDropFloodCtl, s.RxDropStale = d.SYN, d.Ctl, d.Stale
	return s
}

// Totals implements link.Counted: the frame and byte totals of Stats.
func (l *Link) Totals() link.Totals {
	s := l.Stats()
	return link.Totals{RxFrames: s.RxFrames, RxBytes: s.RxBytes, TxFrames: s.TxFrames, TxBytes: s.TxBytes}
}

// AllowAddress adds a to the addresses whose frames the program redirects
// to the stack and the link accepts.
func (l *Link) AllowAddress(a netip.Addr) error {
	a = a.Unmap()
	// Held throughout: Close cannot start the teardown that frees the
	// program's maps while they are written.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return net.ErrClosed
	}
	if l.allow != nil {
		if err := l.allow(a); err != nil {
			return err
		}
	}
	for {
		old := l.addrs.Load()
		set := make(map[netip.Addr]struct{}, len(*old)+1)
		for k := range *old {
			set[k] = struct{}{}
		}
		set[a] = struct{}{}
		if l.addrs.CompareAndSwap(old, &set) {
			return nil
		}
	}
}

// SetPayloadHook installs fn, called for every split frame before delivery
// (see link.PayloadHook); nil removes it.
func (l *Link) SetPayloadHook(fn link.PayloadHook) {
	l.hook.Set(fn)
}

// SetConnLookup implements link.Admitter (see link.Admission).
func (l *Link) SetConnLookup(fn link.ConnLookup) { l.adm.SetConnLookup(fn) }

// SetSYNPressure implements link.Admitter (see link.Admission).
func (l *Link) SetSYNPressure(fn link.SYNPressure) { l.adm.SetSYNPressure(fn) }

// MTU implements stack.LinkEndpoint.MTU.
func (l *Link) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU; values that do not fit a
// frame are ignored.
func (l *Link) SetMTU(mtu uint32) {
	if mtu >= header.IPv4MinimumProcessableDatagramSize && int(mtu)+header.EthernetMinimumSize <= frameRoom(l.info.FrameSize) {
		l.mtu.Store(mtu)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength.
func (*Link) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (l *Link) LinkAddress() tcpip.LinkAddress { return *l.mac.Load() }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (l *Link) SetLinkAddress(a tcpip.LinkAddress) { l.mac.Store(&a) }

// Capabilities implements stack.LinkEndpoint.Capabilities. Frames cross
// as they are on the wire, with complete checksums, and go out as the
// stack wrote them: no offload is claimed, so the stack computes every
// checksum and verifies every received one (the rule of the ring link;
// the TAP's vnet-header rules do not arise: there is no such header).
func (*Link) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*Link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.AddHeader.
func (l *Link) AddHeader(pkt *stack.PacketBuffer) { link.AddEthernetHeader(pkt, l.LinkAddress()) }

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*Link) ParseHeader(pkt *stack.PacketBuffer) bool { return link.ParseEthernetHeader(pkt) }

// Attach implements stack.LinkEndpoint.Attach. Frames that arrive with no
// dispatcher are dropped and counted.
func (l *Link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dispatcher = d
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (l *Link) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait: after Close, it returns when the
// receive loop has stopped and the socket, program and UMEM are freed.
func (l *Link) Wait() { l.wg.Wait() }

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (l *Link) SetOnCloseAction(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onClose = fn
}

// Close implements stack.LinkEndpoint.Close: it stops the receive loop,
// which then detaches the program and frees the socket and the UMEM.
// Safe to call more than once.
func (l *Link) Close() {
	l.mu.Lock()
	fn := l.onClose
	l.onClose = nil
	l.mu.Unlock()
	if fn != nil {
		fn() // removes the NIC, which calls Close again
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	l.txMu.Lock()
	l.txDead = true
	l.txMu.Unlock()
	l.k.stop()
}

// rxLoop takes batches off the RX ring until Close; with nothing to take it
// polls the ring for up to busy, then sleeps in poll(2).
func (l *Link) rxLoop() {
	defer l.wg.Done()
	defer l.teardown()
	for {
		if l.rxPass() > 0 {
			continue
		}
		if l.spin() {
			continue
		}
		l.ctr.rxSleeps.Add(1)
		if !l.k.wait() {
			return
		}
	}
}

// spin polls the RX ring for up to l.busy; true if entries arrived.
func (l *Link) spin() bool {
	if l.busy <= 0 {
		return false
	}
	deadline := time.Now().Add(l.busy)
	for i := 0; ; i++ {
		if n, _ := l.rx.ready(1); n > 0 {
			return true
		}
		if i&15 == 15 && time.Now().After(deadline) {
			return false
		}
		runtime.Gosched() // the goroutines that answer what we deliver may share our P
	}
}

// teardown runs on the receive loop's way out: transmit is already fenced
// (Close set txDead), so nothing touches the rings or the UMEM after it.
func (l *Link) teardown() {
	l.txMu.Lock()
	l.reapLocked()
	l.txMu.Unlock()
	if l.free != nil {
		l.free()
	}
}

// rxPass delivers one batch from the RX ring and refills the fill ring;
// it returns the number of descriptors taken.
func (l *Link) rxPass() int {
	n, bad := l.rx.ready(rxBatch)
	if bad {
		l.ctr.rxBadIndex.Add(1)
	}
	if n == 0 {
		return 0
	}
	l.ctr.rxBatches.Add(1)
	l.mu.Lock()
	d := l.dispatcher
	l.mu.Unlock()
	for i := uint32(0); i < n; i++ {
		desc := *l.rx.at(l.rx.local + i)
		idx, fault := l.book.checkRx(desc.Addr, desc.Len)
		if fault != descOK {
			l.ctr.rxDropBadDesc.Add(1)
			continue
		}
		l.deliver(d, l.umem[desc.Addr:desc.Addr+uint64(desc.Len)])
		l.book.hold(idx)
	}
	l.rx.release(n)
	l.refill()
	return int(n)
}

// refill moves held receive frames to the fill ring, as many as it has
// room for; the rest wait for the next pass (counted).
func (l *Link) refill() {
	held := l.book.held
	if len(held) == 0 {
		return
	}
	k := l.fill.free(uint32(len(held)))
	for i := uint32(0); i < k; i++ {
		a := held[len(held)-1-int(i)]
		*l.fill.at(l.fill.local + i) = a
		l.book.set(uint32(a/l.book.size), kernelRx)
	}
	l.book.held = held[:len(held)-int(k)]
	if k > 0 {
		l.fill.submit(k)
		if l.fill.needWakeup() {
			l.k.wakeRx()
		}
	}
	if rest := len(l.book.held); rest > 0 {
		l.ctr.rxFillDeferred.Add(uint64(rest))
	}
}

// deliver copies frame (UMEM, valid only during the call) into a view of
// our own — the one counted copy — splits it and hands it to d.
func (l *Link) deliver(d stack.NetworkDispatcher, frame []byte) {
	switch {
	case len(frame) < header.EthernetMinimumSize:
		l.ctr.rxDropShort.Add(1)
		return
	case len(frame) > int(l.MTU())+header.EthernetMinimumSize:
		l.ctr.rxDropOversized.Add(1)
		return
	}
	switch l.classify(frame) {
	case frameShort:
		l.ctr.rxDropShort.Add(1)
		return
	case frameNotOurs:
		l.ctr.rxDropNotForUs.Add(1)
		return
	}
	if d == nil {
		l.ctr.rxDropNotAttached.Add(1)
		return
	}
	// The frame is the link's until it goes back on the fill ring, so a
	// partial checksum is completed in place, before the copy.
	if l.csum && completePartial(frame) {
		l.ctr.rxCsumCompleted.Add(1)
	}
	// A TCP segment for a listener over admission's budget is dropped
	// before the copy (the kernel writes a frame only while it holds it).
	if l.adm.CheckFrame(frame) != link.Admit { // the admission counts a refusal
		return
	}
	l.ctr.rxCopied.Add(uint64(len(frame)))
	proto := header.Ethernet(frame).Type()
	// The copy out of the UMEM is the header split: headers and payload
	// each into a view of their own size, so a small payload pins a small
	// chunk (what the zero-copy shadows are charged) and the stack's
	// copy-on-write of the headers never reaches the payload.
	hl := link.HeaderLen(frame)
	var payload buffer.Buffer
	if hl > 0 && hl < len(frame) {
		hv := buffer.NewViewWithData(frame[:hl])
		pv := buffer.NewViewWithData(frame[hl:])
		l.ctr.rxHeader.Add(uint64(hl))
		if fn := l.hook.Load(); fn != nil {
			(*fn)(hv.AsSlice(), pv, 0)
		}
		payload = buffer.MakeWithView(hv)
		rest := buffer.MakeWithView(pv)
		payload.Merge(&rest)
	} else {
		payload = buffer.MakeWithView(buffer.NewViewWithData(frame))
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	if !l.ParseHeader(pkt) {
		pkt.DecRef()
		l.ctr.rxDropShort.Add(1)
		return
	}
	l.ctr.rxFrames.Add(1)
	l.ctr.rxBytes.Add(uint64(len(frame)))
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}

type frameClass uint8

const (
	frameOurs frameClass = iota
	frameShort
	frameNotOurs
)

// classify checks frame against what the program redirects: our MAC (or
// broadcast, multicast), and IPv4 or ARP for one of our IPv4 addresses,
// IPv6 for one of our IPv6 addresses or to a multicast address (neighbour
// solicitations). A frame that fails was redirected by mistake — another
// program on the interface, a map gone stale — and is dropped here.
func (l *Link) classify(frame []byte) frameClass {
	eth := header.Ethernet(frame)
	dst := eth.DestinationAddress()
	if dst != l.LinkAddress() && !header.IsMulticastEthernetAddress(dst) && dst != header.EthernetBroadcastAddress {
		return frameNotOurs
	}
	l3 := frame[header.EthernetMinimumSize:]
	set := *l.addrs.Load()
	var a netip.Addr
	switch eth.Type() {
	case header.IPv4ProtocolNumber:
		if len(l3) < header.IPv4MinimumSize {
			return frameShort
		}
		a = netip.AddrFrom4([4]byte(l3[16:20]))
	case header.ARPProtocolNumber:
		if len(l3) < header.ARPSize {
			return frameShort
		}
		a = netip.AddrFrom4([4]byte(l3[24:28]))
	case header.IPv6ProtocolNumber:
		if len(l3) < header.IPv6MinimumSize {
			return frameShort
		}
		a = netip.AddrFrom16([16]byte(l3[24:40]))
		if a.IsMulticast() && l3[6] == uint8(header.ICMPv6ProtocolNumber) {
			return frameOurs
		}
	default:
		return frameNotOurs
	}
	if _, ok := set[a]; !ok {
		return frameNotOurs
	}
	return frameOurs
}

// WritePackets implements stack.LinkWriter.WritePackets. Each packet is
// copied into a free transmit frame of the UMEM (the one copy, counted)
// and put on the TX ring; the batch costs a sendto only when the kernel
// asked for one. With no free frame even after reaping completions and
// kicking, packets are dropped and counted, as a NIC with a full ring
// does: blocking here could stall the stack's goroutines behind a stuck
// ring.
func (l *Link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	l.txMu.Lock()
	defer l.txMu.Unlock()
	if l.txDead {
		return 0, &tcpip.ErrClosedForSend{}
	}
	l.reapLocked()
	limit := min(frameRoom(l.info.FrameSize), int(l.MTU())+header.EthernetMinimumSize)
	queued := uint32(0)
	for _, pkt := range pkts.AsSlice() {
		l.adm.NoteTx(pkt)
		size := pkt.Size()
		if size > limit {
			l.ctr.txDropTooBig.Add(1)
			continue
		}
		addr, ok := l.book.takeTx()
		if !ok {
			l.flushLocked(queued)
			queued = 0
			l.reapLocked()
			if addr, ok = l.book.takeTx(); !ok {
				l.ctr.txDropNoFrame.Add(1)
				continue
			}
		}
		if l.tx.free(queued+1) < queued+1 {
			l.book.untakeTx(addr)
			l.ctr.txDropNoFrame.Add(1)
			continue
		}
		dst := l.umem[addr : addr+uint64(size)]
		n := 0
		for _, s := range pkt.AsSlices() {
			n += copy(dst[n:], s)
		}
		*l.tx.at(l.tx.local + queued) = txDesc(addr, size)
		queued++
		l.ctr.txFrames.Add(1)
		l.ctr.txBytes.Add(uint64(size))
		l.ctr.txCopied.Add(uint64(size))
	}
	l.flushLocked(queued)
	return pkts.Len(), nil
}

// flushLocked publishes n queued descriptors and kicks the kernel if it
// asked, again while it says it has more to send (a bounded number of
// times: the next batch kicks again).
func (l *Link) flushLocked(n uint32) {
	if n > 0 {
		l.tx.submit(n)
	}
	for i := 0; i < txKicks && l.tx.needWakeup() && l.tx.pending() > 0; i++ {
		l.ctr.txKicks.Add(1)
		again, err := l.k.kick()
		if err != nil {
			l.ctr.txKickErrors.Add(1)
			err = fmt.Errorf("xdp: sendto: %w", err)
			l.err.CompareAndSwap(nil, &err)
			return
		}
		if !again {
			return
		}
	}
}

// reapLocked takes transmitted frames back from the completion ring.
func (l *Link) reapLocked() {
	for {
		n, bad := l.comp.ready(rxBatch)
		if bad {
			l.ctr.txBadCompletion.Add(1)
		}
		if n == 0 {
			return
		}
		for i := uint32(0); i < n; i++ {
			if l.book.checkCompletion(*l.comp.at(l.comp.local + i)) != descOK {
				l.ctr.txBadCompletion.Add(1)
			}
		}
		l.comp.release(n)
	}
}
