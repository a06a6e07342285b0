package link

import (
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link/linktest"
)

// TestRefusedFilter checks rule 6's memory: a refused SYN is found again
// for at least one epoch after it was added and not after two, however
// many other SYNs were refused meanwhile (a table of slots would have
// forgotten it), and SYNs never refused are rarely taken for
// retransmissions.
func TestRefusedFilter(t *testing.T) {
	f := new(refusedFilter)
	epoch := int64(admitRefusedEpoch)
	t0 := 1000*epoch + epoch - 1 // the last nanosecond of an epoch
	rng := rand.New(rand.NewPCG(1, 2))
	const legit = 0x9e3779b97f4a7c15
	f.add(legit, t0)
	// A flood refused in the next epoch: 100 000 SYNs, far more than
	// admitRefusedBits / 64 words could hold as slots.
	for range 100_000 {
		f.add(rng.Uint64()|1, t0+1)
	}
	if !f.has(legit, t0+epoch) {
		t.Fatal("a refused SYN was forgotten within one epoch, under a flood")
	}
	chance := 0
	for range 100_000 {
		if f.has(rng.Uint64()|1, t0+epoch) {
			chance++
		}
	}
	// 100 000 keys of two bits in 2^21 bits: about 0.9% match by chance.
	if chance > 2_000 {
		t.Fatalf("%d of 100 000 SYNs never refused taken for retransmissions", chance)
	}
	if f.has(legit, t0+epoch+1) {
		t.Fatal("a refused SYN still remembered two epochs after the one it was added in")
	}
	// A jump of several epochs forgets everything.
	f.add(legit, t0+2*epoch+1)
	if f.has(legit, t0+10*epoch) {
		t.Fatal("a refused SYN remembered after a jump of the clock")
	}
	// The clock stepping back stays in the newer epoch.
	f.add(legit, t0+10*epoch)
	if !f.has(legit, t0) {
		t.Fatal("a refused SYN forgotten when the clock stepped back")
	}
}

// BenchmarkAdmissionNoteTx measures what NoteTx costs each transmitted
// data segment while nothing is owed (the common case): it looks at the
// TCP flags for a FIN (rule 10) besides the load of the owed counts.
func BenchmarkAdmissionNoteTx(b *testing.B) {
	a := new(Admission)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buffer.MakeWithData(make([]byte, 1448))})
	defer pkt.DecRef()
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{SrcPort: 80, DstPort: 40000,
		SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck | header.TCPFlagPsh})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize + 1448, TTL: 64, Protocol: uint8(header.TCPProtocolNumber)})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	for b.Loop() {
		a.NoteTx(pkt)
	}
}

// synWithOptions is an IPv4 SYN from port with sequence number seq and the
// TCP options opts (padded to whole 32-bit words with zeros, the end of
// the option list).
func synWithOptions(port uint16, seq uint32, opts []byte) []byte {
	n := (len(opts) + 3) &^ 3
	b := linktest.Frame(false, header.TCPProtocolNumber, n, 0)
	th := header.TCP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	th.Encode(&header.TCPFields{SrcPort: port, DstPort: 7, SeqNum: seq, DataOffset: uint8(header.TCPMinimumSize + n),
		Flags: header.TCPFlagSyn, WindowSize: 64240})
	copy(th[header.TCPMinimumSize:], opts)
	return b
}

// mssOption is a Linux SYN's options: MSS, SACK permitted, timestamps,
// window scale.
var mssOption = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7}

// TestAdmissionSYNReserve checks rule 11: once bare SYNs (a packet
// generator's) have filled the SYN budget, SYNs carrying an MSS option are
// still admitted up to the reserve, and refused beyond it; bare SYNs stay
// refused, except a retransmission (rule 6).
func TestAdmissionSYNReserve(t *testing.T) {
	a := new(Admission)
	a.DisableLeak()
	check := func(b []byte) Verdict { return a.CheckFrame(b) }
	for i := range AdmitLimit {
		if v := check(synWithOptions(uint16(1000+i), uint32(i), nil)); v != Admit {
			t.Fatalf("bare SYN %d within the budget: %v", i, v)
		}
	}
	bare := synWithOptions(9, 99, nil)
	if v := check(bare); v != DropSYN {
		t.Fatalf("a bare SYN over the budget: %v, want DropSYN", v)
	}
	for i := range admitSYNReserve {
		if v := check(synWithOptions(uint16(20000+i), uint32(i), mssOption)); v != Admit {
			t.Fatalf("SYN %d with an MSS option over the budget, within the reserve: %v", i, v)
		}
	}
	if v := check(synWithOptions(30000, 1, mssOption)); v != DropSYN {
		t.Fatalf("a SYN with an MSS option beyond the reserve: %v, want DropSYN", v)
	}
	if v := check(synWithOptions(30001, 1, nil)); v != DropSYN {
		t.Fatalf("a bare SYN beyond the reserve: %v, want DropSYN", v)
	}
	if v := check(bare); v != Admit {
		t.Fatalf("the refused bare SYN, retransmitted: %v, want Admit (rule 6)", v)
	}
	if syn, _ := a.Owed(); syn != AdmitLimit+admitSYNReserve+1 {
		t.Fatalf("SYN class owes %d, want %d", syn, AdmitLimit+admitSYNReserve+1)
	}
	if d := a.Drops(); d.SYN != 3 {
		t.Fatalf("%d SYNs refused, want 3", d.SYN)
	}
}

// TestHasMSSOption checks the option scan on what stacks send and on
// malformed option lists, which must neither match nor read past the
// header.
func TestHasMSSOption(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []byte
		want bool
	}{
		{"none", nil, false},
		{"linux", mssOption, true},
		{"mss only", []byte{2, 4, 5, 0xb4}, true},
		{"nops first", []byte{1, 1, 1, 1, 2, 4, 5, 0xb4}, true},
		{"after timestamps", []byte{1, 1, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 2, 4, 5, 0xb4}, true},
		{"end of list first", []byte{0, 0, 0, 0, 2, 4, 5, 0xb4}, false},
		{"window scale only", []byte{1, 3, 3, 7}, false},
		{"mss with a bad length", []byte{2, 3, 5, 0xb4}, false},
		{"zero length", []byte{4, 0, 2, 4, 5, 0xb4, 0, 0}, false},
		{"length past the header", []byte{1, 1, 8, 40}, false},
		{"mss cut by the header", []byte{1, 1, 1, 2}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := synWithOptions(1, 1, c.opts)
			th := b[header.EthernetMinimumSize+header.IPv4MinimumSize:]
			if got := hasMSSOption(th); got != c.want {
				t.Fatalf("hasMSSOption(%x) = %v, want %v", c.opts, got, c.want)
			}
			if len(c.opts) > 2 && hasMSSOption(th[:header.TCPMinimumSize+2]) {
				t.Fatal("a header cut after 2 option bytes matched")
			}
		})
	}
}

// segTo is an IPv4 segment from 192.0.2.1 port peerPort to port 7 with
// the given flags, sequence and acknowledgment numbers and payload bytes.
func segTo(peerPort uint16, flags header.TCPFlags, seq, ack uint32, payload int) []byte {
	b := linktest.Frame(false, header.TCPProtocolNumber, 0, payload)
	header.TCP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:]).Encode(&header.TCPFields{SrcPort: peerPort, DstPort: 7,
		SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 64240})
	return b
}

// synAck is a SYN-ACK the stack sends from port 7 to 192.0.2.1 port
// peerPort, with sequence number seq, acknowledging ack.
func synAck(tb testing.TB, peerPort uint16, seq, ack uint32) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128})
	tb.Cleanup(pkt.DecRef)
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{SrcPort: 7, DstPort: peerPort,
		SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn | header.TCPFlagAck})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize, TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}), DstAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1})})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	return pkt
}

// TestAdmissionHandshakeOrder checks rule 12: while the link remembers a
// SYN-ACK (something is owed), segments acknowledging it that do not start
// at the peer's first sequence number are dropped until one that does has
// gone to the listener; then the rest of the flight passes. Segments of
// other handshakes are not affected.
func TestAdmissionHandshakeOrder(t *testing.T) {
	a := new(Admission)
	a.DisableLeak()
	a.SetConnLookup(func([]byte) ConnKind { return ConnListener })
	const cookie = 777000
	if v := a.CheckFrame(synWithOptions(40003, 4000, mssOption)); v != Admit {
		t.Fatalf("SYN: %v", v)
	}
	a.NoteTx(synAck(t, 40003, cookie, 4001)) // owed when sent: remembered (rule 8), and pays the SYN back
	ack := header.TCPFlagAck
	if v := a.CheckFrame(segTo(40003, ack, 4001+1448, cookie+1, 1448)); v != DropStale {
		t.Fatalf("data past the first segment, first segment not seen: %v, want DropStale", v)
	}
	if v := a.CheckFrame(segTo(40003, ack, 4001+14480, cookie+1, 0)); v != DropStale {
		t.Fatalf("an ACK at the peer's current sequence number, first segment not seen: %v, want DropStale", v)
	}
	if v := a.CheckFrame(segTo(40003, ack, 4001, cookie+1, 0)); v != Admit {
		t.Fatalf("the handshake's ACK: %v, want Admit", v)
	}
	if v := a.CheckFrame(segTo(40003, ack, 4001+1448, cookie+1, 1448)); v != Admit {
		t.Fatalf("data past the first segment once the first went: %v, want Admit", v)
	}
	if v := a.CheckFrame(segTo(40004, ack, 9, cookie+1, 0)); v != Admit {
		t.Fatalf("an ACK on a 4-tuple with no remembered SYN-ACK: %v, want Admit", v)
	}
	if d := a.Drops(); d.Stale != 2 {
		t.Fatalf("%d segments dropped as stale, want 2", d.Stale)
	}
}
