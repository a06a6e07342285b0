package ring

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// rxBatch is the most frames the receive loop takes per pass.
const rxBatch = 64

// endpoint is the stack.LinkEndpoint half that Link and PeerEndpoint share:
// Ethernet framing, transmit into the current channel, and the receive loop.
type endpoint struct {
	ctr       counters
	frameSize uint32 // immutable
	gso       bool   // immutable; Config.GSO (stack side) or as the handshake said (peer)
	mtu       atomic.Uint32
	addr      atomic.Value            // tcpip.LinkAddress
	ch        atomic.Pointer[channel] // the live session; nil between peers
	hook      link.HookSlot
	// adm budgets TCP segments at listeners (link.Admission): a ring
	// peer can flood SYNs as well as a TAP's kernel side can.
	adm link.Admission

	mu         sync.Mutex
	dispatcher stack.NetworkDispatcher // +checklocks:mu
	onClose    func()                  // +checklocks:mu
}

func (e *endpoint) init(mtu, frameSize uint32, gso bool, addr tcpip.LinkAddress) {
	e.mtu.Store(mtu)
	e.frameSize = frameSize
	e.gso = gso
	if addr != "" {
		e.addr.Store(addr)
		return
	}
	for {
		if a := tcpip.GetRandMacAddr(); header.IsValidUnicastEthernetAddress(a) {
			e.addr.Store(a)
			return
		}
	}
}

// Stats returns this side's counters.
func (e *endpoint) Stats() Stats {
	s := e.ctr.snapshot()
	d := e.adm.Drops()
	s.RxDropsFloodSYN, s.RxDropsFloodCtl, s.RxDropsStale = d.SYN, d.Ctl, d.Stale
	return s
}

// Totals implements link.Counted: the frame and byte totals of Stats.
func (e *endpoint) Totals() link.Totals {
	s := e.Stats()
	return link.Totals{RxFrames: s.RxFrames, RxBytes: s.RxBytes, TxFrames: s.TxFrames, TxBytes: s.TxBytes}
}

// SetPayloadHook installs fn, called for every split frame before delivery
// (see link.PayloadHook). nil removes it.
func (e *endpoint) SetPayloadHook(fn link.PayloadHook) {
	e.hook.Set(fn)
}

// SetConnLookup implements link.Admitter (see link.Admission).
func (e *endpoint) SetConnLookup(fn link.ConnLookup) { e.adm.SetConnLookup(fn) }

// SetSYNPressure implements link.Admitter (see link.Admission).
func (e *endpoint) SetSYNPressure(fn link.SYNPressure) { e.adm.SetSYNPressure(fn) }

// MTU implements stack.LinkEndpoint.MTU.
func (e *endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU; values that do not fit a
// frame are ignored.
func (e *endpoint) SetMTU(mtu uint32) {
	if mtu >= header.IPv4MinimumProcessableDatagramSize && mtu+header.EthernetMinimumSize <= e.frameSize {
		e.mtu.Store(mtu)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength.
func (*endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (e *endpoint) LinkAddress() tcpip.LinkAddress { return e.addr.Load().(tcpip.LinkAddress) }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (e *endpoint) SetLinkAddress(a tcpip.LinkAddress) { e.addr.Store(a) }

// Capabilities implements stack.LinkEndpoint.Capabilities: frames cross
// unchanged, so the stack computes and checks every checksum (the peer is
// untrusted).
func (*endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize: with GSO, packets
// up to a frame less its Ethernet header; 0 without.
func (e *endpoint) GSOMaxSize() uint32 {
	if e.gso {
		return gsoMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: host GSO with
// Config.GSO, where "the host" is the link, which passes the segment whole
// and completes its checksum (see WritePackets).
func (e *endpoint) SupportedGSO() stack.SupportedGSO {
	if e.gso {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (e *endpoint) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher != nil
}

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction.
func (e *endpoint) SetOnCloseAction(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.onClose = fn
}

func (e *endpoint) takeOnClose() func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn := e.onClose
	e.onClose = nil
	return fn
}

// AddHeader implements stack.LinkEndpoint.AddHeader.
func (e *endpoint) AddHeader(pkt *stack.PacketBuffer) { link.AddEthernetHeader(pkt, e.LinkAddress()) }

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*endpoint) ParseHeader(pkt *stack.PacketBuffer) bool { return link.ParseEthernetHeader(pkt) }

// WritePackets implements stack.LinkWriter.WritePackets. Each packet is
// serialised straight into one of our shared frames (the only copy, as a
// device's DMA read would be) and published; the batch costs at most one
// kick. With no peer, or no free frame, packets are dropped and counted, as
// a NIC with a full ring does: blocking could deadlock two stacks whose
// receive loops each wait to transmit.
func (e *endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	ch := e.ch.Load()
	if ch == nil {
		e.ctr.txDropNoPeer.Add(uint64(pkts.Len()))
		return pkts.Len(), nil
	}
	ch.txMu.Lock()
	defer ch.txMu.Unlock()
	if ch.dead {
		e.ctr.txDropNoPeer.Add(uint64(pkts.Len()))
		return pkts.Len(), nil
	}
	ch.reclaimLocked() // frames back early: a forged return is caught at once
	lazy := true
	for _, pkt := range pkts.AsSlice() {
		e.adm.NoteTx(pkt)
		lazy = lazy && isPureACK(pkt)
		size := pkt.Size()
		if size > int(e.frameSize) {
			e.ctr.txDropTooBig.Add(1)
			continue
		}
		err := ch.sendLocked(size, func(dst []byte) {
			n := 0
			for _, s := range pkt.AsSlices() {
				n += copy(dst[n:], s)
			}
			if pkt.GSOOptions.NeedsCsum {
				completeChecksum(dst, pkt)
			}
		})
		if err != nil {
			e.ctr.txDropNoFrame.Add(1)
			continue
		}
		e.ctr.txFrames.Add(1)
		e.ctr.txBytes.Add(uint64(size))
		e.ctr.txCopied.Add(uint64(size))
	}
	ch.flushLocked(lazy)
	return pkts.Len(), nil
}

// isPureACK reports whether pkt is a TCP segment with no payload and only
// the ACK flag: one whose kick may wait (see channel.flushLocked).
func isPureACK(pkt *stack.PacketBuffer) bool {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber || pkt.Data().Size() != 0 {
		return false
	}
	th := header.TCP(pkt.TransportHeader().Slice())
	return len(th) >= header.TCPMinimumSize && th.Flags() == header.TCPFlagAck
}

// completeChecksum finishes the transport checksum of frame, a copy of pkt
// that gVisor left with only the pseudo-header sum in the checksum field
// (host GSO's CHECKSUM_PARTIAL): the one's-complement sum from the start
// of the transport header to the end, over the partial sum, complemented.
// The receiving stack verifies every checksum (the link claims no RX
// offload), so a mistake here shows as dropped segments, never bad data.
func completeChecksum(frame []byte, pkt *stack.PacketBuffer) {
	start := len(pkt.LinkHeader().Slice()) + len(pkt.NetworkHeader().Slice())
	at := start + int(pkt.GSOOptions.CsumOffset)
	if at+2 > len(frame) {
		return
	}
	binary.BigEndian.PutUint16(frame[at:], ^checksum.Checksum(frame[start:], 0))
}

// rxLoop delivers frames from ch until it is shut down.
func (e *endpoint) rxLoop(ch *channel) {
	for ch.wait() {
		for {
			e.mu.Lock()
			d := e.dispatcher
			e.mu.Unlock()
			if ch.recvBatch(rxBatch, func(f []byte) { e.deliver(d, f) }) == 0 {
				break
			}
		}
		ch.tryReclaim()
	}
}

// deliver copies frame (shared memory, valid only during the call) into a
// view of our own — the one counted copy — splits it and hands it to d.
// The view is the frame's size, so a queued SYN holds a small chunk; a TCP
// segment for a listener over admission's budget is dropped here, checked
// on the copy (the peer may rewrite the shared frame at any time).
func (e *endpoint) deliver(d stack.NetworkDispatcher, frame []byte) {
	if d == nil || len(frame) < header.EthernetMinimumSize {
		e.ctr.rxDropBad.Add(1)
		return
	}
	v := buffer.NewViewWithData(frame)
	e.ctr.rxCopied.Add(uint64(len(frame)))
	own := v.AsSlice()
	eth := header.Ethernet(own)
	dst := eth.DestinationAddress()
	if dst != e.LinkAddress() && !header.IsMulticastEthernetAddress(dst) && dst != header.EthernetBroadcastAddress {
		v.Release()
		e.ctr.rxDropBad.Add(1)
		return
	}
	if e.adm.CheckFrame(own) != link.Admit { // the admission counts a refusal
		v.Release()
		return
	}
	proto := eth.Type()
	hl := link.HeaderLen(own)
	payload := link.SplitPayload(v, hl)
	if hl > 0 {
		e.ctr.rxHeader.Add(uint64(hl))
		if fn := e.hook.Load(); fn != nil {
			(*fn)(own[:hl], v, 0)
		}
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	if !e.ParseHeader(pkt) {
		pkt.DecRef()
		e.ctr.rxDropBad.Add(1)
		return
	}
	e.ctr.rxFrames.Add(1)
	e.ctr.rxBytes.Add(uint64(len(frame)))
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
}
