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
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// UDP receive without gVisor's UDP queue.
//
// A UDPReceiver takes the place of a bound gVisor UDP endpoint in the
// stack's transport demuxer: datagrams for the endpoint's addresses come to
// the receiver's HandlePacket, which checks them as gVisor's UDP does
// (length, checksum unless the link verified it), keeps a reference to the
// payload view the link received into (no copy, no shadow) and queues it
// with its sender. The application takes datagrams from that queue in
// batches (Pop). gVisor's endpoint keeps everything else: its port
// reservation, sending, options, and ICMP errors, which the receiver passes
// on to it (HandleError), so a connected socket still learns of an
// unreachable peer through the endpoint.
//
// The queue is bounded as gVisor bounds its own: by the endpoint's receive
// buffer size in payload bytes, and, so that tiny datagrams cannot pin far
// more memory than that, by twice that size in the receive views they keep
// alive (counted by capacity, once per view shared by consecutive
// datagrams). A datagram past either bound is dropped and counted.

// ErrUDPReceiver reports an endpoint the receiver cannot take the place of
// (not a bound gVisor UDP endpoint of this stack).
var ErrUDPReceiver = errors.New("stack: cannot attach UDP receiver")

// UDPDatagram is one received datagram: its payload (the views it arrived
// in, which the taker owns and must release) and its sender.
type UDPDatagram struct {
	Payload buffer.Buffer
	From    netip.AddrPort
	mem     int // receive memory charged to the queue
}

// UDPReceiverStats counts one receiver's datagrams.
type UDPReceiverStats struct {
	Queued      int    // datagrams queued now
	QueuedBytes int    // their payload bytes
	QueuedMem   int    // receive memory they keep alive
	Received    uint64 // datagrams queued since attach
	DropsFull   uint64 // datagrams dropped: queue at its bound
	DropsBad    uint64 // datagrams dropped: bad length or checksum
}

// UDPReceiver is the receive queue of one UDP socket; see AttachUDPReceiver.
// Its methods are safe for concurrent use.
type UDPReceiver struct {
	ns     *gstack.Stack
	ep     tcpip.Endpoint
	te     gstack.TransportEndpoint // ep, as the demuxer knows it
	id     gstack.TransportEndpointID
	protos []tcpip.NetworkProtocolNumber
	flags  ports.Flags
	dev    tcpip.NICID
	notify func()
	ops    *tcpip.SocketOptions
	// stats are the stack's UDP counters, fetched once: the stack's
	// Stats returns its whole statistics tree by value.
	stats tcpip.UDPStats

	mu     sync.Mutex
	q      []UDPDatagram // +checklocks:mu; q[head:] are queued
	head   int           // +checklocks:mu
	bytes  int           // +checklocks:mu; payload bytes queued
	mem    int           // +checklocks:mu; receive memory queued
	last   *byte         // +checklocks:mu; chunk of the newest queued view
	closed bool          // +checklocks:mu

	received, dropsFull, dropsBad atomic.Uint64
}

var _ gstack.TransportEndpoint = (*UDPReceiver)(nil)

// AttachUDPReceiver makes a receiver take the place of ep, a bound (and
// possibly connected) gVisor UDP endpoint of this stack, in the transport
// demuxer. notify is called, without locks held, when a datagram arrives
// at an empty queue. ep must not be bound or connected again while the
// receiver is attached; Close the receiver before closing ep.
func (st *Stack) AttachUDPReceiver(ep tcpip.Endpoint, notify func()) (*UDPReceiver, error) {
	te, ok := ep.(gstack.TransportEndpoint)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a transport endpoint", ErrUDPReceiver, ep)
	}
	la, terr := ep.GetLocalAddress()
	if terr != nil || la.Port == 0 {
		return nil, fmt.Errorf("%w: endpoint not bound", ErrUDPReceiver)
	}
	id := gstack.TransportEndpointID{LocalPort: la.Port, LocalAddress: la.Addr}
	if ra, terr := ep.GetRemoteAddress(); terr == nil {
		id.RemotePort, id.RemoteAddress = ra.Port, ra.Addr
	}
	ops := ep.SocketOptions()
	r := &UDPReceiver{
		ns:     st.s,
		ep:     ep,
		te:     te,
		id:     id,
		flags:  ports.Flags{MostRecent: ops.GetReuseAddress(), LoadBalanced: ops.GetReusePort()},
		dev:    tcpip.NICID(ops.GetBindToDevice()),
		notify: notify,
		ops:    ops,
		stats:  st.s.Stats().UDP,
	}
	// The network protocols the endpoint registered under: the ones whose
	// demuxer finds it for exactly its own ID.
	for _, p := range [...]tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber} {
		if st.s.FindTransportEndpoint(p, udp.ProtocolNumber, id, r.dev) == te {
			r.protos = append(r.protos, p)
		}
	}
	if len(r.protos) == 0 {
		return nil, fmt.Errorf("%w: endpoint %v not found in the demuxer", ErrUDPReceiver, la)
	}
	st.s.UnregisterTransportEndpoint(r.protos, udp.ProtocolNumber, id, te, r.flags, r.dev)
	if terr := st.s.RegisterTransportEndpoint(r.protos, udp.ProtocolNumber, id, r, r.flags, r.dev); terr != nil {
		r.restore()
		return nil, fmt.Errorf("%w: %v", ErrUDPReceiver, terr)
	}
	for _, p := range r.protos {
		if st.s.FindTransportEndpoint(p, udp.ProtocolNumber, id, r.dev) != r {
			st.s.UnregisterTransportEndpoint(r.protos, udp.ProtocolNumber, id, r, r.flags, r.dev)
			r.restore()
			return nil, fmt.Errorf("%w: registration not found for protocol %d", ErrUDPReceiver, p)
		}
	}
	return r, nil
}

// restore gives the demuxer back gVisor's endpoint.
func (r *UDPReceiver) restore() {
	_ = r.ns.RegisterTransportEndpoint(r.protos, udp.ProtocolNumber, r.id, r.te, r.flags, r.dev)
}

// HandlePacket implements gstack.TransportEndpoint: it queues the datagram
// (or drops it, counted).
func (r *UDPReceiver) HandlePacket(id gstack.TransportEndpointID, pkt *gstack.PacketBuffer) {
	stats := &r.stats
	hdr := header.UDP(pkt.TransportHeader().Slice())
	n := pkt.Data().Size()
	lengthOK, csumOK := header.UDPValid(hdr, func() uint16 { return pkt.Data().Checksum() }, uint16(n),
		pkt.NetworkProtocolNumber, id.RemoteAddress, id.LocalAddress, pkt.RXChecksumValidated)
	if !lengthOK {
		stats.MalformedPacketsReceived.Increment()
		r.dropsBad.Add(1)
		return
	}
	if !csumOK {
		stats.ChecksumErrors.Increment()
		r.dropsBad.Add(1)
		return
	}
	limit := int(r.ops.GetReceiveBufferSize())
	from := netip.AddrPortFrom(NetipAddr(id.RemoteAddress), id.RemotePort)

	r.mu.Lock()
	if r.closed || r.bytes >= limit || r.mem >= 2*limit {
		r.mu.Unlock()
		stats.ReceiveBufferErrors.Increment()
		r.dropsFull.Add(1)
		return
	}
	d := UDPDatagram{Payload: payloadOf(pkt, n), From: from}
	vl := d.Payload.AsViewList()
	for v := vl.Front(); v != nil; v = v.Next() {
		if c := v.BasePtr(); c != r.last {
			d.mem += max(v.Size(), v.Capacity())
			r.last = c
		}
	}
	wasEmpty := r.head == len(r.q)
	if r.head > 0 && len(r.q) == cap(r.q) {
		// Move the queue down to the array's front rather than grow.
		k := copy(r.q, r.q[r.head:])
		clear(r.q[k:])
		r.q, r.head = r.q[:k], 0
	}
	r.q = append(r.q, d)
	r.bytes += n
	r.mem += d.mem
	r.mu.Unlock()

	stats.PacketsReceived.Increment()
	r.received.Add(1)
	if wasEmpty && r.notify != nil {
		r.notify()
	}
}

// payloadOf returns a reference to pkt's n payload bytes. When they lie in
// one view (the usual case: the link's payload view, or the one view a
// frame arrived in) only that view is cloned, not the headers' views.
func payloadOf(pkt *gstack.PacketBuffer, n int) buffer.Buffer {
	vl, off := pkt.AsViewList()
	off += pkt.HeaderSize() // inbound: nothing pushed, the headers consumed
	for v := vl.Front(); v != nil; v = v.Next() {
		sz := v.Size()
		if off >= sz {
			off -= sz
			continue
		}
		if sz-off != n || v.Next() != nil {
			break
		}
		c := v.Clone()
		c.TrimFront(off)
		return buffer.MakeWithView(c)
	}
	return pkt.Data().ToBuffer()
}

// Pop moves queued datagrams, oldest first, into dst and returns how many:
// at most len(dst), and no more once limit payload bytes are taken (the
// last may cross it; the first is always taken). The caller owns their
// payloads.
func (r *UDPReceiver) Pop(dst []UDPDatagram, limit int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, taken := 0, 0
	for n < len(dst) && r.head+n < len(r.q) && (n == 0 || taken < limit) {
		d := r.q[r.head+n]
		dst[n] = d
		sz := int(d.Payload.Size())
		taken += sz
		r.bytes -= sz
		r.mem -= d.mem
		n++
	}
	clear(r.q[r.head : r.head+n])
	r.head += n
	if r.head == len(r.q) {
		r.q, r.head, r.last = r.q[:0], 0, nil
	}
	return n
}

// Len returns how many datagrams are queued.
func (r *UDPReceiver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.q) - r.head
}

// HandleError implements gstack.TransportEndpoint: ICMP errors go to the
// gVisor endpoint, which reports them to the socket.
func (r *UDPReceiver) HandleError(transErr gstack.TransportError, pkt *gstack.PacketBuffer) {
	r.te.HandleError(transErr, pkt)
}

// Abort implements gstack.TransportEndpoint (the stack tearing down): it
// aborts gVisor's endpoint and closes the receiver.
func (r *UDPReceiver) Abort() {
	r.te.Abort()
	r.close(false)
}

// Wait implements gstack.TransportEndpoint.
func (r *UDPReceiver) Wait() { r.te.Wait() }

// Close takes the receiver out of the demuxer, gives the endpoint its
// place back (datagrams arriving later go to the endpoint's own queue until
// it closes) and releases every queued datagram. Safe to call more than
// once.
func (r *UDPReceiver) Close() { r.close(true) }

func (r *UDPReceiver) close(restore bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.ns.UnregisterTransportEndpoint(r.protos, udp.ProtocolNumber, r.id, r, r.flags, r.dev)
	if restore {
		r.restore()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := r.head; i < len(r.q); i++ {
		r.q[i].Payload.Release()
	}
	r.q, r.head, r.bytes, r.mem, r.last = nil, 0, 0, 0, nil
}

// Stats returns the receiver's counters.
func (r *UDPReceiver) Stats() UDPReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return UDPReceiverStats{
		Queued: len(r.q) - r.head, QueuedBytes: r.bytes, QueuedMem: r.mem,
		Received: r.received.Load(), DropsFull: r.dropsFull.Load(), DropsBad: r.dropsBad.Load(),
	}
}
