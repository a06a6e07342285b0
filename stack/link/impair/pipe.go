package impair

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// A pipe impairs one direction. A packet's trip through it:
//
//  1. offer (the caller's goroutine: WritePackets or DeliverNetworkPacket)
//     takes the pipe's lock and, for each packet in arrival order, draws
//     every random decision the packet will need, in this order: loss,
//     duplicate, and then for the packet and its copy in turn: corrupt
//     (plus offset and XOR value), jitter, reorder. Nothing is drawn later,
//     so timing never shifts the sequence.
//  2. Loss: the packet is dropped; no reference was taken.
//  3. Duplicate: a Clone (its own reference, shared memory) follows the
//     packet; from here on each copy goes its own way.
//  4. Corrupt: the copy becomes a clone with one byte changed (corrupt.go).
//  5. Reorder: the copy is held back (the pipe takes a reference) until
//     ReorderGap later copies have passed this step, then re-enters at 6
//     right behind the one that released it; or until ReorderTimeout, when
//     the timer goroutine moves it on.
//  6. forward: without delay or rate limit, the copy joins the caller's
//     emit list. With them it enters the timed queue with a departure time:
//     the delay (FIFO: never before the packet ahead of it), then the token
//     bucket; or it is dropped if QueueLimit packets are already waiting.
//  7. sink, outside the lock: the caller sends its emit list, the timer
//     goroutine sends due queue entries and expired holds; either way the
//     packets go to the inner link's WritePackets or to the stack's
//     dispatcher, and the pipe then releases its references.
//
// Ownership: every entry in holds or queue, and every entry in an emit list
// or a timer batch, carries exactly one reference that the pipe owns; the
// sink or stop releases it, once. Packets the pipe drops before step 3 never
// had a reference taken.
type pipe struct {
	im   Impairments // immutable: validated, defaults filled in
	pass bool        // immutable: im.IsZero(), the direction is a pass-through
	// sink sends a batch and releases the batch's references.
	sink func(batch []entry) // immutable
	// tau is the token bucket's depth as time at Rate (GCRA's burst
	// tolerance). Immutable.
	tau time.Duration

	c counters

	// wake prods the timer goroutine to look again at holds and queue.
	// Capacity 1: a pending wake-up already covers any later one.
	wake chan struct{}

	mu sync.Mutex
	// rng is the direction's decision stream.
	// +checklocks:mu
	rng *rand.Rand
	// running is true from start to stop; only then are packets accepted.
	// +checklocks:mu
	running bool
	// stopc is closed to stop the timer goroutine, which closes done on
	// its way out. Both nil when no goroutine runs.
	// +checklocks:mu
	stopc chan struct{}
	// +checklocks:mu
	done chan struct{}
	// holds are the held-back packets, in the order they were held.
	// +checklocks:mu
	holds []hold
	// queue is the timed queue, FIFO; due never decreases along it.
	// +checklocks:mu
	queue []entry
	// lastReady is the latest delay-stage exit time given out, so jitter
	// cannot make a packet overtake the one ahead.
	// +checklocks:mu
	lastReady time.Time
	// tat is the token bucket's state as GCRA's theoretical arrival time:
	// the bucket is in debt until tat-tau.
	// +checklocks:mu
	tat time.Time
	// armed is when the timer goroutine will next look on its own; zero
	// means only when woken.
	// +checklocks:mu
	armed time.Time
}

// entry is a packet inside the pipe.
type entry struct {
	pkt    *stack.PacketBuffer // one reference, owned by whoever holds the entry
	proto  tcpip.NetworkProtocolNumber
	jitter time.Duration // drawn at step 1
	due    time.Time     // departure time, in the timed queue
}

// hold is a packet held back by Reorder.
type hold struct {
	entry
	left     int       // later packets still to pass before release
	deadline time.Time // release at the latest
}

func newPipe(im Impairments, seed, stream uint64, sink func([]entry)) *pipe {
	p := &pipe{
		im:   im,
		pass: im.IsZero(),
		sink: sink,
		wake: make(chan struct{}, 1),
		rng:  rand.New(rand.NewPCG(seed, stream)),
	}
	if im.Rate > 0 {
		p.tau = time.Duration(min(float64(im.Burst)*8*float64(time.Second)/float64(im.Rate), math.MaxInt64))
	}
	return p
}

// start lets the pipe accept packets and starts its timer goroutine if it
// needs one. It does nothing if the pipe is a pass-through or running.
func (p *pipe) start(wg *sync.WaitGroup) {
	if p.pass {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return
	}
	p.running = true
	if !p.im.needsTimer() {
		return
	}
	p.stopc = make(chan struct{})
	p.done = make(chan struct{})
	wg.Add(1)
	go func(stopc <-chan struct{}, done chan<- struct{}) {
		defer wg.Done()
		defer close(done)
		p.run(stopc)
	}(p.stopc, p.done)
}

// stop ends accepting, stops and waits for the timer goroutine, and then
// releases every packet still held or queued, counting them in
// DroppedClosed. It is idempotent.
func (p *pipe) stop() {
	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		return
	}
	p.running = false
	stopc, done := p.stopc, p.done
	p.stopc, p.done = nil, nil
	p.mu.Unlock()
	if stopc != nil {
		close(stopc)
		<-done
	}

	p.mu.Lock()
	left := make([]*stack.PacketBuffer, 0, len(p.holds)+len(p.queue))
	for i := range p.holds {
		left = append(left, p.holds[i].pkt)
	}
	for i := range p.queue {
		left = append(left, p.queue[i].pkt)
	}
	p.holds, p.queue = nil, nil
	p.lastReady, p.tat, p.armed = time.Time{}, time.Time{}, time.Time{}
	p.mu.Unlock()

	for _, pkt := range left {
		pkt.DecRef()
	}
	p.c.droppedClosed.Add(uint64(len(left)))
	p.c.pending.Add(-int64(len(left)))
}

// offer runs pkts through steps 1 to 7. proto is the network protocol of
// every packet, or 0 to take each packet's NetworkProtocolNumber. The
// caller keeps its own references: the pipe takes references of its own
// for the packets it keeps. offer returns false, having counted the packets
// in In and DroppedClosed and kept none, if the pipe is not running.
func (p *pipe) offer(pkts []*stack.PacketBuffer, proto tcpip.NetworkProtocolNumber) bool {
	var emitArr [8]entry
	var dropArr [4]*stack.PacketBuffer
	emit, drop := emitArr[:0], dropArr[:0]

	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		p.c.in.Add(uint64(len(pkts)))
		p.c.droppedClosed.Add(uint64(len(pkts)))
		return false
	}
	now := time.Now()
	for _, pkt := range pkts {
		pr := proto
		if pr == 0 {
			pr = pkt.NetworkProtocolNumber
		}
		p.admitLocked(pkt, pr, now, &emit, &drop)
	}
	p.mu.Unlock()

	for _, pkt := range drop {
		pkt.DecRef()
	}
	if len(emit) > 0 {
		p.sink(emit)
	}
	return true
}

// admitLocked runs steps 1 to 6 for one packet; the caller sends emit and
// releases drop after unlocking.
//
// +checklocks:p.mu
func (p *pipe) admitLocked(pkt *stack.PacketBuffer, proto tcpip.NetworkProtocolNumber, now time.Time, emit *[]entry, drop *[]*stack.PacketBuffer) {
	im := &p.im
	p.c.in.Add(1)
	if im.Loss > 0 && p.rng.Float64() < im.Loss {
		p.c.droppedLoss.Add(1)
		return
	}
	copies := 1
	if im.Duplicate > 0 && p.rng.Float64() < im.Duplicate {
		copies = 2
		p.c.duplicated.Add(1)
	}
	for i := 0; i < copies; i++ {
		var own *stack.PacketBuffer
		if im.Corrupt > 0 && p.rng.Float64() < im.Corrupt {
			if c, ok := corrupt(pkt, p.rng); ok {
				own = c
				p.c.corrupted.Add(1)
			}
		}
		if own == nil {
			if i == 0 {
				own = pkt.IncRef()
			} else {
				// A separate PacketBuffer, made before anything is
				// delivered: the stack parses headers in place, so the
				// same one cannot be delivered twice.
				own = pkt.Clone()
			}
		}
		e := entry{pkt: own, proto: proto}
		if im.Jitter > 0 {
			e.jitter = time.Duration(p.rng.Int64N(int64(im.Jitter)))
		}
		if im.Reorder > 0 && p.rng.Float64() < im.Reorder {
			d := now.Add(im.ReorderTimeout)
			p.holds = append(p.holds, hold{entry: e, left: im.ReorderGap, deadline: d})
			p.c.reordered.Add(1)
			p.c.pending.Add(1)
			p.armLocked(d)
			continue
		}
		p.forwardLocked(e, now, emit, drop)
		p.passHoldsLocked(now, emit, drop)
	}
}

// passHoldsLocked counts one packet past every hold and forwards the holds
// it was the last to pass, in the order they were held.
//
// +checklocks:p.mu
func (p *pipe) passHoldsLocked(now time.Time, emit *[]entry, drop *[]*stack.PacketBuffer) {
	if len(p.holds) == 0 {
		return
	}
	kept := p.holds[:0]
	var released []entry
	for _, h := range p.holds {
		h.left--
		if h.left > 0 {
			kept = append(kept, h)
			continue
		}
		released = append(released, h.entry)
	}
	clear(p.holds[len(kept):])
	p.holds = kept
	for _, e := range released {
		p.c.pending.Add(-1)
		p.forwardLocked(e, now, emit, drop)
	}
}

// forwardLocked is step 6: e goes to emit, into the timed queue, or (queue
// full) to drop. It takes over e's reference.
//
// +checklocks:p.mu
func (p *pipe) forwardLocked(e entry, now time.Time, emit *[]entry, drop *[]*stack.PacketBuffer) {
	im := &p.im
	if !im.timed() {
		*emit = append(*emit, e)
		return
	}
	if p.waitingLocked(now) >= im.QueueLimit {
		p.c.droppedQueue.Add(1)
		*drop = append(*drop, e.pkt)
		return
	}
	ready := now.Add(im.Delay + e.jitter)
	if ready.Before(p.lastReady) {
		ready = p.lastReady
	}
	p.lastReady = ready
	due := ready
	if im.Rate > 0 {
		// GCRA, the token bucket in virtual time (ITU-T I.371): the
		// bucket is in debt until tat-tau; a packet leaves once it is
		// not, and moves tat on by its own transmission time.
		if p.tat.Before(ready) {
			p.tat = ready
		}
		if t := p.tat.Add(-p.tau); t.After(due) {
			due = t
		}
		p.tat = p.tat.Add(transmitTime(e.pkt.Size(), im.Rate))
	}
	if due.After(now) {
		p.c.delayed.Add(1)
	}
	e.due = due
	p.queue = append(p.queue, e)
	p.c.pending.Add(1)
	p.armLocked(due)
}

// transmitTime is how long size bytes take at rate bits per second.
func transmitTime(size int, rate uint64) time.Duration {
	// size is at most 64 KiB, so size*8e9 fits in a uint64.
	return time.Duration(uint64(size) * 8 * uint64(time.Second) / rate)
}

// waitingLocked is the number of queued packets whose departure time is
// still ahead: the ones QueueLimit counts. Packets already due are as good
// as gone, even if the timer goroutine has not taken them yet, so the
// count does not depend on how promptly it runs.
//
// +checklocks:p.mu
func (p *pipe) waitingLocked(now time.Time) int {
	i := sort.Search(len(p.queue), func(i int) bool { return p.queue[i].due.After(now) })
	return len(p.queue) - i
}

// armLocked makes sure the timer goroutine looks again no later than t.
//
// +checklocks:p.mu
func (p *pipe) armLocked(t time.Time) {
	if !p.armed.IsZero() && !t.Before(p.armed) {
		return
	}
	p.armed = t
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the timer goroutine: it releases expired holds and sends due
// queue entries, then sleeps until the next deadline or a wake-up.
func (p *pipe) run(stopc <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var batch []entry
	var drop []*stack.PacketBuffer
	for {
		select {
		case <-stopc:
			return
		default:
		}
		p.mu.Lock()
		now := time.Now()
		batch, drop = batch[:0], drop[:0]
		p.expireHoldsLocked(now, &batch, &drop)
		n := len(p.queue) - p.waitingLocked(now)
		batch = append(batch, p.queue[:n]...)
		clear(p.queue[:n])
		p.queue = p.queue[n:]
		p.c.pending.Add(-int64(n))
		next := p.nextDeadlineLocked()
		p.armed = next
		p.mu.Unlock()

		for _, pkt := range drop {
			pkt.DecRef()
		}
		if len(batch) > 0 {
			p.sink(batch)
			clear(batch)
			continue // time has passed while sending: look again
		}
		if next.IsZero() {
			select {
			case <-stopc:
				return
			case <-p.wake:
			}
			continue
		}
		timer.Reset(time.Until(next))
		select {
		case <-stopc:
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// expireHoldsLocked forwards the holds whose deadline has come.
//
// +checklocks:p.mu
func (p *pipe) expireHoldsLocked(now time.Time, emit *[]entry, drop *[]*stack.PacketBuffer) {
	if len(p.holds) == 0 {
		return
	}
	kept := p.holds[:0]
	var expired []entry
	for _, h := range p.holds {
		if h.deadline.After(now) {
			kept = append(kept, h)
			continue
		}
		expired = append(expired, h.entry)
	}
	clear(p.holds[len(kept):])
	p.holds = kept
	for _, e := range expired {
		p.c.pending.Add(-1)
		p.forwardLocked(e, now, emit, drop)
	}
}

// nextDeadlineLocked is the earliest time the timer goroutine has work:
// the first hold deadline or the head of the queue; zero if none.
//
// +checklocks:p.mu
func (p *pipe) nextDeadlineLocked() time.Time {
	var next time.Time
	for _, h := range p.holds {
		if next.IsZero() || h.deadline.Before(next) {
			next = h.deadline
		}
	}
	if len(p.queue) > 0 && (next.IsZero() || p.queue[0].due.Before(next)) {
		next = p.queue[0].due
	}
	return next
}
