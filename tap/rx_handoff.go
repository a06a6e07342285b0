package tap

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Delivery hand-off.
//
// A queue's reader delivers each frame to the stack itself (step 5 of the
// receive path) as long as frames come one or a few per wake-up: that is
// the latency path, and a hop to another goroutine would add a wake-up to
// every request. When the reader keeps finding frames — handoffAfter in a
// row without the queue running dry — the stack's side of the work
// becomes the bottleneck: for small UDP datagrams gVisor's delivery costs
// more than the read, and one goroutine doing both leaves a second CPU to
// the sender. From then on
// the reader passes frames, in batches, to a deliverer goroutine of its
// own queue and goes back to reading, the way gVisor's fdbased splits its
// dispatcher from its processors.
//
// Order: once a frame has gone to the deliverer, every later datagram of
// the queue goes there too until the deliverer has caught up (inflight is
// 0), so datagrams reach the stack in the order the device gave them (TCP
// frames, inline, may pass datagrams still queued: no flow mixes the two).
//
// TCP frames are always delivered inline: gVisor's TCP delivery ends by
// queueing the segment to one of its own processor goroutines, so a second
// hop only adds a wake-up (multi-stream uploads lost by it). Datagrams
// (UDP, ICMP, fragments) are what the hand-off is for: small ones are
// received at a higher rate with it, TCP and round trips unchanged (the
// figures and the command are in the commit that added the hand-off).
//
// Bounds: at most handoffBatches batches of handoffBatch frames wait; a
// reader that would exceed that blocks until the deliverer takes one, and
// the device's own queue absorbs (or drops) what it sends meanwhile.
//
// Stop: the reader closes the batch channel when it returns; the
// deliverer drops (does not deliver) what is left once the link is
// stopping, so it never needs the stack while the stack waits for the
// link, and the link's WaitGroup covers it.
const (
	handoffAfter   = 8  // frames in a row before the reader hands delivery off
	handoffBatch   = 32 // frames per batch
	handoffBatches = 8  // batches queued at most
)

// pendingPkt is a parsed frame waiting for the deliverer.
type pendingPkt struct {
	d   stack.NetworkDispatcher
	pkt *stack.PacketBuffer
}

// handoff is a queue's deliverer and its reader-side state. The fields
// above inflight are used by the reader goroutine only.
type handoff struct {
	run   int          // frames read since the queue last ran dry
	batch []pendingPkt // being filled
	ch    chan []pendingPkt
	free  chan []pendingPkt // emptied batches, for reuse

	inflight atomic.Int64 // frames handed over and not yet delivered or dropped
}

// deliverOrHand delivers pkt inline, or hands it to the deliverer when the
// reader is busy or earlier frames are still with the deliverer. It takes
// the reader's reference to pkt.
func (q *queue) deliverOrHand(d stack.NetworkDispatcher, pkt *stack.PacketBuffer) {
	h := &q.ho
	if h.run < handoffAfter && len(h.batch) == 0 && h.inflight.Load() == 0 {
		d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		pkt.DecRef()
		return
	}
	if h.ch == nil {
		h.ch = make(chan []pendingPkt, handoffBatches)
		h.free = make(chan []pendingPkt, handoffBatches+1)
		q.link.wg.Add(1)
		go q.deliverLoop(h.ch, h.free)
	}
	if h.batch == nil {
		select {
		case h.batch = <-h.free:
		default:
			h.batch = make([]pendingPkt, 0, handoffBatch)
		}
	}
	h.batch = append(h.batch, pendingPkt{d, pkt})
	h.inflight.Add(1)
	q.c.rxHandedOff.Add(1)
	if len(h.batch) == handoffBatch {
		q.flushHandoff()
	}
}

// flushHandoff sends the batch being filled to the deliverer. The reader
// calls it when a batch is full and before it parks.
func (q *queue) flushHandoff() {
	h := &q.ho
	if len(h.batch) == 0 {
		return
	}
	h.ch <- h.batch
	h.batch = nil
}

// stopHandoff ends the deliverer when the reader returns; frames still in
// the batch being filled are dropped.
func (q *queue) stopHandoff() {
	h := &q.ho
	for _, p := range h.batch {
		p.pkt.DecRef()
	}
	h.inflight.Add(-int64(len(h.batch)))
	h.batch = nil
	if h.ch != nil {
		close(h.ch)
		h.ch, h.free = nil, nil
	}
	h.run = 0
}

// deliverLoop is a queue's deliverer goroutine. It gets both channels as
// arguments: the reader clears its own copies when it stops, possibly
// before this goroutine has started.
func (q *queue) deliverLoop(ch <-chan []pendingPkt, free chan<- []pendingPkt) {
	l := q.link
	defer l.wg.Done()
	for b := range ch {
		stopping := l.stopping.Load()
		for i, p := range b {
			if !stopping {
				p.d.DeliverNetworkPacket(p.pkt.NetworkProtocolNumber, p.pkt)
			}
			p.pkt.DecRef()
			b[i] = pendingPkt{}
		}
		q.ho.inflight.Add(-int64(len(b)))
		select {
		case free <- b[:0]:
		default:
		}
	}
}
