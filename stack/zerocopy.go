package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/frame"
)

// Zero-copy receive plumbing.
//
// gVisor's TCP and UDP endpoints hand Read's writer slices of the very
// memory their received packets live in. A link that splits headers from
// payload (link.SplitPayload) leaves that memory in the view the link
// received into, so the stack can turn those slices into references the
// application owns, without copying:
//
//  1. A socket that wants zero-copy receive registers a Flow for its
//     addresses (RegisterFlow) before any data can arrive for it.
//  2. Every link of the stack calls the registry's hook with each received
//     payload view (link.PayloadHook). The hook finds the flow the packet
//     belongs to — a map lookup, skipped at once for ports no flow uses —
//     and keeps a shadow: a clone of the view (the same memory, kept alive
//     and unchanged), its address range and, for TCP, the sequence number
//     of its first byte.
//  3. When the socket reads, its writer passes each slice to Flow.Take,
//     which finds the shadow holding it and returns a new clone trimmed to
//     exactly that slice: the application's reference. A slice no shadow
//     holds (data that arrived before registration, segments the stack
//     merged or copied) is reported as not found, and the socket copies it
//     and counts the copy.
//  4. Shadows are released once their data has been delivered: for TCP,
//     every shadow ending at or before the sequence number just read; for
//     UDP, every datagram that arrived before the one just read (the stack
//     dropped those or they were read by copy). A flow holds at most
//     MaxShadowBytes of memory — the receive views its shadows keep alive,
//     counted by capacity, not by payload bytes; past that the oldest
//     shadows are released and counted as evicted. A TCP listener's flow
//     shadows only payload of connections the stack has (admit.go).

// ErrFlowExists reports a second registration of the same addresses.
var ErrFlowExists = errors.New("stack: zero-copy flow already registered")

// DefaultMaxShadowBytes bounds the memory one flow's shadows keep alive:
// twice the largest default TCP receive buffer, so a full window plus its
// retransmissions fit. A UDP socket asks for less (package api bounds it by
// its receive buffer).
const DefaultMaxShadowBytes = 2 * (16 << 20)

// flowKey names a flow from the receiving side. Zero addresses and ports are
// wildcards: a listener or an unconnected UDP socket registers only its local
// port (and address, if bound to one).
type flowKey struct {
	proto  tcpip.TransportProtocolNumber
	local  netip.AddrPort
	remote netip.AddrPort
}

// registry maps flows to the sockets that receive without copying.
type registry struct {
	mu    sync.RWMutex
	flows map[flowKey]*Flow // +checklocks:mu
	// ports counts registered flows per local port, so the hook rejects
	// traffic for other ports without building a key.
	ports [1 << 16]atomic.Int32

	// Totals across flows, for Stack.ZeroCopyStats.
	shadowed, evicted, unmatchedFrames, notKept atomic.Uint64

	// connected reports whether a TCP frame's 4-tuple has a connection of
	// its own in the stack (stack/admit.go). Set by New, immutable after.
	connected func(hdr []byte) bool
}

// Flow is one socket's zero-copy receive state: the shadows of its received
// payloads. Create it with Stack.RegisterFlow; Close it when the socket
// closes. Take is safe for concurrent use with the link hooks.
type Flow struct {
	reg    *registry
	key    flowKey
	max    int
	parent *Flow // the listener's flow, for an accepted connection; else nil

	mu      sync.Mutex
	shadows []shadow // +checklocks:mu; in arrival order
	// arr is the whole array shadows lives in (len == cap): shadows is
	// always a subslice of it, so once the oldest shadows have been
	// dropped from the front, the queue can move back down into the
	// same array instead of growing a new one (pushLocked).
	arr    []shadow // +checklocks:mu
	bytes  int      // +checklocks:mu; memory the shadows keep alive (chunk capacity, see shadow.mem)
	closed bool     // +checklocks:mu

	taken, evicted atomic.Uint64
}

// shadow is a reference to one received payload view.
type shadow struct {
	v    *buffer.View // a clone: keeps the memory alive and unchanged
	base uintptr      // address of the view's first payload byte
	n    int          // payload bytes in the view
	seq  seqnum.Value // TCP: sequence number of the first byte
	// mem is the memory the shadow keeps alive, charged to the flow's
	// bound: its chunk's whole capacity, or 0 when the shadow before it
	// shares the chunk (the datagrams cut from one USO super-frame).
	mem   int
	chunk *byte // the chunk's memory (View.BasePtr)
}

// RegisterFlow starts keeping shadows of payloads that arrive for the given
// addresses, seen from this stack: local is the socket's own address (the
// zero address when bound to all), remote its peer's (zero when not
// connected). proto is tcp.ProtocolNumber or udp.ProtocolNumber.
func (st *Stack) RegisterFlow(proto tcpip.TransportProtocolNumber, local, remote netip.AddrPort, maxShadowBytes int) (*Flow, error) {
	if proto != header.TCPProtocolNumber && proto != header.UDPProtocolNumber {
		return nil, fmt.Errorf("%w: zero-copy flows are TCP or UDP, not protocol %d", ErrInvalidOptions, proto)
	}
	if local.Port() == 0 {
		return nil, fmt.Errorf("%w: zero-copy flow needs a local port", ErrInvalidOptions)
	}
	if maxShadowBytes <= 0 {
		maxShadowBytes = DefaultMaxShadowBytes
	}
	k := flowKey{proto: proto, local: normAP(local), remote: normAP(remote)}
	r := &st.zc
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flows == nil {
		r.flows = map[flowKey]*Flow{}
	}
	if _, ok := r.flows[k]; ok {
		return nil, fmt.Errorf("%w: %v %v -> %v", ErrFlowExists, proto, remote, local)
	}
	f := &Flow{reg: r, key: k, max: maxShadowBytes}
	r.flows[k] = f
	r.ports[local.Port()].Add(1)
	return f, nil
}

// normAP drops an IPv4-mapped prefix and any zone, and turns the
// unspecified addresses into the wildcard, so keys built from packets and
// from sockets agree.
func normAP(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().IsValid() || ap.Addr().Unmap().IsUnspecified() {
		return netip.AddrPortFrom(netip.Addr{}, ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// hook is the link.PayloadHook every link of the stack calls.
func (r *registry) hook(hdr []byte, payload *buffer.View, off int) {
	key, seq, ok := parseFlow(hdr)
	if !ok || r.ports[key.local.Port()].Load() == 0 {
		return
	}
	f := r.lookup(key)
	if f == nil {
		r.unmatchedFrames.Add(1)
		return
	}
	if f.key.proto == header.TCPProtocolNumber && !f.key.remote.IsValid() && r.connected != nil && !r.connected(hdr) {
		// A listener's flow keeps the first data of connections not
		// yet accepted; payload for no connection at all the stack
		// drops (and answers with a RST), so a shadow of it would only
		// pin memory until evicted.
		r.notKept.Add(1)
		return
	}
	f.add(payload, seq.Add(seqnum.Size(off)))
}

// lookup finds the most specific flow for a packet's key.
func (r *registry) lookup(k flowKey) *Flow {
	anyLocal := netip.AddrPortFrom(netip.Addr{}, k.local.Port())
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, c := range [...]flowKey{
		k,
		{k.proto, anyLocal, k.remote},
		{k.proto, k.local, netip.AddrPort{}},
		{k.proto, anyLocal, netip.AddrPort{}},
	} {
		if f, ok := r.flows[c]; ok {
			return f
		}
	}
	return nil
}

// parseFlow reads the receiving side's flow key and the TCP sequence number
// from a frame's headers (the header part of a header split: the frame's
// length is not known here).
func parseFlow(hdr []byte) (flowKey, seqnum.Value, bool) {
	var r frame.Repr
	if r.ParseHeaders(hdr) != nil || r.Depth < frame.DepthTransport {
		return flowKey{}, 0, false
	}
	var proto tcpip.TransportProtocolNumber
	switch r.Proto {
	case uint8(header.TCPProtocolNumber):
		proto = header.TCPProtocolNumber
	case uint8(header.UDPProtocolNumber):
		proto = header.UDPProtocolNumber
	default:
		return flowKey{}, 0, false
	}
	return flowKey{
		proto:  proto,
		local:  netip.AddrPortFrom(r.DstAddr(), r.DstPort),
		remote: netip.AddrPortFrom(r.SrcAddr(), r.SrcPort),
	}, seqnum.Value(r.Seq), true
}

// add keeps a shadow of payload.
func (f *Flow) add(payload *buffer.View, seq seqnum.Value) {
	b := payload.AsSlice()
	if len(b) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	sh := shadow{v: payload.Clone(), base: sliceAddr(b), n: len(b), seq: seq, chunk: payload.BasePtr()}
	if k := len(f.shadows); k == 0 || f.shadows[k-1].chunk != sh.chunk {
		// A small payload pins the whole receive view it arrived in:
		// the bound is on memory, not payload bytes, or a flood of
		// tiny datagrams would pin a thousand times its bound.
		sh.mem = max(len(b), payload.Capacity())
	}
	f.pushLocked(sh)
	f.bytes += sh.mem
	f.reg.shadowed.Add(1)
	for f.bytes > f.max && len(f.shadows) > 1 {
		f.dropFrontLocked(1)
		f.evicted.Add(1)
		f.reg.evicted.Add(1)
	}
}

// pushLocked appends s to the shadows. When the queue has reached the end
// of its array after shadows were dropped from the front, it moves back
// down to the array's start if it fills at most half of it, and only
// otherwise grows into a new array of twice its length; either way each
// move is paid for by as many pushes as it moves, and a queue of steady
// length stops allocating. (A bare append after dropping from the front
// would allocate a new array once per array's worth of datagrams, however
// short the queue.)
//
// +checklocks:f.mu
func (f *Flow) pushLocked(s shadow) {
	if len(f.shadows) == cap(f.shadows) {
		n := len(f.shadows)
		if len(f.arr) == 0 || n > len(f.arr)/2 {
			arr := make([]shadow, max(8, 2*n))
			copy(arr, f.shadows)
			clear(f.shadows)
			f.arr = arr
		} else {
			copy(f.arr, f.shadows)
			clear(f.arr[n:])
		}
		f.shadows = f.arr[:n]
	}
	f.shadows = append(f.shadows, s)
}

// dropLocked releases shadow i.
//
// +checklocks:f.mu
func (f *Flow) dropLocked(i int) {
	if i == 0 {
		f.dropFrontLocked(1)
		return
	}
	s := f.shadows[i]
	s.v.Release()
	f.bytes -= s.mem
	f.shadows = append(f.shadows[:i], f.shadows[i+1:]...)
}

// dropFrontLocked releases the k oldest shadows. It reslices rather than
// moving the rest down: datagrams are taken oldest first, so with a deep
// UDP queue a shift per datagram would cost O(queue) each; append reuses or
// reallocates the backing array as the slice grows again.
//
// +checklocks:f.mu
func (f *Flow) dropFrontLocked(k int) {
	for i := range k {
		f.shadows[i].v.Release()
		f.bytes -= f.shadows[i].mem
	}
	clear(f.shadows[:k]) // the views are released; let the array forget them
	if k == len(f.shadows) {
		f.shadows = f.arr[:0] // empty: start again at the array's front
		return
	}
	f.shadows = f.shadows[k:]
}

// Take returns a new reference (a view the caller owns and must Release) to
// the received memory p lies in, trimmed to exactly p, if a shadow of this
// flow holds p; and releases the shadows whose data has now been delivered
// (step 4 of the flow above). It returns nil if no shadow holds p: the
// caller must copy p.
func (f *Flow) Take(p []byte) *buffer.View {
	a := sliceAddr(p)
	if f == nil || a == 0 {
		return nil
	}
	end := a + uintptr(len(p))
	if v := f.take(a, end, len(p), false); v != nil || f.parent == nil {
		return v
	}
	return f.parent.take(a, end, len(p), true)
}

// take finds the shadow holding [a, end) and returns a new reference to
// exactly those n bytes, then releases what is done with: for a flow of one
// connection, shadows delivered before this slice (step 4); for a shared
// (listener's) flow, whose shadows belong to many connections and whose
// sequence numbers say nothing of each other, the shadow itself once a
// slice reaching its end has been taken.
func (f *Flow) take(a, end uintptr, n int, shared bool) *buffer.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.shadows {
		s := &f.shadows[i]
		if a < s.base || end > s.base+uintptr(s.n) {
			continue
		}
		off := int(a - s.base)
		v := s.v.Clone()
		v.TrimFront(off)
		v.CapLength(n)
		f.taken.Add(1)
		switch {
		case shared:
			if off+n == s.n {
				f.dropLocked(i)
			}
		case f.key.proto == header.TCPProtocolNumber:
			next := s.seq.Add(seqnum.Size(off + n))
			if i == 0 {
				// In order, the common case: what is delivered is a
				// prefix of the shadows.
				f.releaseDeliveredPrefixLocked(next)
			} else {
				// Out of order (a retransmission filled a hole, or a
				// shadow the stack never delivered is in front):
				// delivered shadows may be anywhere.
				f.releaseDeliveredLocked(next)
			}
		default:
			// A datagram is read whole and in arrival order: this one
			// and every earlier one are done with.
			f.dropFrontLocked(i + 1)
		}
		return v
	}
	return nil
}

// releaseDeliveredLocked releases TCP shadows that end at or before next,
// the sequence number of the first byte not yet delivered.
//
// +checklocks:f.mu
func (f *Flow) releaseDeliveredLocked(next seqnum.Value) {
	j := 0
	for _, s := range f.shadows {
		if s.seq.Add(seqnum.Size(s.n)).LessThanEq(next) {
			s.v.Release()
			f.bytes -= s.mem
			continue
		}
		f.shadows[j] = s
		j++
	}
	clear(f.shadows[j:])
	f.shadows = f.shadows[:j]
}

// releaseDeliveredPrefixLocked releases the oldest TCP shadows while they
// end at or before next. A delivered shadow behind one that is not is left
// for a later Take: either the prefix reaches it once the one in front is
// delivered, or a Take finds its slice past the front and walks them all.
//
// +checklocks:f.mu
func (f *Flow) releaseDeliveredPrefixLocked(next seqnum.Value) {
	k := 0
	for k < len(f.shadows) && f.shadows[k].seq.Add(seqnum.Size(f.shadows[k].n)).LessThanEq(next) {
		k++
	}
	if k > 0 {
		f.dropFrontLocked(k)
	}
}

// FlowStats counts one flow's shadows.
type FlowStats struct {
	Shadows     int    // shadows held now
	ShadowBytes int    // memory they keep alive (receive views, by capacity)
	Taken       uint64 // slices handed out by Take
	Evicted     uint64 // shadows released unused because the flow held MaxShadowBytes
}

// Stats returns the flow's counters.
func (f *Flow) Stats() FlowStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FlowStats{Shadows: len(f.shadows), ShadowBytes: f.bytes, Taken: f.taken.Load(), Evicted: f.evicted.Load()}
}

// RegisterChild registers a flow for one connection accepted by the
// listener whose flow is f. The connection's first data may have arrived
// before it was accepted and so sit in f's shadows: the child's Take looks
// there too.
func (f *Flow) RegisterChild(st *Stack, local, remote netip.AddrPort) (*Flow, error) {
	nf, err := st.RegisterFlow(f.key.proto, local, remote, f.max)
	if err != nil {
		return nil, err
	}
	nf.parent = f
	return nf, nil
}

// Close unregisters the flow and releases every shadow. Safe to call more
// than once.
func (f *Flow) Close() {
	r := f.reg
	r.mu.Lock()
	if r.flows[f.key] == f {
		delete(r.flows, f.key)
		r.ports[f.key.local.Port()].Add(-1)
	}
	r.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, s := range f.shadows {
		s.v.Release()
	}
	f.shadows, f.arr = nil, nil
	f.bytes = 0
}

// ZeroCopyStats counts the zero-copy receive registry's work for the whole
// stack.
type ZeroCopyStats struct {
	Flows           int    // flows registered now
	Shadowed        uint64 // payload views shadowed
	Evicted         uint64 // shadows released unused (flow over its bound)
	UnmatchedFrames uint64 // frames to a zero-copy port but no registered flow
	NotKept         uint64 // payloads for a TCP listener's port with no connection: not shadowed
}

// ZeroCopyStats returns the registry's counters.
func (st *Stack) ZeroCopyStats() ZeroCopyStats {
	st.zc.mu.RLock()
	n := len(st.zc.flows)
	st.zc.mu.RUnlock()
	return ZeroCopyStats{Flows: n, Shadowed: st.zc.shadowed.Load(), Evicted: st.zc.evicted.Load(), UnmatchedFrames: st.zc.unmatchedFrames.Load(), NotKept: st.zc.notKept.Load()}
}

// hookLink gives ep, the link of NIC nic, the hooks it takes: the payload
// hook of zero-copy receive (link.PayloadHooker) and the connection lookup
// and SYN pressure of admission (link.Admitter). A link that takes neither
// works, but the stack copies every byte it receives.
func (st *Stack) hookLink(nic tcpip.NICID, ep gstack.LinkEndpoint) {
	if h, ok := ep.(link.PayloadHooker); ok {
		h.SetPayloadHook(st.zc.hook)
	}
	if h, ok := ep.(link.Admitter); ok {
		h.SetConnLookup(st.connLookup(nic))
		h.SetSYNPressure(st.synPressure)
	}
}
