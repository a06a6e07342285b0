package tap

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// holdingDispatcher keeps nothing and answers nothing: a stack whose
// listener never gets round to its queue. It counts what it was given and
// the largest buffer capacity of a delivered packet.
type holdingDispatcher struct{ n, maxCap atomic.Int64 }

func (d *holdingDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.n.Add(1)
	c := int64(0)
	for _, v := range pkt.AsSlices() {
		c += int64(cap(v))
	}
	for {
		m := d.maxCap.Load()
		if c <= m || d.maxCap.CompareAndSwap(m, c) {
			break
		}
	}
}
func (d *holdingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// synFrom is tcpSYN from source port port (checksum adjusted).
func synFrom(port uint16, flags header.TCPFlags) []byte {
	b := tcpSYN()
	tcp := header.TCP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	tcp.SetSourcePort(port)
	binary.BigEndian.PutUint16(tcp[13-1:], uint16(header.TCPMinimumSize/4)<<12|uint16(flags))
	tcp.SetChecksum(0)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, v4Peer, v4Stack, header.TCPMinimumSize)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return b
}

// TestAdmissionBoundsUnansweredSYNs floods a link whose stack never answers
// with SYNs: at most the budget (and what the leak pays back meanwhile)
// reaches the stack, every other one is counted as a flood drop, and each
// delivered SYN holds a copy of its own size, not a receive view.
func TestAdmissionBoundsUnansweredSYNs(t *testing.T) {
	link, _, peer := newPeerLink(t, OffloadOn)
	d := &holdingDispatcher{}
	link.Attach(d)
	const sent = admitLimit + 1500
	start := time.Now()
	for i := range sent {
		if err := peer.Write(withVnet(vnetHdr{}, synFrom(uint16(1024+i), header.TCPFlagSyn))); err != nil {
			t.Fatal(err)
		}
	}
	// Each frame ends delivered or dropped; wait for the last to end.
	if !evchantest.Poll(10*time.Second, func() bool { return d.n.Load()+int64(link.Stats().RxDropFloodSYN) == sent }) {
		t.Fatalf("link read %d of %d frames, delivered %d, dropped %d", link.Stats().RxFrames, sent, d.n.Load(), link.Stats().RxDropFloodSYN)
	}
	elapsed := time.Since(start)
	st := link.Stats()
	got := d.n.Load()
	if got+int64(st.RxDropFloodSYN) != sent {
		t.Fatalf("delivered %d + dropped %d != sent %d", got, st.RxDropFloodSYN, sent)
	}
	leak := int64(elapsed.Seconds()*admitLeakPerSec) + 1
	if got < admitLimit || got > admitLimit+leak {
		t.Fatalf("delivered %d SYNs to a stack that answered none in %v, want %d to %d", got, elapsed, admitLimit, admitLimit+leak)
	}
	if st.RxDropFloodSYN == 0 || st.RxDropFloodCtl != 0 {
		t.Fatalf("flood drops: SYN %d, control %d", st.RxDropFloodSYN, st.RxDropFloodCtl)
	}
	if c := d.maxCap.Load(); c > 256 {
		t.Fatalf("a delivered SYN holds %d bytes of buffers, want a small copy", c)
	}
	link.Attach(nil)
	link.Wait()
}

// TestAdmissionPaidBackByAnswers checks that each SYN-ACK the stack sends
// pays back one SYN, so a listener that answers keeps getting SYNs, and
// that segments the stack's lookup places on an established connection
// are never charged.
func TestAdmissionPaidBackByAnswers(t *testing.T) {
	link, _, peer := newPeerLink(t, OffloadOn)
	link.Attach(nil)
	link.Wait()
	link.adm.DisableLeak()
	d := &holdingDispatcher{}
	established := atomic.Bool{}
	link.SetConnLookup(lookupBy(&established))
	var pmu sync.Mutex
	var pressure []bool // reported on the reader goroutine
	link.SetSYNPressure(func(on bool) {
		pmu.Lock()
		pressure = append(pressure, on)
		pmu.Unlock()
	})
	link.Attach(d)
	send := func(n int, flags header.TCPFlags) {
		t.Helper()
		// Each frame ends delivered or dropped; wait for the last to end.
		ended := func() int64 {
			st := link.Stats()
			return d.n.Load() + int64(st.RxDropFloodSYN+st.RxDropFloodCtl)
		}
		before := ended()
		for i := range n {
			if err := peer.Write(withVnet(vnetHdr{}, synFrom(uint16(2000+i), flags))); err != nil {
				t.Fatal(err)
			}
		}
		if !evchantest.Poll(10*time.Second, func() bool { return ended() == before+int64(n) }) {
			t.Fatalf("%d of %d frames delivered or dropped", ended()-before, n)
		}
	}
	sendFrom := func(port uint16, flags header.TCPFlags) {
		t.Helper()
		st := link.Stats()
		before := d.n.Load() + int64(st.RxDropFloodSYN+st.RxDropFloodCtl)
		if err := peer.Write(withVnet(vnetHdr{}, synFrom(port, flags))); err != nil {
			t.Fatal(err)
		}
		if !evchantest.Poll(10*time.Second, func() bool {
			st := link.Stats()
			return d.n.Load()+int64(st.RxDropFloodSYN+st.RxDropFloodCtl) == before+1
		}) {
			t.Fatal("frame neither delivered nor dropped")
		}
	}
	send(admitLimit, header.TCPFlagSyn)
	// Answer 100 SYNs with SYN-ACKs, as a listener would.
	answerFrom := func(port uint16, flags header.TCPFlags, n int) {
		for range n {
			var pkts stack.PacketBufferList
			hdr := make([]byte, header.TCPMinimumSize)
			header.TCP(hdr).Encode(&header.TCPFields{SrcPort: port, DstPort: 40000, DataOffset: header.TCPMinimumSize, Flags: flags})
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buffer.Buffer{}})
			copy(pkt.TransportHeader().Push(header.TCPMinimumSize), hdr)
			pkt.TransportProtocolNumber = header.TCPProtocolNumber
			ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
			ip.Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: v4Stack, DstAddr: v4Peer})
			pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
			pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC)
			link.AddHeader(pkt)
			pkts.PushBack(pkt)
			if _, err := link.WritePackets(pkts); err != nil {
				t.Fatal(err)
			}
			pkts.DecRef()
		}
	}
	answer := func(flags header.TCPFlags, n int) { answerFrom(80, flags, n) }
	answer(header.TCPFlagSyn|header.TCPFlagAck, 100)
	peer.Drain(50 * time.Millisecond)
	before := d.n.Load()
	send(100, header.TCPFlagSyn)
	if got := d.n.Load() - before; got != 100 {
		t.Fatalf("after 100 SYN-ACKs, %d of 100 new SYNs delivered", got)
	}
	before = d.n.Load()
	send(10, header.TCPFlagSyn)
	if got := d.n.Load() - before; got != 0 {
		t.Fatalf("%d SYNs delivered over the budget with nothing paid back", got)
	}
	// The last of them again, as a client retransmits it: admitted over
	// the budget. (Only the last refused is sure to be remembered: the
	// table is a hash table, and two SYNs may share a slot.) A fresh SYN
	// is still refused.
	before = d.n.Load()
	sendFrom(2009, header.TCPFlagSyn)
	if got := d.n.Load() - before; got != 1 {
		t.Fatal("a retransmitted SYN was refused over the budget")
	}
	before = d.n.Load()
	sendFrom(3000, header.TCPFlagSyn)
	if got := d.n.Load() - before; got != 0 {
		t.Fatal("a fresh SYN was admitted over the budget")
	}
	// Refusing SYNs put the link under pressure; answers that bring the
	// unpaid SYNs below a quarter of the budget lift it, once no SYN was
	// refused for admitCalm.
	lastRefused := time.Now()
	answer(header.TCPFlagSyn|header.TCPFlagAck, 2*admitLimit)
	reported := func() []bool {
		pmu.Lock()
		defer pmu.Unlock()
		return append([]bool(nil), pressure...)
	}
	send(1, header.TCPFlagSyn)
	if p := reported(); len(p) != 1 && time.Since(lastRefused) < admitCalm {
		t.Fatalf("SYN pressure reports %v within %v of the last refused SYN, want [true]", p, admitCalm)
	}
	// The calm is a span of the link's clock: let it pass (nothing is
	// awaited from another goroutine here), then a SYN admitted lifts
	// the pressure, reported before its frame is delivered.
	time.Sleep(time.Until(lastRefused.Add(admitCalm)))
	send(1, header.TCPFlagSyn)
	if p := reported(); len(p) != 2 || !p[0] || p[1] {
		t.Fatalf("SYN pressure reports %v, want [true false]", p)
	}
	// Control segments have a budget of their own, paid back by RSTs.
	before = d.n.Load()
	send(admitLimit+50, header.TCPFlagAck)
	if got, drops := d.n.Load()-before, link.Stats().RxDropFloodCtl; got != admitLimit || drops != 50 {
		t.Fatalf("%d ACKs at a listener delivered, %d dropped; want %d and 50", got, drops, admitLimit)
	}
	// RSTs from a port no segment was charged to (a closed port's
	// answers) pay nothing back; the listener's do.
	answerFrom(81, header.TCPFlagRst, 20)
	answer(header.TCPFlagRst, 20)
	before = d.n.Load()
	send(50, header.TCPFlagAck)
	if got := d.n.Load() - before; got != 20 {
		t.Fatalf("after 20 RSTs from the listener's port and 20 from another, %d of 50 ACKs delivered, want 20", got)
	}
	// Established connections are not charged.
	established.Store(true)
	before = d.n.Load()
	send(500, header.TCPFlagAck)
	if got := d.n.Load() - before; got != 500 {
		t.Fatalf("%d of 500 ACKs of established connections delivered", got)
	}
	link.Attach(nil)
	link.Wait()
}

// lookupBy is a stack's ConnLookup that places every segment on an
// established connection while est is set, on a listener otherwise.
func lookupBy(est *atomic.Bool) link.ConnLookup {
	return func([]byte) link.ConnKind {
		if est.Load() {
			return link.ConnEstablished
		}
		return link.ConnListener
	}
}

// segment is a TCP segment from the peer's port port to the stack's port
// 80 with the given flags, acknowledgment number and payload.
func segment(port uint16, flags header.TCPFlags, ack uint32, payload []byte) []byte {
	tl := header.TCPMinimumSize + len(payload)
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+tl)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: stackMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + tl), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: v4Peer, DstAddr: v4Stack})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{SrcPort: port, DstPort: 80, SeqNum: 7000, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(tcp.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, v4Peer, v4Stack, uint16(tl))
	xsum = checksum.Checksum(payload, xsum)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return b
}

// TestAdmissionHandshakeAndRSTs checks rules 8 and 9 of admission: with
// the control budget spent, the segments that complete a handshake the
// stack answered with a SYN-ACK (its final ACK, and data acknowledging
// the SYN-ACK) are still delivered, and no other ACK is; a RST for a
// listener is dropped and counted, and charges nothing.
func TestAdmissionHandshakeAndRSTs(t *testing.T) {
	link, _, peer := newPeerLink(t, OffloadOn)
	link.Attach(nil)
	link.Wait()
	link.adm.DisableLeak()
	d := &holdingDispatcher{}
	var established atomic.Bool
	link.SetConnLookup(lookupBy(&established))
	link.Attach(d)
	ended := func() int64 {
		st := link.Stats()
		return d.n.Load() + int64(st.RxDropFloodSYN+st.RxDropFloodCtl)
	}
	// deliver sends frames and reports how many reached the stack.
	deliver := func(frames ...[]byte) int64 {
		t.Helper()
		before, delivered := ended(), d.n.Load()
		for _, f := range frames {
			if err := peer.Write(withVnet(vnetHdr{}, f)); err != nil {
				t.Fatal(err)
			}
		}
		if !evchantest.Poll(10*time.Second, func() bool { return ended() == before+int64(len(frames)) }) {
			t.Fatalf("%d of %d frames delivered or dropped", ended()-before, len(frames))
		}
		return d.n.Load() - delivered
	}

	// RSTs for a listener: dropped while the budget is unspent, counted,
	// and charged to nothing, so the whole budget of ACKs gets in after
	// them.
	var rsts [][]byte
	for i := range 10 {
		rsts = append(rsts, segment(uint16(3000+i), header.TCPFlagRst, 0, nil))
	}
	rsts = append(rsts, segment(3100, header.TCPFlagRst|header.TCPFlagAck, 1, nil))
	if got := deliver(rsts...); got != 0 || link.Stats().RxDropFloodCtl != 11 {
		t.Fatalf("%d of 11 RSTs for a listener delivered, %d counted as dropped", got, link.Stats().RxDropFloodCtl)
	}
	var acks [][]byte
	for i := range admitLimit {
		acks = append(acks, segment(uint16(4000+i), header.TCPFlagAck, 1, nil))
	}
	if got := deliver(acks...); got != admitLimit {
		t.Fatalf("after RSTs, %d of %d ACKs (the budget) delivered", got, admitLimit)
	}
	if got := deliver(segment(9000, header.TCPFlagAck, 1, nil)); got != 0 {
		t.Fatal("an ACK over the control budget was delivered")
	}

	// The stack answers a SYN from port 40000 with a SYN-ACK whose
	// sequence number is 5000 (as a cookie would be), acknowledging the
	// SYN's sequence number 6999 (segment's are 7000: the peer's first).
	var pkts stack.PacketBufferList
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128})
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{
		SrcPort: 80, DstPort: 40000, SeqNum: 5000, AckNum: 7000, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn | header.TCPFlagAck, WindowSize: 65535})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: v4Stack, DstAddr: v4Peer})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC)
	link.AddHeader(pkt)
	pkts.PushBack(pkt)
	if _, err := link.WritePackets(pkts); err != nil {
		t.Fatal(err)
	}
	pkts.DecRef()
	peer.Drain(50 * time.Millisecond)

	// Its final ACK and data acknowledging the SYN-ACK get in over the
	// budget; ACKs of another number or from another port do not.
	if got := deliver(segment(40000, header.TCPFlagAck, 5001, nil), segment(40000, header.TCPFlagAck|header.TCPFlagPsh, 5001, []byte("first data"))); got != 2 {
		t.Fatalf("%d of 2 segments completing an answered handshake delivered over the budget", got)
	}
	if got := deliver(segment(40000, header.TCPFlagAck, 5002, nil), segment(40001, header.TCPFlagAck, 5001, nil),
		segment(40000, header.TCPFlagAck|header.TCPFlagPsh, 4999, []byte("stray"))); got != 0 {
		t.Fatalf("%d of 3 segments completing no answered handshake delivered over the budget", got)
	}
	if _, got := link.adm.Owed(); got != admitLimit+2 {
		t.Fatalf("control class owes %d, want the budget and the 2 handshake segments, %d", got, admitLimit+2)
	}
	link.Attach(nil)
	link.Wait()
}

// TestAdmissionStaleSegments checks rule 10 of admission: once the stack
// has sent a FIN on a 4-tuple, a segment to the listener (the connection
// is gone) that acknowledges that FIN — the peer's late final ACK, or the
// ACK its TIME-WAIT sends when a SYN-ACK for a flood SYN reaches its port —
// is dropped and counted, with the budget unspent, so that the listener
// never sees it (gVisor's SYN-cookie check would take it for a handshake
// of an echo connection and make a connection no peer has). Segments that
// acknowledge anything else, or come from another port, still reach the
// listener.
func TestAdmissionStaleSegments(t *testing.T) {
	link, _, peer := newPeerLink(t, OffloadOn)
	link.Attach(nil)
	link.Wait()
	link.adm.DisableLeak()
	d := &holdingDispatcher{}
	var established atomic.Bool
	link.SetConnLookup(lookupBy(&established))
	link.Attach(d)
	ended := func() int64 {
		st := link.Stats()
		return d.n.Load() + int64(st.RxDropFloodSYN+st.RxDropFloodCtl+st.RxDropStale)
	}
	deliver := func(frames ...[]byte) int64 {
		t.Helper()
		before, delivered := ended(), d.n.Load()
		for _, f := range frames {
			if err := peer.Write(withVnet(vnetHdr{}, f)); err != nil {
				t.Fatal(err)
			}
		}
		if !evchantest.Poll(10*time.Second, func() bool { return ended() == before+int64(len(frames)) }) {
			t.Fatalf("%d of %d frames delivered or dropped", ended()-before, len(frames))
		}
		return d.n.Load() - delivered
	}

	// The stack ends its connection with the peer's port 40000: a FIN
	// with the last 10 bytes, sequence number 9000, sent while nothing is
	// owed (no flood).
	data := []byte("last bytes")
	var pkts stack.PacketBufferList
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buffer.MakeWithData(data)})
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{
		SrcPort: 80, DstPort: 40000, SeqNum: 9000, AckNum: 7000, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagFin | header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 65535})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + header.TCPMinimumSize + len(data)), TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber), SrcAddr: v4Stack, DstAddr: v4Peer})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.EgressRoute.RemoteLinkAddress = tcpip.LinkAddress(peerMAC)
	link.AddHeader(pkt)
	pkts.PushBack(pkt)
	if _, err := link.WritePackets(pkts); err != nil {
		t.Fatal(err)
	}
	pkts.DecRef()
	peer.Drain(50 * time.Millisecond)

	// The peer's ACK of that FIN, its FIN-ACK, data acknowledging it,
	// and a retransmission of the peer's own FIN sent before ours
	// arrived (acknowledging everything but our FIN), now at the
	// listener: dropped as stale, charged to nothing.
	ackFIN := uint32(9000 + len(data) + 1)
	stale := [][]byte{
		segment(40000, header.TCPFlagAck, ackFIN, nil),
		segment(40000, header.TCPFlagAck|header.TCPFlagFin, ackFIN, nil),
		segment(40000, header.TCPFlagAck|header.TCPFlagPsh, ackFIN, []byte("late")),
		segment(40000, header.TCPFlagAck|header.TCPFlagFin, ackFIN-1, nil),
	}
	if got := deliver(stale...); got != 0 {
		t.Fatalf("%d of 4 segments of a closed connection reached the listener", got)
	}
	st := link.Stats()
	if st.RxDropStale != 4 || st.RxDropFloodCtl != 0 {
		t.Fatalf("stale drops %d, control drops %d; want 4 and 0", st.RxDropStale, st.RxDropFloodCtl)
	}
	if _, owed := link.adm.Owed(); owed != 0 {
		t.Fatalf("stale segments charged: control class owes %d", owed)
	}
	// Another acknowledgment number, another port: the listener's
	// business, charged as before.
	if got := deliver(segment(40000, header.TCPFlagAck, ackFIN-2, nil), segment(40001, header.TCPFlagAck, ackFIN, nil)); got != 2 {
		t.Fatalf("%d of 2 segments acknowledging no FIN the stack sent delivered", got)
	}
	if _, owed := link.adm.Owed(); owed != 2 {
		t.Fatalf("control class owes %d, want 2", owed)
	}
	// A connection to the same 4-tuple (the stack's lookup finds it) is
	// not the listener's: its segments are delivered whatever they
	// acknowledge.
	established.Store(true)
	if got := deliver(segment(40000, header.TCPFlagAck, ackFIN, nil)); got != 1 {
		t.Fatal("a segment of an established connection was dropped as stale")
	}
	if st := link.Stats(); st.RxDropStale != 4 {
		t.Fatalf("stale drops %d, want 4", st.RxDropStale)
	}
	link.Attach(nil)
	link.Wait()
}
