package link

import (
	"math/rand/v2"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
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
