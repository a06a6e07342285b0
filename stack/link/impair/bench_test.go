package impair

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// discardLink is an inner link whose WritePackets takes every packet and
// keeps none, so a benchmark measures only what lies above it.
type discardLink struct{ *channel.Endpoint }

func (discardLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	return pkts.Len(), nil
}

// nopDispatcher takes delivered packets and keeps none.
type nopDispatcher struct{}

func (nopDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (nopDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

const benchBatch = 64

// benchPackets returns benchBatch IPv4/UDP packets of 1400-byte payload.
func benchPackets() stack.PacketBufferList {
	var l stack.PacketBufferList
	for i := range uint32(benchBatch) {
		l.PushBack(udp4Packet(i, 1400, 0))
	}
	return l
}

// BenchmarkWritePackets measures the outbound path per batch of 64
// packets: the bare inner link (baseline), the Endpoint with no impairment
// (the pass-through overhead), and the Endpoint with the integrity test's
// faults.
func BenchmarkWritePackets(b *testing.B) {
	cases := []struct {
		name string
		wrap bool
		im   Impairments
	}{
		{"bare", false, Impairments{}},
		{"passthrough", true, Impairments{}},
		{"issue9", true, hostileImpairments},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			inner := discardLink{channel.New(1, 1500, "")}
			var link stack.LinkEndpoint = inner
			if c.wrap {
				e, err := New(inner, Config{Seed: 1, Outbound: c.im})
				if err != nil {
					b.Fatal(err)
				}
				e.Attach(nopDispatcher{})
				defer func() { e.Close(); e.Wait() }()
				link = e
			}
			pkts := benchPackets()
			defer pkts.DecRef()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := link.WritePackets(pkts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/pkt")
		})
	}
}

// BenchmarkDeliver measures the inbound path per packet: the inner link
// delivering straight to the stack's dispatcher (baseline), and through an
// Endpoint with no impairment.
func BenchmarkDeliver(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "bare"
		if wrap {
			name = "passthrough"
		}
		b.Run(name, func(b *testing.B) {
			ch := channel.New(1, 1500, "")
			if wrap {
				e, err := New(ch, Config{Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				e.Attach(nopDispatcher{})
				defer func() { e.Close(); e.Wait() }()
			} else {
				ch.Attach(nopDispatcher{})
				defer ch.Close()
			}
			pkt := udp4Packet(1, 1400, 0)
			defer pkt.DecRef()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ch.InjectInbound(pkt.NetworkProtocolNumber, pkt)
			}
		})
	}
}
