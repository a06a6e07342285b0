package stack

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Acknowledgement tracking: how many of the bytes a socket wrote its TCP
// peer has acknowledged, for send completions that mean "the peer has it"
// rather than "the stack has it" (liburing's zero-copy send notification,
// Linux's SO_EE_ORIGIN_ZEROCOPY).
//
// gVisor's TCP endpoint exports neither SND.UNA nor the size of its send
// queue (SendQueueSizeOption is not implemented for TCP). Its one public
// view of the sender is the TCP probe, a function the protocol calls after
// every segment an endpoint receives, with the endpoint's lock held and a
// copy of its state. Tracking is built on it:
//
//  1. New installs the probe (tcp.NewProtocolProbe) when
//     Options.TCPAckEvents is set. Without it there is no probe and
//     WatchAcks fails with ErrAckEventsOff.
//  2. A socket registers an AckWatch for its connected endpoint
//     (WatchAcks), keyed by the endpoint's 4-tuple, and from then on writes
//     only through AckWatch.Write. Write counts the bytes the endpoint
//     takes inside the endpoint's lock (tcpip.WriteOptions.Atomic), so the
//     count and the endpoint's send queue always change together.
//  3. After each received segment the probe looks the 4-tuple up (no lock:
//     sync.Map, and a counter that skips the lookup when nothing is
//     watched) and hands the watch SND.UNA and the bytes still held in the
//     send buffer (written, not yet acknowledged).
//  4. The watch turns them into Acked, the count of its written bytes the
//     peer has acknowledged, and calls its notify function when it grows.
//
// Step 4's arithmetic. SND.UNA + SndBufUsed is the sequence number just
// past the last byte the endpoint has queued; subtracting Written gives
// base, the sequence number of the first byte written through the watch,
// and Acked = SND.UNA - base. Because Written is exact inside the lock,
// base is exact; bytes written around the watch would only make base
// larger and Acked smaller, never early. The sum survives the FIN, which
// takes a sequence number but no buffer space: once the FIN is
// acknowledged SND.UNA is one past the data and SndBufUsed is -1. It does
// not survive a reset or an abort, which purge the send queue (SndBufUsed
// drops to 0 with data unacknowledged); gVisor puts the endpoint in its
// error or closed state under the same lock hold, so base is taken only
// while the endpoint is in neither, and kept afterwards: a reset never
// turns unacknowledged bytes into acknowledged ones.

// ErrAckEventsOff reports a request for acknowledgement tracking on a stack
// built without Options.TCPAckEvents.
var ErrAckEventsOff = errors.New("stack: TCP acknowledgement events are off (Options.TCPAckEvents)")

// ackRegistry maps watched endpoints' 4-tuples to their watches.
type ackRegistry struct {
	// n counts registered watches; the probe returns at once while it is
	// zero.
	n atomic.Int64
	// watches maps tcp.TCPEndpointID to *AckWatch. Entries are written once
	// per connection and read after every segment: sync.Map's read path
	// takes no lock for keys that are stable.
	watches sync.Map
}

// probe is the tcp.TCPProbeFunc. It runs after every segment any TCP
// endpoint of the stack receives, with that endpoint's lock held: it must
// not block or call into the endpoint.
func (r *ackRegistry) probe(s *tcp.TCPEndpointState) {
	if r.n.Load() == 0 {
		return
	}
	v, ok := r.watches.Load(s.ID)
	if !ok {
		return
	}
	v.(*AckWatch).observe(s)
}

// AckWatch follows how much of what one TCP connection wrote its peer has
// acknowledged. Create it with Stack.WatchAcks; write to the endpoint only
// through Write while it is open; Close it when the connection's owner lets
// go of the endpoint. Its methods are safe for concurrent use.
type AckWatch struct {
	reg    *ackRegistry
	ep     tcpip.Endpoint           // immutable; the watched endpoint
	id     tcp.TCPEndpointID        // immutable; its key in reg
	notify func()                   // immutable; see WatchAcks
	state  func() tcp.EndpointState // immutable; the endpoint's state, lock-free

	// written counts the bytes the endpoint has taken through Write. It
	// changes only inside the endpoint's lock (see Write), so the probe,
	// which runs inside the same lock, reads it exactly.
	written atomic.Uint64
	// acked counts the bytes of written the peer has acknowledged.
	// Invariant: non-decreasing, acked <= written.
	acked atomic.Uint64

	// mu guards the probe's state. Probes of one endpoint are already
	// serialised by its lock; mu keeps a stray probe of another endpoint
	// with the same 4-tuple (one the demuxer replaced) from racing.
	mu       sync.Mutex
	base     seqnum.Value // +checklocks:mu; sequence number of the first byte written through the watch
	haveBase bool         // +checklocks:mu; base has been computed while the sender was open

	closed atomic.Bool
}

// TCPAckEvents reports whether the stack tracks acknowledgements
// (Options.TCPAckEvents), so WatchAcks can succeed.
func (st *Stack) TCPAckEvents() bool { return st.acksOn }

// WatchAcks starts tracking what the peer of ep, a connected TCP endpoint of
// this stack, acknowledges of the bytes written through the returned
// watch's Write. notify is called each time Acked grows; it runs on the
// stack's goroutine that processes ep's segments, with ep's lock held, so
// it must return quickly, must not block, and must not call ep or the
// watch's Write (Acked, Written and Progress are fine). notify may be nil.
//
// It fails with ErrAckEventsOff when the stack was built without
// Options.TCPAckEvents, with ErrInvalidOptions when ep is not a connected
// TCP endpoint, and with ErrInvalidOptions when the connection is already
// watched.
func (st *Stack) WatchAcks(ep tcpip.Endpoint, notify func()) (*AckWatch, error) {
	if !st.acksOn {
		return nil, ErrAckEventsOff
	}
	tep, ok := ep.(*tcp.Endpoint)
	if !ok {
		return nil, fmt.Errorf("%w: acknowledgement tracking needs a TCP endpoint, not %T", ErrInvalidOptions, ep)
	}
	info, ok := ep.Info().(*gstack.TransportEndpointInfo)
	if !ok || info.ID.RemotePort == 0 {
		return nil, fmt.Errorf("%w: acknowledgement tracking needs a connected endpoint", ErrInvalidOptions)
	}
	w := &AckWatch{reg: st.acks, ep: ep, id: tcp.TCPEndpointID(info.ID), notify: notify, state: tep.EndpointState}
	if _, loaded := st.acks.watches.LoadOrStore(w.id, w); loaded {
		return nil, fmt.Errorf("%w: connection %+v is already watched", ErrInvalidOptions, w.id)
	}
	st.acks.n.Add(1)
	return w, nil
}

// Write writes p to the watched endpoint as tcpip.Endpoint.Write does, and
// counts the bytes the endpoint takes in Written. It sets opts.Atomic: the
// endpoint then reads p while holding its lock, which is what makes the
// count exact for the probe, and costs the concurrency gVisor otherwise
// allows between copying and receiving. p's Read therefore runs with the
// endpoint locked and must not call into the endpoint. An error from p's
// Read ends the write as io.EOF would: the bytes read before it are taken
// and counted.
func (w *AckWatch) Write(p tcpip.Payloader, opts tcpip.WriteOptions) (int64, tcpip.Error) {
	opts.Atomic = true
	return w.ep.Write(&countingPayloader{p: p, w: w}, opts)
}

// countingPayloader adds what the endpoint reads from p to w.written.
type countingPayloader struct {
	p tcpip.Payloader
	w *AckWatch
}

func (c *countingPayloader) Read(b []byte) (int, error) {
	n, err := c.p.Read(b)
	if n > 0 {
		c.w.written.Add(uint64(n))
	}
	if err != nil && err != io.EOF {
		// A failed read makes the endpoint drop what it read (ErrBadBuffer),
		// which the count would not see: end the payload instead.
		err = io.EOF
	}
	return n, err
}

func (c *countingPayloader) Len() int { return c.p.Len() }

// Written returns the bytes the endpoint has taken through Write.
func (w *AckWatch) Written() uint64 { return w.written.Load() }

// Acked returns how many of the Written bytes the peer has acknowledged. It
// never runs ahead of the peer; it is brought up to date by each segment
// the endpoint receives, so an ACK is counted when the stack has processed
// it. (Bytes written around Write would make it lag, never lead.)
func (w *AckWatch) Acked() uint64 { return w.acked.Load() }

// Progress returns Acked and whether the connection has failed (reset,
// aborted, timed out) or closed, in which case no further acknowledgement
// will come. The failure is read first: when failed is true, acked already
// holds every acknowledgement that arrived before the failure.
func (w *AckWatch) Progress() (acked uint64, failed bool) {
	failed = w.failed()
	return w.acked.Load(), failed
}

// failed reports whether the endpoint is in gVisor's error or closed state,
// the states a reset, an abort or the end of the connection leave it in.
func (w *AckWatch) failed() bool {
	switch w.state() {
	case tcp.StateError, tcp.StateClose:
		return true
	}
	return false
}

// Close stops tracking: the probe no longer finds the connection. notify may
// still run once, concurrently with Close, for a segment being processed.
// Close is idempotent.
func (w *AckWatch) Close() {
	if w.closed.Swap(true) {
		return
	}
	if w.reg.watches.CompareAndDelete(w.id, w) {
		w.reg.n.Add(-1)
	}
}

// observe updates acked from one probe's copy of the endpoint's state. It
// runs with the endpoint's lock held.
func (w *AckWatch) observe(s *tcp.TCPEndpointState) {
	w.mu.Lock()
	written := w.written.Load()
	una := s.Sender.SndUna
	if !w.failed() {
		// SND.UNA + SndBufUsed is just past the last queued byte
		// (SndBufUsed is -1 after an acknowledged FIN; the conversion
		// wraps, as sequence numbers do).
		w.base = una.Add(seqnum.Size(s.SndBufState.SndBufUsed)) - seqnum.Value(uint32(written))
		w.haveBase = true
	}
	if !w.haveBase {
		w.mu.Unlock()
		return
	}
	// Unacknowledged bytes of written: never more than a send buffer, so
	// 32-bit sequence arithmetic is exact. An acknowledged FIN makes it -1;
	// bytes written before the watch and still unacknowledged make it
	// exceed written.
	end := w.base.Add(seqnum.Size(uint32(written)))
	out := int64(int32(uint32(end) - uint32(una)))
	out = max(out, 0)
	var acked uint64
	if uint64(out) < written {
		acked = written - uint64(out)
	}
	w.mu.Unlock()
	for {
		old := w.acked.Load()
		if acked <= old {
			return
		}
		if w.acked.CompareAndSwap(old, acked) {
			break
		}
	}
	if w.notify != nil && !w.closed.Load() {
		w.notify()
	}
}
