package pair

import (
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/linktest"
)

func TestNewPairValidates(t *testing.T) {
	for _, cfg := range []Config{
		{MTU: 10}, {MTU: 70000}, {QueueLen: -1}, {AddrA: "\x01\x00\x00\x00\x00\x01"}, {AddrB: "short"},
	} {
		if _, _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	a, b, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.MTU() != DefaultMTU || a.LinkAddress() == b.LinkAddress() || !header.IsValidUnicastEthernetAddress(a.LinkAddress()) {
		t.Fatalf("defaults: mtu %d, macs %v %v", a.MTU(), a.LinkAddress(), b.LinkAddress())
	}
}

// recorder is a NetworkDispatcher that keeps what it is given.
type recorder struct {
	got chan []byte
}

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	r.got <- pkt.ToView().AsSlice()
}
func (*recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// packet builds an outbound packet as a stack would hand it to the link.
func pairTestPacket(t *testing.T, e *Endpoint, dst tcpip.LinkAddress, frame []byte) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.EthernetMinimumSize,
		Payload:            buffer.MakeWithData(frame[header.EthernetMinimumSize:]),
	})
	pkt.NetworkProtocolNumber = header.Ethernet(frame).Type()
	pkt.EgressRoute.RemoteLinkAddress = dst
	e.AddHeader(pkt)
	return pkt
}

func TestPairCarriesFramesAndCounts(t *testing.T) {
	a, b, err := New(Config{QueueLen: 2})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{got: make(chan []byte, 16)}
	var hooked int
	b.SetPayloadHook(func(hdr []byte, v *buffer.View, off int) { hooked += v.Size() + off })
	frame := linktest.Frame(false, header.TCPProtocolNumber, 0, 300)

	// Nothing attached on b yet: its queue (2 frames) fills and the third
	// frame is dropped and counted.
	for i := 0; i < 3; i++ {
		var l stack.PacketBufferList
		l.PushBack(pairTestPacket(t, a, b.LinkAddress(), frame))
		if n, err := a.WritePackets(l); n != 1 || err != nil {
			t.Fatalf("WritePackets = %d, %v", n, err)
		}
		l.DecRef()
	}
	if s := a.Stats(); s.TxFrames != 2 || s.TxDropsQueueFull != 1 {
		t.Fatalf("sender stats %+v", s)
	}
	b.Attach(rec)
	for i := 0; i < 2; i++ {
		got := <-rec.got
		// The delivered packet still holds the Ethernet header the link parsed.
		if len(got) != len(frame) || string(got[14:]) != string(frame[14:]) || header.Ethernet(got).SourceAddress() != a.LinkAddress() {
			t.Fatalf("delivered %d bytes, differing from the sent packet", len(got))
		}
	}
	// The receiver counts a frame once its stack is done with it, after
	// the delivery the recorder saw.
	evchantest.Eventually(t, "the receiver to count both frames", func() bool { return b.Stats().RxFrames == 2 })
	if s := b.Stats(); s.RxFrames != 2 || s.RxHeaderBytes != 2*54 {
		t.Fatalf("receiver stats %+v", s)
	}
	if hooked != 2*300 {
		t.Fatalf("payload hook saw %d bytes, want %d", hooked, 600)
	}
	sa, sb := a.Stats(), b.Stats()
	if ta, tb := a.Totals(), b.Totals(); ta != (link.Totals{TxFrames: sa.TxFrames, TxBytes: sa.TxBytes}) ||
		tb != (link.Totals{RxFrames: sb.RxFrames, RxBytes: sb.RxBytes}) || tb.RxBytes == 0 {
		t.Fatalf("totals %+v and %+v, stats %+v and %+v", ta, tb, sa, sb)
	}
	// A frame for another MAC is dropped by the receiver and counted.
	var l stack.PacketBufferList
	l.PushBack(pairTestPacket(t, a, "\x02\x00\x00\x00\x00\x99", frame))
	a.WritePackets(l)
	l.DecRef()
	a.Close()
	b.Close() // idempotent, from either side
	a.Wait()
	if s := b.Stats(); s.RxFrames+s.RxDropsBadFrame > 3 {
		t.Fatalf("receiver stats after close %+v", s)
	}
	// After Close, writes fail and are counted.
	l = stack.PacketBufferList{}
	l.PushBack(pairTestPacket(t, a, b.LinkAddress(), frame))
	if _, err := a.WritePackets(l); err == nil {
		t.Fatal("WritePackets after Close succeeded")
	}
	l.DecRef()
	if s := a.Stats(); s.TxDropsClosed != 1 {
		t.Fatalf("TxDropsClosed = %d, want 1", s.TxDropsClosed)
	}
}
