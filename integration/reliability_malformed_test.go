package integration

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/integration/hostile"
)

// malformedCase is one kind of bad frame: build returns instance i of it
// (one frame, or the fragments of one datagram), and counters names the
// stack or TAP counters ("tap.<Stats field>") that must account for each
// instance: their deltas must add up to at least one per instance.
type malformedCase struct {
	name     string
	vnet     *hostile.VnetHdr // send with this virtio-net header (nil: none)
	build    func(i int) [][]byte
	counters []string
}

// Ports on the stack: a listener and a UDP sink that every malformed
// datagram is aimed at (nothing may ever arrive there), and a closed port.
const (
	malTCPPort    = 7300
	malUDPPort    = 7301
	malClosedPort = 7399
	malReps       = 50
)

// malTarget is a stack on a TAP with what the malformed-frame tests need:
// injectors on the kernel side, the addresses for building frames, a
// hash server on malTCPPort, and a UDP sink on malUDPPort whose arrivals
// are kept in order.
type malTarget struct {
	e           *relEnv
	plain, vnet *hostile.Injector
	n           hostile.Net
	arrived     chan []byte
}

func newMalTarget(t *testing.T) *malTarget {
	t.Helper()
	need(t, "ping")
	m := &malTarget{e: newRelEnv(t, relConfig{}), arrived: make(chan []byte, 4096)}
	e := m.e
	e.hashServer(t, malTCPPort)
	// The zero address (not "::", see TestReliabilityListenUnspecified):
	// every address, IPv4 and IPv6.
	sink, err := e.api.ListenUDP(netip.AddrPortFrom(netip.Addr{}, malUDPPort))
	if err != nil {
		t.Fatal(err)
	}
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		for {
			b, err := sink.Recv(context.Background())
			if err != nil {
				return // closed
			}
			select {
			case m.arrived <- append([]byte(nil), b.Bytes()...):
			default:
			}
			b.Release()
		}
	}()
	t.Cleanup(func() { sink.Close(); <-sinkDone })

	var kernelMAC net.HardwareAddr
	if err := e.ns.Do(func() (err error) {
		ifc, err := net.InterfaceByName(e.dev)
		if err != nil {
			return err
		}
		kernelMAC = ifc.HardwareAddr
		if m.plain, err = hostile.NewInjector(e.dev, false); err != nil {
			return err
		}
		m.vnet, err = hostile.NewInjector(e.dev, true)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.plain.Close(); m.vnet.Close() })
	m.n = hostile.Net{
		SrcMAC: tcpip.LinkAddress(kernelMAC), DstMAC: e.link.LinkAddress(),
		Src4: netip.MustParseAddr(peer4), Dst4: netip.MustParseAddr(stack4),
		Src6: netip.MustParseAddr(peer6), Dst6: netip.MustParseAddr(stack6),
	}
	// The kernel must know the stack's MAC before the stack answers (RSTs,
	// ICMP errors), and the stack the kernel's: one ping does both.
	e.ping(t, 1)
	return m
}

// run sends malReps instances of each case, each case a subtest, and
// checks that its counters account for every instance.
func (m *malTarget) run(t *testing.T, cases []malformedCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := m.e.counters()
			for i := range malReps {
				for _, f := range c.build(i) {
					var err error
					if c.vnet != nil {
						err = m.vnet.SendVnet(*c.vnet, f)
					} else {
						_, err = m.plain.Send(f)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			accounted := func() uint64 { return relDelta(before, m.e.counters(), c.counters...) }
			if !evchantest.Poll(5*time.Second, func() bool { return accounted() >= malReps }) {
				t.Errorf("%d instances sent, counters %v moved by %d; all that moved: %s",
					malReps, c.counters, accounted(), movedCounters(before, m.e.counters()))
				return
			}
			t.Logf("%d sent, %s +%d", malReps, strings.Join(c.counters, "+"), accounted())
		})
	}
}

// noDelivery sends a valid datagram to the sink from the kernel and fails
// t for every datagram the sink received before it: frames cross the TAP
// and the stack in order, so those came from malformed frames.
func (m *malTarget) noDelivery(t *testing.T) {
	t.Helper()
	kc := m.e.kernelUDP(t, "udp4", peer4+":0")
	if _, err := kc.WriteTo([]byte("valid"), &net.UDPAddr{IP: net.ParseIP(stack4), Port: malUDPPort}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	bad := 0
	for {
		select {
		case d := <-m.arrived:
			if string(d) == "valid" {
				if bad > 0 {
					t.Errorf("%d malformed datagrams reached the UDP socket", bad)
				}
				return
			}
			if bad == 0 {
				t.Errorf("a malformed datagram reached the UDP socket: %d bytes, starting %.32q", len(d), d)
			}
			bad++
		case <-timeout:
			t.Fatalf("the UDP socket did not receive a valid datagram (after %d malformed ones)", bad)
		}
	}
}

// TestReliabilityMalformedFrames writes malformed frames into the stack's
// TAP from the kernel side with an AF_PACKET socket (package hostile), 50
// instances of each kind: bad lengths, bad checksums, impossible TCP flag
// combinations, overlapping and oversized fragments, malformed options,
// unknown protocols, then 2000 frames of noise. Each kind must be
// accounted for by the counters it names, no malformed datagram may reach
// the UDP socket it is aimed at, no connection may open, and afterwards
// the stack must answer pings and carry 16 MiB intact, its heap within the
// attack bounds.
func TestReliabilityMalformedFrames(t *testing.T) {
	m := newMalTarget(t)
	e, n := m.e, m.n
	base := relHeapInuse()
	start := e.counters()
	stopHeap := make(chan struct{})
	peakc := heapPeak(stopHeap)

	m.run(t, malformedCases(n))

	// Noise: random bytes behind an Ethernet header, and valid TCP frames
	// to a closed port with random bytes flipped.
	r := rand.New(rand.NewPCG(9, 9))
	before := e.counters()
	const noise = 2000
	for i := range noise {
		var f []byte
		if i%2 == 0 {
			f = n.FrameV4(header.TCPProtocolNumber, hostile.TCP{SrcPort: 41000, DstPort: malClosedPort, Flags: header.TCPFlagAck, Seq: r.Uint32(), Payload: make([]byte, r.IntN(200))}.Marshal(n.Src4, n.Dst4), hostile.IPv4{ID: uint16(i)})
			for range 1 + r.IntN(4) {
				j := header.EthernetMinimumSize + r.IntN(len(f)-header.EthernetMinimumSize)
				f[j] ^= byte(1 + r.IntN(255))
			}
		} else {
			proto := []tcpip.NetworkProtocolNumber{header.IPv4ProtocolNumber, header.IPv6ProtocolNumber}[r.IntN(2)]
			f = make([]byte, header.EthernetMinimumSize+r.IntN(1500))
			header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: n.SrcMAC, DstAddr: n.DstMAC, Type: proto})
			for j := header.EthernetMinimumSize; j < len(f); j++ {
				f[j] = byte(r.Uint32())
			}
			if len(f) > header.EthernetMinimumSize { // the version nibble agrees with the type
				version := byte(0x40)
				if proto == header.IPv6ProtocolNumber {
					version = 0x60
				}
				f[header.EthernetMinimumSize] = f[header.EthernetMinimumSize]&0x0f | version
			}
		}
		if _, err := m.plain.Send(f); err != nil {
			t.Fatal(err)
		}
		// In batches of 100, so that the TAP's queue (500 frames) never
		// overflows while a slow reader (the race detector) catches up.
		if i%100 == 99 {
			evchantest.Poll(5*time.Second, func() bool { return relDelta(before, e.counters(), "tap.RxFrames") > uint64(i) })
		}
	}
	if !evchantest.Poll(10*time.Second, func() bool { return relDelta(before, e.counters(), "tap.RxFrames") >= noise }) {
		t.Errorf("noise: %d of %d frames reached the link", relDelta(before, e.counters(), "tap.RxFrames"), noise)
	}
	t.Logf("noise: %d frames; moved: %s", noise, movedCounters(before, e.counters()))

	close(stopHeap)
	peak := <-peakc
	if d := relDelta(start, e.counters(), "TCP.PassiveConnectionOpenings", "TCP.CurrentEstablished"); d != 0 {
		t.Errorf("malformed frames opened %d connections", d)
	}
	m.noDelivery(t)
	checkHeap(t, base, peak)

	// Still up.
	e.ping(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if err := e.transfer(ctx, malTCPPort, newRelStream(6, relTransferSize(16<<20))); err != nil {
		t.Fatalf("after the malformed frames: %v", err)
	}
}

// movedCounters lists the counters that changed, for failure messages.
func movedCounters(before, after map[string]uint64) string {
	var out []string
	for k, v := range after {
		if v != before[k] && !strings.Contains(k, "Bytes") {
			out = append(out, k+" +"+strconv.FormatUint(v-before[k], 10))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// malformedCases is the catalogue. Counters are the ones that account for
// each kind on a TAP link with offloads on: frames without a virtio-net
// checksum flag have their IPv4, TCP and UDP checksums verified by the link
// (tap.RxDropBadCsum); everything else is gVisor's to count.
func malformedCases(n hostile.Net) []malformedCase {
	src4, dst4, src6, dst6 := n.Src4, n.Dst4, n.Src6, n.Dst6
	// Each flag combination gets source ports of its own: a SYN+FIN case
	// leaves half-open connections behind, and a later case on the same
	// four-tuples would meet them instead of the listener (a SYN+RST then
	// resets one rather than being dropped, and the count comes up short).
	syn := func(i int, flags header.TCPFlags, port uint16) hostile.TCP {
		return hostile.TCP{SrcPort: uint16(40000 + int(flags)*64 + i), DstPort: port, Seq: uint32(i) * 7919, Flags: flags, Window: 1000}
	}
	tcp4 := func(s hostile.TCP) []byte {
		return n.FrameV4(header.TCPProtocolNumber, s.Marshal(src4, dst4), hostile.IPv4{})
	}
	tcp6 := func(s hostile.TCP) []byte {
		return n.FrameV6(uint8(header.TCPProtocolNumber), nil, s.Marshal(src6, dst6))
	}
	udp := func(i, size int) hostile.UDP {
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i + j)
		}
		return hostile.UDP{SrcPort: uint16(40000 + i), DstPort: malUDPPort, Payload: p}
	}
	udp4 := func(i int) []byte {
		return n.FrameV4(header.UDPProtocolNumber, udp(i, 32).Marshal(src4, dst4), hostile.IPv4{ID: uint16(i)})
	}
	udp6 := func(i int) []byte {
		return n.FrameV6(uint8(header.UDPProtocolNumber), nil, udp(i, 32).Marshal(src6, dst6))
	}
	one := func(f []byte) [][]byte { return [][]byte{f} }
	// overlap returns a datagram's pieces where the second overwrites part
	// of the first with different bytes (RFC 5722 says: drop it all).
	overlap := func(i int) (l4 []byte, pieces []hostile.Piece) {
		l4 = udp(i, 40).Marshal(src4, dst4)
		other := append([]byte(nil), l4[8:32]...)
		for j := range other {
			other[j] ^= 0xff
		}
		return l4, []hostile.Piece{{Off: 0, Data: l4[:24], More: true}, {Off: 8, Data: other, More: true}, {Off: 32, Data: l4[32:]}}
	}
	malformed := []string{"IP.MalformedPacketsReceived"}
	badCsum := []string{"tap.RxDropBadCsum"}
	// The TAP link checks fragment sets itself (tap/frag.go) and drops
	// overlapping or inconsistent ones before gVisor sees them.
	fragBad := []string{"IP.MalformedFragmentsReceived", "IP.MalformedPacketsReceived", "tap.RxDropFragInvalid"}

	return []malformedCase{
		// Bad checksums.
		{"IPv4 header checksum wrong", nil, func(i int) [][]byte { return one(hostile.BadIPv4Checksum(udp4(i))) }, badCsum},
		{"TCP checksum wrong (IPv4)", nil, func(i int) [][]byte { return one(hostile.BadL4Checksum(tcp4(syn(i, header.TCPFlagSyn, malTCPPort)))) }, badCsum},
		{"TCP checksum wrong (IPv6)", nil, func(i int) [][]byte { return one(hostile.BadL4Checksum(tcp6(syn(i, header.TCPFlagSyn, malTCPPort)))) }, badCsum},
		{"UDP checksum wrong (IPv4)", nil, func(i int) [][]byte { return one(hostile.BadL4Checksum(udp4(i))) }, badCsum},
		{"UDP checksum wrong (IPv6)", nil, func(i int) [][]byte { return one(hostile.BadL4Checksum(udp6(i))) }, badCsum},
		{"ICMPv4 checksum wrong", nil, func(i int) [][]byte {
			return one(hostile.BadL4Checksum(n.FrameV4(header.ICMPv4ProtocolNumber, hostile.EchoV4(1, uint16(i), []byte("x")), hostile.IPv4{})))
		}, []string{"ICMP.V4.PacketsReceived.Invalid"}},
		{"ICMPv6 checksum wrong", nil, func(i int) [][]byte {
			return one(hostile.BadL4Checksum(n.FrameV6(uint8(header.ICMPv6ProtocolNumber), nil, hostile.EchoV6(src6, dst6, 1, uint16(i), []byte("x")))))
		}, []string{"ICMP.V6.PacketsReceived.Invalid"}},

		// Bad lengths.
		{"IPv4 total length past the frame", nil, func(i int) [][]byte { f := udp4(i); return one(hostile.SetIPv4TotalLength(f, uint16(len(f)+100))) }, malformed},
		{"IPv4 total length inside the header", nil, func(i int) [][]byte { return one(hostile.SetIPv4TotalLength(udp4(i), 10)) }, malformed},
		{"IPv4 header length below 20", nil, func(i int) [][]byte { return one(hostile.SetIPv4HeaderLength(udp4(i), 4)) }, malformed},
		{"IPv4 header length past total length", nil, func(i int) [][]byte {
			f := n.FrameV4(header.UDPProtocolNumber, udp(i, 0).Marshal(src4, dst4), hostile.IPv4{})
			return one(hostile.SetIPv4HeaderLength(f, 15))
		}, malformed},
		{"IPv4 packet cut inside its header", nil, func(i int) [][]byte { return one(hostile.Truncate(udp4(i), header.EthernetMinimumSize+12)) }, malformed},
		{"IPv6 payload length past the frame", nil, func(i int) [][]byte { return one(hostile.SetIPv6PayloadLength(udp6(i), 500)) }, malformed},
		{"TCP data offset below 20", nil, func(i int) [][]byte {
			return one(hostile.SetTCPDataOffset(tcp4(syn(i, header.TCPFlagSyn, malTCPPort)), 4))
		}, []string{"NICs.MalformedL4RcvdPackets", "TCP.InvalidSegmentsReceived"}},
		{"TCP data offset past the segment", nil, func(i int) [][]byte {
			return one(hostile.SetTCPDataOffset(tcp4(syn(i, header.TCPFlagSyn, malTCPPort)), 15))
		}, []string{"NICs.MalformedL4RcvdPackets", "TCP.InvalidSegmentsReceived"}},
		{"UDP length past the IP payload", nil, func(i int) [][]byte { return one(hostile.SetUDPLength(udp4(i), 200)) }, []string{"UDP.MalformedPacketsReceived", "NICs.MalformedL4RcvdPackets"}},
		{"UDP length below 8", nil, func(i int) [][]byte { return one(hostile.SetUDPLength(udp4(i), 4)) }, []string{"UDP.MalformedPacketsReceived", "NICs.MalformedL4RcvdPackets"}},

		// Bad TCP flags.
		// gVisor answers SYN+FIN at a listener like a SYN (Linux drops
		// it); the kernel resets the SYN-ACK, and no connection opens
		// (checked at the end of the test).
		{"TCP SYN+FIN to a listener", nil, func(i int) [][]byte { return one(tcp4(syn(i, header.TCPFlagSyn|header.TCPFlagFin, malTCPPort))) }, []string{"TCP.SegmentsSent"}},
		// A listener drops segments it cannot use, counted stack-wide.
		{"TCP SYN+RST to a listener", nil, func(i int) [][]byte { return one(tcp4(syn(i, header.TCPFlagSyn|header.TCPFlagRst, malTCPPort))) }, []string{"DroppedPackets"}},
		{"TCP without flags to a listener", nil, func(i int) [][]byte { return one(tcp4(syn(i, 0, malTCPPort))) }, []string{"DroppedPackets"}},
		{"TCP FIN+PSH+URG to a listener", nil, func(i int) [][]byte {
			return one(tcp4(syn(i, header.TCPFlagFin|header.TCPFlagPsh|header.TCPFlagUrg, malTCPPort)))
		}, []string{"DroppedPackets"}},
		{"TCP FIN+PSH+URG to a closed port", nil, func(i int) [][]byte {
			return one(tcp4(syn(i, header.TCPFlagFin|header.TCPFlagPsh|header.TCPFlagUrg, malClosedPort)))
		}, []string{"TCP.ResetsSent"}},
		{"TCP ACK to a listener, no connection", nil, func(i int) [][]byte {
			s := syn(i, header.TCPFlagAck, malTCPPort)
			s.Ack = 0xdead0000 + uint32(i)
			return one(tcp4(s))
		}, []string{"TCP.ResetsSent", "TCP.ListenOverflowInvalidSynCookieRcvd"}},

		// Bad fragments.
		{"IPv4 fragments overlapping, different bytes", nil, func(i int) [][]byte {
			_, p := overlap(i)
			return n.FragmentsV4(header.UDPProtocolNumber, uint16(1000+i), p)
		}, fragBad},
		{"IPv6 fragments overlapping, different bytes", nil, func(i int) [][]byte {
			l4 := udp(i, 40).Marshal(src6, dst6)
			other := append([]byte(nil), l4[8:32]...)
			for j := range other {
				other[j] ^= 0xff
			}
			return n.FragmentsV6(uint8(header.UDPProtocolNumber), uint32(1000+i), []hostile.Piece{{Off: 0, Data: l4[:24], More: true}, {Off: 8, Data: other, More: true}, {Off: 32, Data: l4[32:]}})
		}, fragBad},
		{"IPv4 fragment ending past 65535", nil, func(i int) [][]byte {
			return n.FragmentsV4(header.UDPProtocolNumber, uint16(2000+i), []hostile.Piece{{Off: 65528, Data: make([]byte, 64)}})
		}, fragBad},
		{"IPv4 fragment with MF, length not a multiple of 8", nil, func(i int) [][]byte {
			return n.FragmentsV4(header.UDPProtocolNumber, uint16(3000+i), []hostile.Piece{{Off: 0, Data: make([]byte, 13), More: true}})
		}, fragBad},
		{"IPv6 fragment ending past 65535", nil, func(i int) [][]byte {
			return n.FragmentsV6(uint8(header.UDPProtocolNumber), uint32(2000+i), []hostile.Piece{{Off: 65528, Data: make([]byte, 64)}})
		}, fragBad},

		// Options and protocols.
		{"IPv4 option of length 0", nil, func(i int) [][]byte {
			return one(n.FrameV4(header.UDPProtocolNumber, udp(i, 8).Marshal(src4, dst4), hostile.IPv4{Options: []byte{7, 0, 0, 0}}))
		}, []string{"IP.MalformedPacketsReceived", "ICMP.V4.PacketsSent.ICMPv4PacketStats.ParamProblem"}},
		{"TCP option of length 0 in a SYN", nil, func(i int) [][]byte {
			s := syn(i, header.TCPFlagSyn, malTCPPort)
			s.Options = []byte{2, 0, 0, 0}
			return one(tcp4(s))
		}, []string{"TCP.InvalidSegmentsReceived", "TCP.ResetsSent", "TCP.ValidSegmentsReceived"}},
		{"IPv4 to an address not ours", nil, func(i int) [][]byte {
			m := n
			m.Dst4 = netip.MustParseAddr("192.0.2.99")
			return one(m.FrameV4(header.UDPProtocolNumber, udp(i, 8).Marshal(src4, m.Dst4), hostile.IPv4{}))
		}, []string{"IP.InvalidDestinationAddressesReceived"}},
		{"unknown Ethernet type", nil, func(i int) [][]byte {
			f := udp4(i)
			binary.BigEndian.PutUint16(f[12:], 0x88b5)
			return one(f)
		}, []string{"NICs.UnknownL3ProtocolRcvdPackets"}},
		{"unknown IP protocol", nil, func(i int) [][]byte {
			return one(n.FrameV4(253, []byte("experimental payload"), hostile.IPv4{}))
		}, []string{"ICMP.V4.PacketsSent.ICMPv4PacketStats.DstUnreachable", "ICMP.V4.PacketsSent.RateLimited"}}, // protocol unreachable, or its rate limit
	}
}
