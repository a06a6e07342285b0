package tap

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Bare-ACK hold: a delayed ACK in the link.
//
// gVisor's TCP acknowledges every batch of received segments at once, with
// a segment of its own (it has no delayed ACK). In a request/response
// exchange the reply follows a few microseconds later and acknowledges the
// same bytes again, so every request costs two writes to the device, and
// the first — which includes the kernel's processing of that ACK for the
// peer, and which gVisor sends holding the connection's lock the reply's
// write needs — sits on the round trip's critical path.
//
// So a queue holds back one bare ACK (flags ACK only, no payload, no
// options beyond timestamps: never a SACK-bearing duplicate ACK of loss
// recovery) for at most ackHoldFor. A later segment of the same connection
// that carries payload or a FIN and acknowledges at least as much replaces
// it (the held ACK is dropped, counted in TxAcksCoalesced); any other
// write on the queue, or the timer, writes it first. RFC 1122 §4.2.3.2
// allows an ACK to be delayed up to 500 ms; this is far shorter.
//
// A queue learns whether holding pays: a held ACK that times out costs its
// flow ackHoldFor of latency and a timer wake-up (a bulk receiver, whose
// ACKs no reply follows), and one that another write sends out first was
// delayed for nothing (the next ACK of a bulk receiver, another
// connection's segment), so a time-out lowers the queue's score by 4, a
// flush by 1, a replaced ACK raises it by 1, and while it is negative only
// one bare ACK in ackHoldProbe is held, to notice when replies come back.
const (
	ackHoldFor   = 200 * time.Microsecond
	ackHoldProbe = 64
	ackScoreMax  = 8
	ackScoreMin  = -8
)

// ackKey names a TCP connection from the sending side: the IP addresses and
// ports as they appear in the headers.
type ackKey struct {
	n int
	b [2*16 + 4]byte
}

// tcpOut is what the hold needs of an outbound packet.
type tcpOut struct {
	key     ackKey
	ack     seqnum.Value
	flags   header.TCPFlags
	payload int
	bare    bool // ACK only, no payload, no options but timestamps
}

// parseTCPOut reads an outbound TCP packet's headers; false for anything
// else (or headers it cannot read).
func parseTCPOut(pkt *stack.PacketBuffer, o *tcpOut) bool {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return false
	}
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		return false
	}
	nh := pkt.NetworkHeader().Slice()
	switch pkt.NetworkProtocolNumber {
	case header.IPv4ProtocolNumber:
		if len(nh) < header.IPv4MinimumSize {
			return false
		}
		o.key.n = copy(o.key.b[:], nh[12:20])
	case header.IPv6ProtocolNumber:
		if len(nh) < header.IPv6MinimumSize {
			return false
		}
		o.key.n = copy(o.key.b[:], nh[8:40])
	default:
		return false
	}
	o.key.n += copy(o.key.b[o.key.n:], th[:4])
	o.ack = seqnum.Value(th.AckNumber())
	o.flags = th.Flags()
	o.payload = pkt.Data().Size()
	// Timestamps take 12 bytes with their padding; anything longer
	// carries SACK blocks (a duplicate ACK of loss recovery) or more.
	o.bare = o.flags == header.TCPFlagAck && o.payload == 0 && len(th) <= header.TCPMinimumSize+12
	return true
}

// ackHold is a queue's held ACK.
type ackHold struct {
	mu sync.Mutex
	// pkt is the held ACK, with a reference of the hold's own; nil when
	// none is held.
	pkt   *stack.PacketBuffer // +checklocks:mu
	key   ackKey              // +checklocks:mu
	ack   seqnum.Value        // +checklocks:mu
	timer *time.Timer         // +checklocks:mu; made at the first hold
	score int                 // +checklocks:mu
	skip  int                 // +checklocks:mu; bare ACKs not held while score < 0
}

// writeOrHold is step 2 of the transmit path with the hold in front of it:
// it writes pkt to q, or holds it, or drops the ACK it makes redundant.
func (l *Link) writeOrHold(q *queue, pkt *stack.PacketBuffer) tcpip.Error {
	var o tcpOut
	if !parseTCPOut(pkt, &o) {
		if err := q.flushHeldAck(l); err != nil {
			return err
		}
		return l.writePacket(q, pkt)
	}
	h := &q.ah
	h.mu.Lock()
	if held := h.pkt; held != nil {
		h.pkt = nil
		h.timer.Stop()
		if o.key == h.key && o.flags&header.TCPFlagAck != 0 && (o.payload > 0 || o.flags&header.TCPFlagFin != 0) && h.ack.LessThanEq(o.ack) {
			// pkt acknowledges everything the held ACK did.
			h.score = min(h.score+1, ackScoreMax)
			h.mu.Unlock()
			held.DecRef()
			q.c.txAcksCoalesced.Add(1)
			return l.writePacket(q, pkt)
		}
		// Held for nothing: it goes out now, only later.
		h.score = max(h.score-1, ackScoreMin)
		h.mu.Unlock()
		err := l.writePacket(q, held)
		held.DecRef()
		if err != nil {
			return err
		}
		return l.writePacket(q, pkt)
	}
	if o.bare && h.shouldHoldLocked() {
		pkt.IncRef()
		h.pkt, h.key, h.ack = pkt, o.key, o.ack
		if h.timer == nil {
			h.timer = time.AfterFunc(l.ackHoldFor, func() { q.ackTimeout(l) })
		} else {
			h.timer.Reset(l.ackHoldFor)
		}
		h.mu.Unlock()
		q.c.txAcksHeld.Add(1)
		return nil
	}
	h.mu.Unlock()
	return l.writePacket(q, pkt)
}

// shouldHoldLocked says whether to hold the next bare ACK.
//
// +checklocks:h.mu
func (h *ackHold) shouldHoldLocked() bool {
	if h.score >= 0 {
		return true
	}
	h.skip++
	return h.skip%ackHoldProbe == 0
}

// flushHeldAck writes the held ACK, if any.
func (q *queue) flushHeldAck(l *Link) tcpip.Error {
	h := &q.ah
	h.mu.Lock()
	held := h.pkt
	if held == nil {
		h.mu.Unlock()
		return nil
	}
	h.pkt = nil
	h.timer.Stop()
	h.score = max(h.score-1, ackScoreMin)
	h.mu.Unlock()
	err := l.writePacket(q, held)
	held.DecRef()
	return err
}

// ackTimeout is the hold's timer: no reply came, the ACK goes out alone.
func (q *queue) ackTimeout(l *Link) {
	h := &q.ah
	h.mu.Lock()
	held := h.pkt
	if held == nil {
		h.mu.Unlock()
		return
	}
	h.pkt = nil
	h.score = max(h.score-4, ackScoreMin)
	h.mu.Unlock()
	q.c.txAcksTimedOut.Add(1)
	_ = l.writePacket(q, held) // a failure is counted in TxErrors
	held.DecRef()
}

// dropHeldAck releases a held ACK without writing it (the link is closing).
func (q *queue) dropHeldAck() {
	h := &q.ah
	h.mu.Lock()
	held := h.pkt
	h.pkt = nil
	if h.timer != nil {
		h.timer.Stop()
	}
	h.mu.Unlock()
	if held != nil {
		held.DecRef()
	}
}
