package stack_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// udpEndpoint opens a gVisor UDP endpoint on st bound to local, closed at
// the test's end.
func udpEndpoint(t *testing.T, st *stack.Stack, netProto tcpip.NetworkProtocolNumber, local netip.AddrPort) (tcpip.Endpoint, *waiter.Queue) {
	t.Helper()
	var wq waiter.Queue
	ep, terr := st.Netstack().NewEndpoint(udp.ProtocolNumber, netProto, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	t.Cleanup(ep.Close)
	if terr := ep.Bind(stack.FullAddress(local, 0)); terr != nil {
		t.Fatal(terr)
	}
	return ep, &wq
}

// udpPacket builds the packet the demuxer hands a UDP endpoint: IPv4, the
// UDP header parsed, payload after it. length 0 means the right one; a
// wrong checksum is set when badSum.
func udpPacket(from, to netip.AddrPort, payload []byte, length uint16, badSum bool) (*gstack.PacketBuffer, gstack.TransportEndpointID) {
	n := header.UDPMinimumSize + len(payload)
	if length == 0 {
		length = uint16(n)
	}
	b := make([]byte, n)
	u := header.UDP(b)
	u.Encode(&header.UDPFields{SrcPort: from.Port(), DstPort: to.Port(), Length: length})
	copy(b[header.UDPMinimumSize:], payload)
	src, dst := stack.TCPIPAddr(from.Addr()), stack.TCPIPAddr(to.Addr())
	sum := header.PseudoHeaderChecksum(udp.ProtocolNumber, src, dst, uint16(n))
	sum = checksum.Checksum(payload, sum)
	u.SetChecksum(^u.CalculateChecksum(sum))
	if badSum {
		u.SetChecksum(u.Checksum() ^ 0x0101)
	}
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	pkt.TransportHeader().Consume(header.UDPMinimumSize)
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	id := gstack.TransportEndpointID{LocalPort: to.Port(), LocalAddress: dst, RemotePort: from.Port(), RemoteAddress: src}
	return pkt, id
}

func deliver(r *stack.UDPReceiver, from, to netip.AddrPort, payload []byte, length uint16, badSum bool) {
	pkt, id := udpPacket(from, to, payload, length, badSum)
	r.HandlePacket(id, pkt)
	pkt.DecRef()
}

// TestUDPReceiverQueue: datagrams from several senders are queued in
// order with their senders, Pop takes them in batches bounded by count and
// bytes, bad datagrams and datagrams past the receive buffer are dropped
// and counted (by the receiver and in the stack's UDP statistics), and
// Close releases what is queued and takes no more.
func TestUDPReceiverQueue(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	local := netip.AddrPortFrom(stacktest.AddrB, 6001)
	ep, _ := udpEndpoint(t, p.B, ipv4.ProtocolNumber, local)
	notified := 0
	r, err := p.B.AttachUDPReceiver(ep, func() { notified++ })
	if err != nil {
		t.Fatal(err)
	}
	senders := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:7001"),
		netip.MustParseAddrPort("192.0.2.1:7002"),
		netip.MustParseAddrPort("192.0.2.3:7001"),
	}
	for i := range 6 {
		deliver(r, senders[i%3], local, []byte{byte(i), 1, 2, 3}, 0, false)
	}
	if notified != 1 {
		t.Fatalf("notify called %d times for 6 datagrams onto an empty queue, want 1", notified)
	}
	deliver(r, senders[0], local, []byte{1}, 3, false) // length below the header's
	deliver(r, senders[0], local, []byte{1}, 0, true)  // checksum wrong
	st := r.Stats()
	if st.Queued != 6 || st.QueuedBytes != 24 || st.Received != 6 || st.DropsBad != 2 || st.DropsFull != 0 || st.QueuedMem < 24 {
		t.Fatalf("stats %+v, want 6 queued (24 bytes), 6 received, 2 bad", st)
	}
	us := p.B.Netstack().Stats().UDP
	if us.MalformedPacketsReceived.Value() != 1 || us.ChecksumErrors.Value() != 1 {
		t.Fatalf("stack UDP stats: %d malformed, %d checksum errors; want 1 and 1", us.MalformedPacketsReceived.Value(), us.ChecksumErrors.Value())
	}

	batch := make([]stack.UDPDatagram, 4)
	if n := r.Pop(batch, 5); n != 2 {
		t.Fatalf("Pop with a 5-byte limit took %d datagrams of 4 bytes, want 2 (the second crosses it)", n)
	}
	if n := r.Pop(batch[2:], 1000); n != 2 {
		t.Fatalf("Pop into 2 slots took %d", n)
	}
	if n := r.Pop(batch[:0], 1000); n != 0 {
		t.Fatalf("Pop into no slots took %d", n)
	}
	for i, d := range batch {
		got := make([]byte, d.Payload.Size())
		d.Payload.ReadAt(got, 0)
		if !bytes.Equal(got, []byte{byte(i), 1, 2, 3}) || d.From != senders[i%3] {
			t.Fatalf("datagram %d: %v from %v, want %v from %v", i, got, d.From, []byte{byte(i), 1, 2, 3}, senders[i%3])
		}
		d.Payload.Release()
	}
	if st := r.Stats(); st.Queued != 2 || st.QueuedBytes != 8 {
		t.Fatalf("after taking 4 of 6: %+v", st)
	}

	// Fill the receive buffer: the datagram that finds it full is dropped.
	ep.SocketOptions().SetReceiveBufferSize(4096, false)
	limit := int(ep.SocketOptions().GetReceiveBufferSize())
	big := make([]byte, 1000)
	sent := 0
	for r.Stats().DropsFull == 0 && sent < 10*limit/len(big) {
		deliver(r, senders[1], local, big, 0, false)
		sent++
	}
	st = r.Stats()
	if st.DropsFull != 1 || st.QueuedBytes < limit || st.QueuedBytes > limit+len(big) {
		t.Fatalf("receive buffer %d: after %d datagrams of %d bytes, %+v", limit, sent, len(big), st)
	}
	if v := us.ReceiveBufferErrors.Value(); v != 1 {
		t.Fatalf("stack UDP ReceiveBufferErrors %d, want 1", v)
	}

	r.Close()
	r.Close()
	if st := r.Stats(); st.Queued != 0 || st.QueuedBytes != 0 || st.QueuedMem != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	deliver(r, senders[0], local, []byte{1}, 0, false)
	if st := r.Stats(); st.Queued != 0 || st.DropsFull != 2 {
		t.Fatalf("a datagram after Close: %+v, want dropped and counted", st)
	}
	if n := r.Pop(batch, 1000); n != 0 {
		t.Fatalf("Pop after Close took %d", n)
	}
}

// TestUDPReceiverDemux: once attached, the receiver gets the datagrams the
// stack receives for the endpoint's port, over IPv4 and IPv6 (a dual-stack
// endpoint), while the endpoint's own queue stays empty; an ICMP port
// unreachable for a connected endpoint reaches the endpoint as a
// connection-refused error; after Close the port is the endpoint's again
// and closes with it.
func TestUDPReceiverDemux(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	local := netip.AddrPortFrom(netip.Addr{}, 6002)
	ep, wq := udpEndpoint(t, p.B, ipv6.ProtocolNumber, local)
	ready := make(chan struct{}, 1)
	r, err := p.B.AttachUDPReceiver(ep, func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, to := range []netip.AddrPort{
		netip.AddrPortFrom(stacktest.AddrB, 6002),
		netip.AddrPortFrom(stacktest.Addr6B, 6002),
	} {
		proto := ipv4.ProtocolNumber
		if to.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		var cwq waiter.Queue
		cl, terr := p.A.Netstack().NewEndpoint(udp.ProtocolNumber, proto, &cwq)
		if terr != nil {
			t.Fatal(terr)
		}
		defer cl.Close()
		var rd bytes.Reader
		rd.Reset([]byte{byte(i)})
		fa := stack.FullAddress(to, 0)
		if _, terr := cl.Write(&rd, tcpip.WriteOptions{To: &fa}); terr != nil {
			t.Fatal(terr)
		}
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("datagram to %v: not received", to)
		}
		var d [1]stack.UDPDatagram
		if n := r.Pop(d[:], 100); n != 1 {
			t.Fatalf("datagram to %v: notified, Pop took %d", to, n)
		}
		la, _ := cl.GetLocalAddress()
		want := netip.AddrPortFrom(stacktest.AddrA, la.Port)
		if to.Addr().Is6() {
			want = netip.AddrPortFrom(stacktest.Addr6A, la.Port)
		}
		if d[0].Payload.Size() != 1 || d[0].From != want {
			t.Fatalf("datagram to %v: %d bytes from %v", to, d[0].Payload.Size(), d[0].From)
		}
		d[0].Payload.Release()
	}
	if ep.Readiness(waiter.ReadableEvents) != 0 {
		t.Fatal("the endpoint's own queue got datagrams the receiver took")
	}
	if st := r.Stats(); st.Received != 2 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
	_ = wq

	// Connected: a datagram to a port nobody has comes back as ICMP port
	// unreachable, which the receiver passes to the endpoint.
	conn, cwq := udpEndpoint(t, p.B, ipv4.ProtocolNumber, netip.AddrPortFrom(stacktest.AddrB, 6003))
	if terr := conn.Connect(stack.FullAddress(netip.AddrPortFrom(stacktest.AddrA, 6999), 0)); terr != nil {
		t.Fatal(terr)
	}
	cr, err := p.B.AttachUDPReceiver(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cr.Close()
	entry, errCh := waiter.NewChannelEntry(waiter.EventErr)
	cwq.EventRegister(&entry)
	defer cwq.EventUnregister(&entry)
	var rd bytes.Reader
	rd.Reset([]byte{1})
	if _, terr := conn.Write(&rd, tcpip.WriteOptions{}); terr != nil {
		t.Fatal(terr)
	}
	select {
	case <-errCh:
	case <-time.After(10 * time.Second):
		t.Fatal("no error event after a datagram to a closed port")
	}
	if _, ok := conn.LastError().(*tcpip.ErrConnectionRefused); !ok {
		t.Fatal("connected endpoint: no connection-refused error after ICMP port unreachable")
	}

	// Closed: the demuxer has the endpoint back, so a second receiver
	// can attach; a port not bound cannot be attached to.
	r.Close()
	r2, err := p.B.AttachUDPReceiver(ep, nil)
	if err != nil {
		t.Fatalf("attach after the first receiver closed: %v", err)
	}
	r2.Close()
	var uwq waiter.Queue
	unbound, terr := p.B.Netstack().NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &uwq)
	if terr != nil {
		t.Fatal(terr)
	}
	defer unbound.Close()
	if _, err := p.B.AttachUDPReceiver(unbound, nil); !errors.Is(err, stack.ErrUDPReceiver) {
		t.Fatalf("attach to an unbound endpoint: %v, want ErrUDPReceiver", err)
	}
}

// TestUDPReceiverAfterQueued: datagrams the endpoint queued before the
// receiver was attached stay in the endpoint's queue (its Read returns
// them); later ones go to the receiver.
func TestUDPReceiverAfterQueued(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	local := netip.AddrPortFrom(stacktest.AddrB, 6004)
	ep, wq := udpEndpoint(t, p.B, ipv4.ProtocolNumber, local)
	var cwq waiter.Queue
	cl, terr := p.A.Netstack().NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &cwq)
	if terr != nil {
		t.Fatal(terr)
	}
	defer cl.Close()
	fa := stack.FullAddress(local, 0)
	sendOne := func(b byte) {
		var rd bytes.Reader
		rd.Reset([]byte{b})
		if _, terr := cl.Write(&rd, tcpip.WriteOptions{To: &fa}); terr != nil {
			t.Fatal(terr)
		}
	}
	entry, readable := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	sendOne(1)
	select {
	case <-readable:
	case <-time.After(10 * time.Second):
		t.Fatal("first datagram not received by the endpoint")
	}
	wq.EventUnregister(&entry)
	ready := make(chan struct{}, 1)
	r, err := p.B.AttachUDPReceiver(ep, func() { ready <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sendOne(2)
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("second datagram not received by the receiver")
	}
	var w bytes.Buffer
	if _, terr := ep.Read(&w, tcpip.ReadOptions{}); terr != nil || !bytes.Equal(w.Bytes(), []byte{1}) {
		t.Fatalf("endpoint's Read: %v, %v; want the datagram queued before attach", w.Bytes(), terr)
	}
	if _, terr := ep.Read(&w, tcpip.ReadOptions{}); terr == nil {
		t.Fatal("endpoint's queue holds a datagram that came after attach")
	}
	var d [2]stack.UDPDatagram
	if n := r.Pop(d[:], 100); n != 1 {
		t.Fatalf("receiver holds %d datagrams, want 1", n)
	}
	got := make([]byte, 1)
	d[0].Payload.ReadAt(got, 0)
	d[0].Payload.Release()
	if got[0] != 2 {
		t.Fatalf("receiver's datagram %d, want 2", got[0])
	}
}

// TestUDPReceiverStackClose: closing the stack under an attached receiver
// (gVisor aborts every registered endpoint) aborts the endpoint and
// releases the receiver's queue; the receiver's own Close is then a no-op.
func TestUDPReceiverStackClose(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	local := netip.AddrPortFrom(stacktest.AddrB, 6005)
	ep, _ := udpEndpoint(t, p.B, ipv4.ProtocolNumber, local)
	r, err := p.B.AttachUDPReceiver(ep, nil)
	if err != nil {
		t.Fatal(err)
	}
	deliver(r, netip.MustParseAddrPort("192.0.2.1:7001"), local, []byte{1, 2}, 0, false)
	if st := r.Stats(); st.Queued != 1 {
		t.Fatalf("before the stack closes: %+v", st)
	}
	if err := p.B.Close(); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Queued != 0 || st.QueuedMem != 0 {
		t.Fatalf("after the stack closed: %+v, want the queue released", st)
	}
	r.Close()
}
