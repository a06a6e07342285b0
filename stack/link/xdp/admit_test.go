//go:build linux

package xdp

import (
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link"
)

// tcpFrame builds an Ethernet/IPv4/TCP frame from 192.0.2.1:port to
// ourAddr:80 with the given flags and no payload.
func tcpFrame(port uint16, flags header.TCPFlags) []byte {
	n := header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
	b := make([]byte, n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: ourMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	src, dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4(ourAddr.As4())
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(n - header.EthernetMinimumSize), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(ip.Payload())
	tcp.Encode(&header.TCPFields{SrcPort: port, DstPort: 80, SeqNum: uint32(port) * 7, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	tcp.SetChecksum(^tcp.CalculateChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, header.TCPMinimumSize)))
	return b
}

// TestAdmissionOverXDP checks that the AF_XDP link applies admission
// (link.Admission): a SYN flood at a listener gets the budget delivered
// and the rest dropped and counted, every frame back on the fill ring; a
// RST for a listener is dropped; segments for connections pass.
func TestAdmissionOverXDP(t *testing.T) {
	e := newFakeEnv(t, 64, 32)
	e.l.adm.DisableLeak()
	var listener atomic.Bool
	listener.Store(true)
	e.l.SetConnLookup(func([]byte) link.ConnKind {
		if listener.Load() {
			return link.ConnListener
		}
		return link.ConnEstablished
	})
	ended := func() int {
		st := e.l.Stats()
		return e.rec.count() + int(st.RxDropFloodSYN+st.RxDropFloodCtl)
	}
	send := func(from, n int, flags header.TCPFlags) int {
		t.Helper()
		before, delivered := ended(), e.rec.count()
		for i := range n {
			// The link returns each frame to the fill ring after the
			// pass that took it: wait for one.
			evchantest.Eventually(t, "a fill ring entry", func() bool { return e.fm.prod.Load() != e.fillSeen })
			e.deliverFrame(t, tcpFrame(uint16(from+i), flags))
		}
		evchantest.Eventually(t, "every frame delivered or dropped", func() bool { return ended() == before+n })
		return e.rec.count() - delivered
	}
	const over = 100
	if got := send(1000, link.AdmitLimit+over, header.TCPFlagSyn); got != link.AdmitLimit {
		t.Fatalf("SYN flood: %d delivered, want the budget, %d", got, link.AdmitLimit)
	}
	if got := send(4000, 3, header.TCPFlagRst); got != 0 {
		t.Fatalf("%d of 3 RSTs for a listener delivered", got)
	}
	listener.Store(false)
	if got := send(5000, 50, header.TCPFlagAck); got != 50 {
		t.Fatalf("%d of 50 ACKs for connections delivered", got)
	}
	st := e.l.Stats()
	if st.RxDropFloodSYN != over || st.RxDropFloodCtl != 3 {
		t.Fatalf("drops: SYN %d, control %d; want %d, 3", st.RxDropFloodSYN, st.RxDropFloodCtl, over)
	}
	// A FIN the stack sent to port 6000 (told to the admission as the
	// link's transmit does), sequence number one short of zero so that
	// tcpFrame's ACK (acknowledgment number zero) acknowledges it: once
	// the connection is gone, that ACK for the listener is dropped and
	// counted as stale.
	listener.Store(true)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{ReserveHeaderBytes: 128})
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{SrcPort: 80, DstPort: 6000,
		SeqNum: ^uint32(0), DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagFin | header.TCPFlagAck})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{TotalLength: header.IPv4MinimumSize + header.TCPMinimumSize,
		TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: tcpip.AddrFrom4(ourAddr.As4()),
		DstAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1})})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	e.l.adm.NoteTx(pkt)
	pkt.DecRef()
	evchantest.Eventually(t, "a fill ring entry", func() bool { return e.fm.prod.Load() != e.fillSeen })
	delivered := e.rec.count()
	e.deliverFrame(t, tcpFrame(6000, header.TCPFlagAck))
	evchantest.Eventually(t, "the stale ACK dropped", func() bool { return e.l.Stats().RxDropStale == 1 })
	if e.rec.count() != delivered {
		t.Fatal("a stale ACK reached the stack")
	}
	e.l.Close()
	e.l.Wait()
	if st := e.l.Stats(); st.FramesRxKernel+st.FramesRxHeld != 32 {
		t.Fatalf("receive frames lost: %+v", st)
	}
}
