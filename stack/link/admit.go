package link

import (
	"encoding/binary"
	"hash/maphash"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link/frame"
)

// Admission of TCP segments without payload.
//
// gVisor's TCP queues every segment for its endpoint's processor goroutine,
// and its segment queue admits segments that carry no payload even when
// the queue is full (only payload is charged to the receive buffer). A
// flood of SYNs, ACKs or RSTs at a listening port that arrives faster than
// the listener's processor works through them therefore grows that queue,
// and the frames it holds, without bound. The stack gives no signal when a
// queued segment is done with (TCP clones the packet, so the link's
// PacketBuffer is released as soon as delivery returns), so the bound is
// kept in the link, by what the stack visibly does with what it got.
// Admission is that bound, shared by every zcnet link (the TAP, the
// shared-memory ring, AF_XDP): a link holds one, asks Check about each
// received frame before delivery, drops and counts what it refuses, and
// tells NoteTx about each packet it transmits. The rules:
//
//  1. (The link's part.) Every payload-less TCP frame is delivered in a
//     view of its own size (a few dozen bytes), not in a receive buffer
//     sized for the MTU, so a queued SYN holds a small chunk.
//  2. A frame for a listening socket (the stack's ConnLookup says so; a
//     SYN without ACK is taken as one when no lookup is installed) is
//     charged to its class: SYN (a SYN without ACK) or control (every
//     other payload-less segment). Frames for established connections and
//     for closed ports are not charged: the former are what the service is
//     for, the latter the stack answers synchronously, during delivery.
//  3. A class's charge is paid back by the listener's visible work: each
//     SYN-ACK the stack transmits pays one SYN, each RST from a port the
//     link has charged segments to one control segment (a listener
//     answers a stray ACK with a RST; the RSTs that answer segments for
//     closed ports, never charged, pay nothing). Segments the
//     listener drops silently (a RST, or a SYN while its accept queue is
//     full) are paid back by a slow leak, AdmitLeakPerSec per class.
//  4. Segments with payload for a listener (a flood of data at a port
//     with no connection) are charged to the control class too: the
//     listener holds them in its queue, and answers them with a RST.
//  5. A class whose unpaid charge reaches AdmitLimit drops further frames
//     of the class before they reach the stack, counted by reason
//     (Check's verdict: DropSYN, DropCtl).
//  6. A refused SYN is remembered (its source, ports and sequence number,
//     hashed, in a filter of bits, refusedFilter); when it comes again —
//     a client's retransmission, one second later for Linux, then two,
//     four... — it is admitted even over the budget, up to twice the
//     budget. A flood of fresh SYNs does not retransmit, so a real
//     client's second try gets through. The filter remembers every
//     refused SYN for two to four seconds, however fast they come (a
//     table of one slot per SYN would be overwritten by a flood within
//     milliseconds, long before the retransmission); at a flood's rate
//     some flood SYNs match by chance, and those are what rule 6 admits
//     besides retransmissions, within its bound.
//  7. While the link refuses SYNs it tells the stack (SYNPressure), which
//     turns SYN cookies on for every listener: a SYN then costs the
//     listener no half-open connection, and it answers more of them.
//     Pressure ends once the listener has caught up (a quarter of the
//     budget owed) and no SYN was refused for AdmitCalm. Without that
//     calm, cookies went on and off many times a second during a flood,
//     whenever the listener caught up for a moment, and a client's
//     retransmitted SYN answered without a cookie made a half-open
//     connection on the 4-tuple of the handshake the first SYN's cookie
//     had begun: the half-open connection then took the client's ACK and
//     answered its data with RSTs.
//  8. A segment that completes a handshake the listener answered (an ACK,
//     with or without payload, whose acknowledgment number is one past
//     the sequence number of a SYN-ACK the stack sent to its source and
//     port: with SYN cookies, the cookie plus one) is admitted over the
//     control budget, up to twice the budget. The link remembers the
//     SYN-ACKs it sends (hashed, in a table of admitHandshakeSlots).
//     Without this a SYN flood shuts new clients out through
//     the control class: every SYN-ACK the listener sends to a spoofed
//     source draws a RST from it (or from the host that owns the
//     address), those RSTs fill the control budget, and a real client's
//     final ACK and first data, which go to the listener until it has
//     made the connection, are refused with them. To forge a match an
//     attacker must see the SYN-ACKs, as for SYN cookies themselves.
//  9. A RST for a listener is dropped here and counted in
//     DropCtl, charged to nothing: a listener ignores RSTs
//     (RFC 9293 §3.10.7.2), so delivering them would cost the stack
//     work and the control class budget for nothing.
//  10. A segment for a listener whose acknowledgment number is that of
//     a FIN the stack sent on the same 4-tuple (one past the FIN, or
//     the FIN's own sequence number: everything the stack sent before
//     it) belongs to a connection the stack has closed: it is dropped
//     (DropStale), charged to nothing. It is the peer's final ACK, or
//     a retransmission of its own FIN, arriving after the stack
//     removed the connection (a busy stack closing thousands at once
//     answers a FIN later than the peer's retransmission timeout), or
//     an ACK from the peer's TIME-WAIT (which answers any unexpected
//     segment on the 4-tuple, such as a SYN-ACK for a flood SYN that
//     reused its port). Delivered, it would reach the
//     listener, and gVisor's SYN-cookie check takes it for the ACK of
//     a handshake whenever the connection was made with a cookie and
//     both sides sent the same number of bytes (an echo): the check
//     depends only on the 4-tuple, the time and the difference between
//     the acknowledgment and sequence numbers, which a connection
//     keeps when its two directions carry equal amounts. The listener
//     then makes a new connection no peer has, which holds the 4-tuple
//     (the peer's next connection from that port is answered by it,
//     not by the listener) and an accept slot until the application
//     closes it. Without cookies the listener answers such a segment
//     with a RST, at the cost of the control budget. The link
//     remembers the FINs it sends, hashed, in a table of slots
//     (admitClosedSlots): a slot is overwritten only by a later FIN,
//     and a segment of a live handshake matches one only if its whole
//     hash collides.
//  11. A SYN that carries an MSS option is admitted over the SYN budget,
//     up to half the budget more (admitSYNReserve). Every TCP stack in
//     use sends its MSS in a SYN (RFC 9293 asks it to whenever its MSS
//     is not the 536-byte default), while packet generators flood bare
//     20-byte SYNs (hping3 by default): such a flood fills the budget,
//     and without the reserve a real client's SYN is refused in the
//     same proportion as the flood's, and its connection waits a second
//     for the retransmission rule 6 admits. A flood whose SYNs carry an
//     MSS option fills the reserve too, and competes with real clients
//     as before.
//  12. A segment for a listener that acknowledges a SYN-ACK the link
//     remembers (rule 8's table) but does not start at the sequence
//     number that SYN-ACK acknowledged — a peer's data past its first
//     segment, or its ACK at its current sequence number — is dropped
//     (DropStale) unless a segment at that number went to the listener
//     before it. gVisor validates a SYN cookie with the segment's own
//     sequence number, so such a segment fails the check and the
//     listener answers it with a RST, which ends the peer's connection.
//     Under a flood this happened whenever the peer's first flight was
//     lost (the kernel drops frames at the TAP's full queue): its next
//     segments, or the ACK it sends when a flood SYN from its port
//     draws another SYN-ACK, reset it before its retransmission could
//     complete the handshake. Dropped instead, the peer retransmits
//     from its first segment. Once that segment went to the listener
//     the rest pass as before: gVisor hands them to the connection the
//     first one made.
//
// New connections keep working during a SYN flood: the listener keeps
// answering the SYNs it gets, a legitimate SYN is admitted in the
// proportion the listener can serve, and its retransmission regardless.
//
// The bound: at most AdmitLimit unanswered segments per class (for SYNs,
// half that more with an MSS option, and twice it with retransmissions)
// are in the stack at once, plus what the
// leak admits beyond what the stack actually finished, which is at most
// AdmitLeakPerSec per second and only while the stack drops segments
// without answering them. What is not bounded here: a flood of segments
// for an established connection's exact 4-tuple (an attacker must know
// it).
const (
	// AdmitLimit is a class's budget: the unpaid segments at which
	// further ones are refused.
	AdmitLimit = 2048
	// AdmitLeakPerSec is the leak: segments per second a class is paid
	// back whatever the stack does.
	AdmitLeakPerSec = 1024
	// admitSYNReserve is rule 11's reserve: how far over AdmitLimit
	// the SYN class admits SYNs that carry an MSS option.
	admitSYNReserve = AdmitLimit / 2
	// AdmitCalm is how long after the last refused SYN a link's SYN
	// pressure lasts at least (rule 7).
	AdmitCalm = 2 * time.Second
	// admitRefusedBits is the size of each of refusedFilter's two
	// generations, and admitRefusedEpoch how long a generation is
	// current: a refused SYN is remembered for one to two epochs.
	admitRefusedBits  = 1 << 21
	admitRefusedEpoch = 2 * time.Second
	// admitHandshakeSlots is rules 8 and 12's table: a client answers a
	// SYN-ACK within a round trip, but when its answer is lost it
	// retransmits a second or two later, and a slot has to outlive the
	// SYN-ACKs the listener sends meanwhile, tens of thousands a second
	// under a flood. The table's pages are touched only as SYN-ACKs are
	// sent.
	admitHandshakeSlots = 1 << 17
	// admitClosedSlots is rule 10's table: a peer's TIME-WAIT lasts a
	// minute (Linux), so a slot should outlive the FINs of the
	// connections closed in that time; when closes come faster, an
	// overwritten slot only lets a stale segment through as before.
	admitClosedSlots = 1 << 16
)

// SetSYNPressure installs fn (nil removes it); package stack installs one
// that turns SYN cookies on for every listener while any link is under
// pressure, which makes a listener's answer to a SYN cheap (no half-open
// connection) so it serves more of them. A link that holds an Admission
// implements Admitter by forwarding to it.
func (a *Admission) SetSYNPressure(fn SYNPressure) {
	if fn == nil {
		a.pressure.Store(nil)
		return
	}
	a.pressure.Store(&fn)
}

// SetConnLookup installs fn (nil removes it); package stack installs one
// for each NIC it adds. See the admission rules above.
func (a *Admission) SetConnLookup(fn ConnLookup) {
	if fn == nil {
		a.lookup.Store(nil)
		return
	}
	a.lookup.Store(&fn)
}

// DisableLeak turns the leak off, so that only the stack's answers pay a
// class back. For tests, which count exactly what is admitted; call it
// before the link's readers start.
func (a *Admission) DisableLeak() { a.noLeak = true }

// AdmissionDrops counts what an Admission refused, by verdict.
type AdmissionDrops struct {
	SYN   uint64 // DropSYN
	Ctl   uint64 // DropCtl
	Stale uint64 // DropStale: segments of connections the stack has closed (rule 10), or out of a handshake's order (rule 12)
}

// Drops returns what Check has refused so far. A link reports these as its
// flood and stale drops rather than counting the verdicts again.
func (a *Admission) Drops() AdmissionDrops {
	return AdmissionDrops{SYN: a.dropSYN.Load(), Ctl: a.dropCtl.Load(), Stale: a.dropStale.Load()}
}

// Owed returns the unpaid charge of the SYN and the control class.
func (a *Admission) Owed() (syn, ctl int64) { return a.syn.owed.Load(), a.ctl.owed.Load() }

// Admission is a link's budget for TCP segments at listeners, shared by
// its receive queues (the stack's answers, which pay the budget back,
// leave on any queue). The zero value is ready; all methods are safe for
// concurrent use. It is large (tables of about 2 MiB, their pages resident
// only once written): a link holds one, not one per queue.
type Admission struct {
	lookup atomic.Pointer[ConnLookup]
	// pressure and underPressure: see SYNPressure.
	pressure      atomic.Pointer[SYNPressure]
	underPressure atomic.Bool
	// lastRefusal is when a SYN was last refused, in admitNow's
	// nanoseconds: pressure ends no sooner than AdmitCalm after it.
	lastRefusal atomic.Int64
	syn         admitClass
	// charged marks the local ports the link has charged control
	// segments to, one bit each: only RSTs from them pay back.
	charged [1 << 16 / 64]atomic.Uint64
	// refused remembers refused SYNs (see rule 6).
	refused refusedFilter
	// answered remembers the SYN-ACKs the stack sent (rules 8 and 12),
	// a slot each, zero or answer(k, seq): the top 31 bits of the hash k
	// of the segment that would complete the handshake, then a bit
	// (answerOpened) set once a segment at the sequence number the
	// SYN-ACK acknowledged (the peer's first) has gone to the listener,
	// then that number (the low 32 bits). One word per slot, so the table
	// stays at 1 MiB, resident once a flood has written it.
	answered [admitHandshakeSlots]atomic.Uint64
	ctl      admitClass
	// closed remembers the FINs the stack sent (rule 10): a slot holds
	// the hash of a segment that would acknowledge one (two slots per
	// FIN: acknowledging it, and everything before it), or zero.
	closed [admitClosedSlots]atomic.Uint64
	// dropSYN, dropCtl and dropStale count Check's refusals (Drops).
	dropSYN, dropCtl, dropStale atomic.Uint64
	// noLeak turns the leak off (tests: what the stack's answers pay back,
	// alone). Set before the readers start.
	noLeak bool
}

// admitClass is one class's unpaid charge. All fields are atomics: readers
// charge, writers pay.
type admitClass struct {
	// owed is the number of admitted segments not yet paid back.
	owed atomic.Int64
	// leakAt is when the leak last paid, in nanoseconds of now().
	leakAt atomic.Int64
}

// admitSeed keys the hashes of rules 6 and 8: random per process, so
// that an attacker cannot aim SYNs at the filter's bits.
var admitSeed = maphash.MakeSeed()

// admitNow is the admission clock, in nanoseconds.
func admitNow() int64 { return time.Now().UnixNano() }

// charge admits one segment of the class unless its unpaid charge is at
// the limit.
func (c *admitClass) charge(limit int64, leak bool) bool {
	if c.owed.Load() >= limit {
		if leak {
			c.leak(admitNow())
		}
		if c.owed.Load() >= limit {
			return false
		}
	}
	c.owed.Add(1)
	return true
}

// leak pays back AdmitLeakPerSec per second since the last leak.
func (c *admitClass) leak(now int64) {
	last := c.leakAt.Load()
	due := (now - last) * AdmitLeakPerSec / int64(time.Second)
	if due <= 0 || !c.leakAt.CompareAndSwap(last, now) {
		return
	}
	c.pay(due)
}

// pay pays back up to n segments, never below zero.
func (c *admitClass) pay(n int64) {
	for {
		o := c.owed.Load()
		if o <= 0 {
			return
		}
		if c.owed.CompareAndSwap(o, max(0, o-n)) {
			return
		}
	}
}

// synKey hashes a SYN's source address, ports and sequence number (never
// zero).
func (a *Admission) synKey(frame []byte, l4off int) uint64 {
	return a.segKey(frame, frame[l4off:l4off+4], frame[l4off+4:l4off+8])
}

// ackKey hashes a received segment's source address, ports and
// acknowledgment number (never zero): a handshake-completing segment's
// ackKey equals replyKey of the SYN-ACK it answers.
func (a *Admission) ackKey(frame []byte, l4off int) uint64 {
	return a.segKey(frame, frame[l4off:l4off+4], frame[l4off+8:l4off+12])
}

// segKey hashes the source address of the IP header in frame (an Ethernet
// frame), the ports as they stand in a received TCP header (the peer's,
// then ours) and a sequence or acknowledgment number (never zero).
func (a *Admission) segKey(frame, ports, num []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(admitSeed)
	if header.Ethernet(frame).Type() == header.IPv4ProtocolNumber {
		h.Write(frame[header.EthernetMinimumSize+12 : header.EthernetMinimumSize+16])
	} else {
		h.Write(frame[header.EthernetMinimumSize+8 : header.EthernetMinimumSize+24])
	}
	h.Write(ports)
	h.Write(num)
	return h.Sum64() | 1
}

// replyKey hashes what a segment acknowledging all of segment th (a TCP
// header the stack sends over IP header ip, with span sequence numbers
// of payload, SYN and FIN) will carry: th's destination address as its
// source, the ports swapped, and th's sequence number plus span as its
// acknowledgment number, in the layout of segKey. For a SYN-ACK (span
// 1) it is the key of the segment completing the handshake. ok is false
// if ip is not an IPv4 or IPv6 header.
func (a *Admission) replyKey(ip []byte, th header.TCP, span uint32) (uint64, bool) {
	var h maphash.Hash
	h.SetSeed(admitSeed)
	switch {
	case len(ip) >= header.IPv4MinimumSize && ip[0]>>4 == 4:
		h.Write(ip[16:20])
	case len(ip) >= header.IPv6MinimumSize && ip[0]>>4 == 6:
		h.Write(ip[24:40])
	default:
		return 0, false
	}
	var b [8]byte
	binary.BigEndian.PutUint16(b[0:], th.DestinationPort())
	binary.BigEndian.PutUint16(b[2:], th.SourcePort())
	binary.BigEndian.PutUint32(b[4:], th.SequenceNumber()+span)
	h.Write(b[:])
	return h.Sum64() | 1, true
}

// answerOpened marks, in a slot of answered, that the handshake's first
// segment has gone to the listener.
const answerOpened = 1 << 32

// answer is the answered slot of a SYN-ACK whose completing segment hashes
// to k and which acknowledges seq.
func answer(k uint64, seq uint32) uint64 { return k>>33<<33 | uint64(seq) }

// answers reports whether slot value v remembers the SYN-ACK whose
// completing segment hashes to k.
func answers(v, k uint64) bool { return v != 0 && v>>33 == k>>33 }

// completes reports whether a segment to a listener over the control
// budget, whose ackKey is k (zero: it carries no ACK), completes a
// handshake the stack answered (rule 8), and if so (and the class owes
// less than twice the budget) admits it.
func (a *Admission) completes(k uint64) bool {
	if k == 0 || !answers(a.answered[k%admitHandshakeSlots].Load(), k) || a.ctl.owed.Load() >= 2*AdmitLimit {
		return false
	}
	a.ctl.owed.Add(1)
	return true
}

// outOfHandshake reports whether a segment for a listener acknowledges a
// SYN-ACK the link remembers without starting at the sequence number the
// handshake expects, before any segment that does (rule 12). A segment
// that does start there is marked, so that the rest of the peer's
// flight passes. k is the segment's ackKey.
func (a *Admission) outOfHandshake(k uint64, frame []byte, l4off int) bool {
	i := k % admitHandshakeSlots
	v := a.answered[i].Load()
	if !answers(v, k) || v&answerOpened != 0 {
		return false // not remembered, or the first segment went to the listener
	}
	if binary.BigEndian.Uint32(frame[l4off+4:]) == uint32(v) {
		a.answered[i].CompareAndSwap(v, v|answerOpened)
		return false
	}
	return true
}

// withMSS reports whether a SYN over the budget carries an MSS option,
// and if so (and the class owes less than the budget and its reserve)
// admits it (rule 11).
func (a *Admission) withMSS(frame []byte, l4off int) bool {
	if a.syn.owed.Load() >= AdmitLimit+admitSYNReserve || !hasMSSOption(frame[l4off:]) {
		return false
	}
	a.syn.owed.Add(1)
	return true
}

// hasMSSOption reports whether TCP header th (cut anywhere after its
// fixed part) carries a well-formed MSS option.
func hasMSSOption(th []byte) bool {
	if len(th) < header.TCPMinimumSize {
		return false
	}
	end := min(int(th[12]>>4)*4, len(th))
	for i := header.TCPMinimumSize; i < end; {
		switch th[i] {
		case header.TCPOptionEOL:
			return false
		case header.TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= end {
			return false
		}
		n := int(th[i+1])
		if th[i] == header.TCPOptionMSS {
			return n == header.TCPOptionMSSLength && i+n <= end
		}
		if n < 2 {
			return false // malformed: a length that cannot move on
		}
		i += n
	}
	return false
}

// retried reports whether a SYN over the budget is a retransmission of
// one refused before, and if so (and the class owes less than twice the
// budget) admits it; otherwise it remembers the SYN as refused, at now.
func (a *Admission) retried(frame []byte, l4off int, now int64) bool {
	k := a.synKey(frame, l4off)
	if a.refused.has(k, now) && a.syn.owed.Load() < 2*AdmitLimit {
		a.syn.owed.Add(1)
		return true
	}
	a.refused.add(k, now)
	return false
}

// refusedFilter is the memory of refused SYNs (rule 6): two generations
// of a filter of bits (a Bloom filter with two bits per key), the current
// one, where keys are added, and the one before. A key added is found for
// at least one epoch (admitRefusedEpoch) and at most two; a key never
// added is found by chance with the probability that both its bits are
// set, which grows with the SYNs refused per epoch. All words are
// atomics: the link's readers add and test concurrently. A reader may
// test a generation while another clears it on rotation; that only makes
// a lookup miss or match by chance once, which rule 6's bound covers.
type refusedFilter struct {
	// epoch is the number of the current epoch (now divided by
	// admitRefusedEpoch); gens[epoch%2] is its generation.
	epoch atomic.Int64
	gens  [2][admitRefusedBits / 64]atomic.Uint64
}

// rotate makes the generation of now's epoch current, clearing what it
// held before, and returns the epoch.
func (f *refusedFilter) rotate(now int64) int64 {
	e := now / int64(admitRefusedEpoch)
	for {
		cur := f.epoch.Load()
		if e <= cur {
			return cur // the clock stepped back: stay in the newer epoch
		}
		if f.epoch.CompareAndSwap(cur, e) {
			f.clear(int(e % 2))
			if e-cur >= 2 {
				f.clear(int((e + 1) % 2)) // the epoch before held nothing
			}
			return e
		}
	}
}

func (f *refusedFilter) clear(g int) {
	for i := range f.gens[g] {
		f.gens[g][i].Store(0)
	}
}

// refusedBits returns key k's two bit positions.
func refusedBits(k uint64) (uint64, uint64) {
	return k % admitRefusedBits, (k >> 32) % admitRefusedBits
}

// has reports whether k was added in the current epoch or the one before.
func (f *refusedFilter) has(k uint64, now int64) bool {
	e := f.rotate(now)
	b1, b2 := refusedBits(k)
	for _, g := range [2]int64{e % 2, (e + 1) % 2} {
		w := &f.gens[g]
		if w[b1/64].Load()&(1<<(b1%64)) != 0 && w[b2/64].Load()&(1<<(b2%64)) != 0 {
			return true
		}
	}
	return false
}

// add adds k to the current epoch's generation.
func (f *refusedFilter) add(k uint64, now int64) {
	w := &f.gens[f.rotate(now)%2]
	b1, b2 := refusedBits(k)
	w[b1/64].Or(1 << (b1 % 64))
	w[b2/64].Or(1 << (b2 % 64))
}

// setPressure records a change of SYN pressure and tells the hook.
func (a *Admission) setPressure(on bool) {
	if a.underPressure.Load() == on || a.underPressure.Swap(on) == on {
		return
	}
	if fn := a.pressure.Load(); fn != nil {
		(*fn)(on)
	}
}

// NoteTx remembers a FIN the stack transmits (rule 10) and pays a class
// back for a SYN-ACK or RST. Besides a FIN, it costs a look at the TCP
// flags and one atomic load per packet while nothing is owed.
func (a *Admission) NoteTx(pkt *stack.PacketBuffer) {
	if pkt.TransportProtocolNumber != header.TCPProtocolNumber {
		return
	}
	th := pkt.TransportHeader().Slice()
	if len(th) < header.TCPMinimumSize {
		return
	}
	f := header.TCP(th).Flags()
	if f&header.TCPFlagFin != 0 {
		span := uint32(pkt.Data().Size()) + 1
		if f&header.TCPFlagSyn != 0 {
			span++
		}
		ip := pkt.NetworkHeader().Slice()
		for _, span := range [2]uint32{span, span - 1} {
			if k, ok := a.replyKey(ip, th, span); ok {
				a.closed[k%admitClosedSlots].Store(k)
			}
		}
	}
	if f.Contains(header.TCPFlagSyn | header.TCPFlagAck) {
		// Remembered whatever is owed: a handshake answered just before
		// a flood fills the budgets needs rules 8 and 12 too.
		if k, ok := a.replyKey(pkt.NetworkHeader().Slice(), th, 1); ok {
			a.answered[k%admitHandshakeSlots].Store(answer(k, header.TCP(th).AckNumber()))
		}
	}
	if a.syn.owed.Load() == 0 && a.ctl.owed.Load() == 0 {
		return
	}
	switch {
	case f.Contains(header.TCPFlagSyn | header.TCPFlagAck):
		a.syn.pay(1)
	case f.Contains(header.TCPFlagRst):
		if a.wasCharged(header.TCP(th).SourcePort()) {
			a.ctl.pay(1)
		}
	}
}

// markCharged records that a control segment for local port p was
// charged.
func (a *Admission) markCharged(p uint16) {
	w, bit := &a.charged[p/64], uint64(1)<<(p%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// wasCharged reports whether a control segment for local port p was ever
// charged.
func (a *Admission) wasCharged(p uint16) bool {
	return a.charged[p/64].Load()&(uint64(1)<<(p%64)) != 0
}

// Verdict is what Check decides about a received frame.
type Verdict uint8

const (
	// Admit: deliver the frame as usual.
	Admit Verdict = iota
	// DropSYN: a SYN for a listener over the SYN budget; drop it and
	// count it (a link's RxDropFloodSYN).
	DropSYN
	// DropCtl: another segment for a listener over the control budget,
	// or a RST for a listener; drop it and count it (RxDropFloodCtl).
	DropCtl
	// DropStale: a segment for a listener that no connection the stack
	// has or could make wants: it acknowledges a FIN the stack sent on
	// its 4-tuple, of a connection the stack has closed (rule 10), or a
	// SYN-ACK at a sequence number that cannot complete that handshake
	// (rule 12); drop it.
	DropStale
)

// atListener looks at an ACK-bearing segment for a listener: it returns
// the segment's ackKey (zero if it carries no ACK) and whether it is
// stale — it carries the acknowledgment number of a FIN the stack sent
// on its 4-tuple (rule 10), or is out of a handshake's order (rule 12).
func (a *Admission) atListener(frame []byte, l4off int, flags header.TCPFlags) (k uint64, stale bool) {
	if flags&header.TCPFlagAck == 0 {
		return 0, false
	}
	k = a.ackKey(frame, l4off)
	return k, a.closed[k%admitClosedSlots].Load() == k || a.outOfHandshake(k, frame, l4off)
}

// CheckFrame is Check of a whole Ethernet frame, parsed here.
func (a *Admission) CheckFrame(b []byte) Verdict {
	if len(b) < header.EthernetMinimumSize+header.IPv4MinimumSize+header.TCPMinimumSize {
		return Admit // too short for a TCP segment: not admission's business
	}
	var r frame.Repr
	err := r.Parse(b)
	return a.Check(b, len(b), &r, err)
}

// Check charges a checked, unfragmented frame of n bytes (head holds at
// least its headers; r and err are frame.Repr.ParseHead's of it) to its
// class if it is a TCP segment for a listener (with or without payload),
// and refuses it when the class is over budget. Anything else (not TCP,
// a fragment, a segment for a connection or a closed port) is admitted
// uncharged.
func (a *Admission) Check(head []byte, n int, r *frame.Repr, err error) Verdict {
	v := a.verdict(head, n, r, err)
	switch v {
	case DropSYN:
		a.dropSYN.Add(1)
	case DropCtl:
		a.dropCtl.Add(1)
	case DropStale:
		a.dropStale.Add(1)
	}
	return v
}

// verdict is Check without the counting.
func (a *Admission) verdict(head []byte, n int, r *frame.Repr, err error) Verdict {
	if err != nil || r.Depth < frame.DepthTransport || r.Proto != uint8(header.TCPProtocolNumber) || r.Fragment {
		return Admit
	}
	flags, payload, l4off := header.TCPFlags(r.TCPFlags), r.PayloadLen > 0, r.L4Off
	if n < len(head) {
		head = head[:n]
	}
	if payload {
		// Payload for a listener: the listener queues it (within its
		// receive buffer, but charged by payload size while it holds a
		// receive view) and answers a stray one with a RST. Charged to
		// the control class; delivered as usual when admitted.
		lookup := a.lookup.Load()
		if lookup == nil || (*lookup)(head) != ConnListener {
			return Admit
		}
		ack, stale := a.atListener(head, l4off, flags)
		if stale {
			return DropStale
		}
		a.markCharged(r.DstPort)
		if !a.ctl.charge(AdmitLimit, !a.noLeak) && !a.completes(ack) {
			return DropCtl
		}
		return Admit
	}
	var class *admitClass
	var ack uint64 // the ackKey of a control segment for a listener
	syn := flags&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn
	if lookup := a.lookup.Load(); lookup != nil {
		if (*lookup)(head) == ConnListener {
			class = &a.ctl
			if syn {
				class = &a.syn
			}
		}
	} else if syn {
		class = &a.syn
	}
	if class == &a.ctl {
		if flags&header.TCPFlagRst != 0 && flags&header.TCPFlagSyn == 0 {
			return DropCtl // rule 9: the listener would ignore it
		}
		var stale bool
		if ack, stale = a.atListener(head, l4off, flags); stale {
			return DropStale
		}
		a.markCharged(r.DstPort)
	}
	if class != nil && !class.charge(AdmitLimit, !a.noLeak) {
		if class == &a.ctl {
			if !a.completes(ack) {
				return DropCtl
			}
		} else if !a.withMSS(head, l4off) {
			if now := admitNow(); !a.retried(head, l4off, now) {
				a.lastRefusal.Store(now)
				a.setPressure(true)
				return DropSYN
			}
		}
	}
	if class == &a.syn && a.underPressure.Load() && a.syn.owed.Load() < AdmitLimit/4 &&
		admitNow()-a.lastRefusal.Load() >= int64(AdmitCalm) {
		a.setPressure(false)
	}
	return Admit
}
