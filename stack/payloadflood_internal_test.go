package stack

import (
	"bytes"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link/pair"
)

// segCapture keeps the TCP headers of the segments the stack sends to the
// raw side of a pair, dropping them when nobody reads.
type segCapture struct{ segs chan header.TCP }

func (c *segCapture) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	b := v.AsSlice() // the Ethernet frame
	if len(b) < header.EthernetMinimumSize || header.Ethernet(b).Type() != header.IPv4ProtocolNumber {
		return
	}
	b = b[header.EthernetMinimumSize:]
	if len(b) < header.IPv4MinimumSize+header.TCPMinimumSize || header.IPv4(b).Protocol() != uint8(header.TCPProtocolNumber) {
		return
	}
	th := append(header.TCP(nil), b[header.IPv4(b).HeaderLength():][:header.TCPMinimumSize]...)
	select {
	case c.segs <- th:
	default:
	}
}
func (*segCapture) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

// liveHeap collects and returns the bytes of live heap objects. Two
// collections: what gVisor's sync.Pools cache (the flood's freed chunks)
// survives one, in the pools' victim caches.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestPayloadFloodAtConnection floods an established connection's exact
// 4-tuple with payload, as admission (link.Admission) leaves it to the
// stack: segments in the receive window, far more than the receive buffer
// holds, while the application reads nothing; then segments outside the
// window. What bounds it is gVisor's receive buffer and window: the queue
// never holds more than the buffer, out-of-window segments are dropped,
// the heap grows by no more than the buffer's worth (gVisor's segment
// queue admits payload only while the endpoint's received memory is
// within its receive buffer), and the bytes the application then reads
// are the stream's first ones, intact.
func TestPayloadFloodAtConnection(t *testing.T) {
	st, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, b, err := pair.New(pair.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	nic, err := st.AddNIC(a, NICConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	peer, local := tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	st.s.AddStaticNeighbor(nic, ipv4.ProtocolNumber, peer, b.LinkAddress())
	capt := &segCapture{segs: make(chan header.TCP, 64)}
	b.Attach(capt)
	var wq waiter.Queue
	ln, terr := st.s.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	defer ln.Close()
	if terr := ln.Bind(tcpip.FullAddress{Addr: local, Port: 7}); terr != nil {
		t.Fatal(terr)
	}
	if terr := ln.Listen(8); terr != nil {
		t.Fatal(terr)
	}

	// frame is a TCP segment from peer:40000 to local:7.
	frame := func(seq, ack uint32, flags header.TCPFlags, payload []byte) *gstack.PacketBuffer {
		tl := header.TCPMinimumSize + len(payload)
		f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+tl)
		header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: b.LinkAddress(), DstAddr: a.LinkAddress(), Type: header.IPv4ProtocolNumber})
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + tl), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: peer, DstAddr: local})
		ip.SetChecksum(^ip.CalculateChecksum())
		th := header.TCP(ip.Payload())
		th.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 7, SeqNum: seq, AckNum: ack, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
		copy(th.Payload(), payload)
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, peer, local, uint16(tl))
		th.SetChecksum(^th.CalculateChecksum(checksum.Checksum(payload, xsum)))
		return gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
	}
	// send writes segments on the raw side, at most a batch at a time (the
	// pair's queue holds DefaultQueueLen), and waits until the stack has
	// taken each.
	sent := uint64(0)
	send := func(pkts ...*gstack.PacketBuffer) {
		t.Helper()
		for len(pkts) > 0 {
			n := min(len(pkts), 256)
			var l gstack.PacketBufferList
			for _, p := range pkts[:n] {
				l.PushBack(p)
			}
			if _, terr := b.WritePackets(l); terr != nil {
				t.Fatal(terr)
			}
			l.DecRef()
			sent += uint64(n)
			pkts = pkts[n:]
			if !evchantest.Poll(10*time.Second, func() bool { return a.Stats().RxFrames >= sent }) {
				t.Fatalf("the stack took %d of %d segments", a.Stats().RxFrames, sent)
			}
		}
		if d := b.Stats().TxDropsQueueFull; d != 0 {
			t.Fatalf("%d segments dropped by the pair", d)
		}
	}
	const iss = 1000
	send(frame(iss, 0, header.TCPFlagSyn, nil))
	var synack header.TCP
	select {
	case synack = <-capt.segs:
	case <-time.After(10 * time.Second):
		t.Fatal("no SYN-ACK")
	}
	if synack.Flags() != header.TCPFlagSyn|header.TCPFlagAck || synack.AckNumber() != iss+1 {
		t.Fatalf("answer to the SYN: flags %v ack %d", synack.Flags(), synack.AckNumber())
	}
	ack := synack.SequenceNumber() + 1
	send(frame(iss+1, ack, header.TCPFlagAck, nil))
	var conn tcpip.Endpoint
	if !evchantest.Poll(10*time.Second, func() bool {
		ep, _, terr := ln.Accept(nil)
		conn = ep
		return terr == nil
	}) {
		t.Fatal("connection not accepted")
	}
	defer conn.Close()
	rcvBuf := conn.SocketOptions().GetReceiveBufferSize()
	queued := func() int {
		n, terr := conn.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
		if terr != nil {
			t.Fatal(terr)
		}
		return n
	}
	base := liveHeap()

	// In-window payload, in order, far past the receive buffer: the
	// window closes and the rest is dropped.
	const segSize, segs = 1000, 16000
	stream := func(off int) byte { return byte(off % 251) }
	seg := make([]byte, segSize)
	var flood []*gstack.PacketBuffer
	for i := range segs {
		for j := range seg {
			seg[j] = stream(i*segSize + j)
		}
		flood = append(flood, frame(iss+1+uint32(i*segSize), ack, header.TCPFlagAck|header.TCPFlagPsh, seg))
	}
	send(flood...)
	held := queued()
	if held == 0 || int64(held) > rcvBuf {
		t.Fatalf("after %d bytes in the window: %d queued, receive buffer %d", segs*segSize, held, rcvBuf)
	}
	// Out-of-window payload: dropped, nothing more queued.
	flood = flood[:0]
	for i := range segs {
		flood = append(flood, frame(iss+1+1<<30+uint32(i*segSize), ack, header.TCPFlagAck, seg))
	}
	send(flood...)
	flood = nil
	if got := queued(); got != held {
		t.Fatalf("after out-of-window payload: %d queued, was %d", got, held)
	}
	// What the flood holds: the receive buffer's segments, each in views
	// that may be twice their payload, and nothing of the 16 MB dropped.
	if grown := int64(liveHeap()) - int64(base); grown > 2*rcvBuf+4<<20 {
		t.Fatalf("live heap grew %d bytes under a flood of %d bytes; receive buffer %d", grown, 2*segs*segSize, rcvBuf)
	}
	// The application reads the stream's first bytes, intact.
	var got bytes.Buffer
	if _, terr := conn.Read(&got, tcpip.ReadOptions{}); terr != nil {
		t.Fatal(terr)
	}
	if got.Len() != held {
		t.Fatalf("read %d bytes, %d were queued", got.Len(), held)
	}
	for i, c := range got.Bytes() {
		if c != stream(i) {
			t.Fatalf("byte %d of the stream is %d, want %d", i, c, stream(i))
		}
	}
}
