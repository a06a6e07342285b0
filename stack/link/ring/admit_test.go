//go:build linux

package ring

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link"
)

// countingDispatcher counts the packets delivered to it and holds none.
type countingDispatcher struct{ n atomic.Int64 }

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.n.Add(1)
}
func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// tcpFrame is a TCP segment from peerAddr:port to stackAddr:80, to the
// MAC dst, with the given flags and payload.
func tcpFrame(dst tcpip.LinkAddress, port uint16, flags header.TCPFlags, payload []byte) []byte {
	tl := header.TCPMinimumSize + len(payload)
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+tl)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: dst, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + tl), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: peerAddr, DstAddr: stackAddr})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{SrcPort: port, DstPort: 80, SeqNum: 7000 + uint32(port), DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	copy(tcp.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, peerAddr, stackAddr, uint16(tl))
	tcp.SetChecksum(^tcp.CalculateChecksum(checksum.Checksum(payload, xsum)))
	return b
}

// TestAdmissionOverRing checks that the ring's stack side applies
// admission (link.Admission) to what a peer sends: a peer flooding SYNs at
// a listener gets the budget delivered and the rest dropped and counted,
// the link reports SYN pressure, SYN-ACKs the stack sends pay the budget
// back, RSTs and payload for a listener are charged to the control class,
// and segments for established connections are never charged.
func TestAdmissionOverRing(t *testing.T) {
	l, p := listenDial(t, Config{})
	l.adm.DisableLeak()
	var listener atomic.Bool
	listener.Store(true)
	l.SetConnLookup(func([]byte) link.ConnKind {
		if listener.Load() {
			return link.ConnListener
		}
		return link.ConnEstablished
	})
	var pressure atomic.Int32
	l.SetSYNPressure(func(on bool) {
		if on {
			pressure.Add(1)
		}
	})
	d := &countingDispatcher{}
	l.Attach(d)
	mac := l.LinkAddress()
	ended := func() int64 {
		st := l.Stats()
		return d.n.Load() + int64(st.RxDropsFloodSYN+st.RxDropsFloodCtl)
	}
	// send sends n frames from source ports from, from+1, ... and waits
	// until each was delivered or dropped; it returns how many were
	// delivered.
	send := func(from, n int, flags header.TCPFlags, payload []byte) int64 {
		t.Helper()
		before, delivered := ended(), d.n.Load()
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; i < n; {
			k, err := p.Send(tcpFrame(mac, uint16(from+i), flags, payload))
			i += k
			if errors.Is(err, ErrNoFrame) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // the stack side holds every frame: let it take some
				continue
			}
			if err != nil {
				t.Fatalf("sending frame %d: %v", i, err)
			}
		}
		if !evchantest.Poll(20*time.Second, func() bool { return ended() == before+int64(n) }) {
			t.Fatalf("%d of %d frames delivered or dropped", ended()-before, n)
		}
		return d.n.Load() - delivered
	}
	const over = 300
	if got := send(1000, link.AdmitLimit+over, header.TCPFlagSyn, nil); got != link.AdmitLimit {
		t.Fatalf("SYN flood: %d delivered, want the budget, %d", got, link.AdmitLimit)
	}
	if st := l.Stats(); st.RxDropsFloodSYN != over || st.RxDropsFloodCtl != 0 {
		t.Fatalf("SYN flood drops: SYN %d, control %d; want %d, 0", st.RxDropsFloodSYN, st.RxDropsFloodCtl, over)
	}
	if pressure.Load() != 1 {
		t.Fatalf("SYN pressure reported %d times, want once", pressure.Load())
	}
	// 100 SYN-ACKs sent by the stack pay 100 SYNs back.
	for range 100 {
		var pkts stack.PacketBufferList
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buffer.Buffer{}})
		header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{SrcPort: 80, DstPort: 1000,
			DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn | header.TCPFlagAck})
		pkt.TransportProtocolNumber = header.TCPProtocolNumber
		header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize,
			TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: stackAddr, DstAddr: peerAddr})
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
		l.AddHeader(pkt)
		pkts.PushBack(pkt)
		if _, err := l.WritePackets(pkts); err != nil {
			t.Fatal(err)
		}
		pkts.DecRef()
		for { // the peer takes them, so the ring never fills
			if n, _ := p.Recv(func([]byte) {}); n == 0 || l.Stats().TxFrames == p.Stats().RxFrames {
				break
			}
		}
	}
	if got := send(5000, 110, header.TCPFlagSyn, nil); got != 100 {
		t.Fatalf("after 100 SYN-ACKs, %d of 110 fresh SYNs delivered, want 100", got)
	}
	// A RST for a listener is dropped, charged to nothing; payload for a
	// listener is charged to the control class, within its budget.
	if got := send(6000, 7, header.TCPFlagRst|header.TCPFlagAck, nil); got != 0 {
		t.Fatalf("%d of 7 RSTs for a listener delivered", got)
	}
	if got := send(6100, 20, header.TCPFlagAck|header.TCPFlagPsh, []byte("payload at a listener")); got != 20 {
		t.Fatalf("%d of 20 segments with payload for a listener delivered within the budget", got)
	}
	if _, ctl := l.adm.Owed(); ctl != 20 {
		t.Fatalf("control class owes %d, want the 20 payload segments", ctl)
	}
	// Established connections are never charged, even over the budget.
	listener.Store(false)
	if got := send(7000, 200, header.TCPFlagSyn, nil); got != 200 {
		t.Fatalf("%d of 200 segments for connections delivered", got)
	}
	if st := l.Stats(); st.RxDropsFloodSYN != over+10 || st.RxDropsFloodCtl != 7 {
		t.Fatalf("drops: SYN %d, control %d; want %d, 7", st.RxDropsFloodSYN, st.RxDropsFloodCtl, over+10)
	}
	// The stack closes its connection with port 8000: a FIN whose
	// sequence number is one short of zero, so that tcpFrame's segments
	// (acknowledgment number zero) acknowledge it. Once the connection
	// is gone, such a segment for the listener is dropped as stale,
	// charged to nothing.
	listener.Store(true)
	var pkts stack.PacketBufferList
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128, Payload: buffer.Buffer{}})
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{SrcPort: 80, DstPort: 8000,
		SeqNum: ^uint32(0), DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagFin | header.TCPFlagAck})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize,
		TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: stackAddr, DstAddr: peerAddr})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	l.AddHeader(pkt)
	pkts.PushBack(pkt)
	if _, err := l.WritePackets(pkts); err != nil {
		t.Fatal(err)
	}
	pkts.DecRef()
	_, ctlBefore := l.adm.Owed()
	k, err := p.Send(tcpFrame(mac, 8000, header.TCPFlagAck, nil))
	if err != nil || k != 1 {
		t.Fatalf("sending the stale ACK: %d, %v", k, err)
	}
	if !evchantest.Poll(20*time.Second, func() bool { return l.Stats().RxDropsStale == 1 }) {
		t.Fatalf("stale ACK at a listener: %d counted as stale", l.Stats().RxDropsStale)
	}
	if _, ctl := l.adm.Owed(); ctl != ctlBefore {
		t.Fatalf("a stale ACK charged the control class: owes %d, was %d", ctl, ctlBefore)
	}
}
