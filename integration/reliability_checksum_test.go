package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/integration/hostile"
)

// checksumCase is one shape of frame whose checksum the stack does not check
// on a TAP link with offloads on (the link advertises receive checksum
// offload, so gVisor skips it), and the link must: build returns instance i
// as the frames that carry one datagram, with a wrong checksum or a right
// one; the datagram's payload starts with marker(bad, i).
type checksumCase struct {
	name  string
	vnet  *hostile.VnetHdr // sent with this virtio-net header (nil: none)
	build func(i int, bad bool) [][]byte
	// dropped names the tap.Stats counter that must count every frame of
	// every bad instance.
	dropped string
	// delivered names a counter that must move by one per good instance
	// ("" for none).
	delivered string
}

// ckMarker is the start of instance i's payload, so that the sink can tell
// which datagrams arrived.
func ckMarker(name string, bad bool, i int) string {
	kind := "good"
	if bad {
		kind = "BAD"
	}
	return fmt.Sprintf("%s|%s|%03d|", kind, name, i)
}

// TestReliabilityUnverifiedChecksums injects, from the kernel side of the
// TAP with an AF_PACKET socket, 50 datagrams with a wrong checksum in each
// of the shapes whose checksum only the link can check: UDP over
// IPv4 fragments, over IPv6 fragments, behind an IPv6 routing header
// (type 253, segments left 0), and a NEEDS_CSUM frame whose IPv4 header
// checksum is wrong. None may reach the UDP socket they are aimed at, and
// the link must count every frame dropped. Then 50 datagrams of the same
// shape with right checksums, which must all arrive, so that the test fails
// if the link drops too much as well as too little.
func TestReliabilityUnverifiedChecksums(t *testing.T) {
	m := newMalTarget(t)
	n := m.n
	payload := func(name string, bad bool, i, size int) []byte {
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i*7 + j)
		}
		copy(p, ckMarker(name, bad, i))
		return p
	}
	// udp returns a datagram to the sink with a right checksum, or with
	// its checksum field changed (never to zero, "none" over IPv4).
	udp := func(v6 bool, name string, bad bool, i, size int) []byte {
		src, dst := n.Src4, n.Dst4
		if v6 {
			src, dst = n.Src6, n.Dst6
		}
		b := hostile.UDP{SrcPort: uint16(41000 + i), DstPort: malUDPPort, Payload: payload(name, bad, i, size)}.Marshal(src, dst)
		if bad {
			b[6] ^= 0x5a
			if b[6] == 0 && b[7] == 0 {
				b[7] = 1
			}
		}
		return b
	}
	const (
		v4frags = "UDP over IPv4 fragments"
		v6frags = "UDP over IPv6 fragments"
		routed  = "UDP behind an IPv6 routing header"
		partial = "NEEDS_CSUM, IPv4 header checksum wrong"
	)
	cases := []checksumCase{
		{name: v4frags, build: func(i int, bad bool) [][]byte {
			// 3000 bytes: three fragments at MTU 1500.
			return n.FragmentsV4(header.UDPProtocolNumber, uint16(5000+i), hostile.Split(udp(false, v4frags, bad, i, 3000), 1480))
		}, dropped: "tap.RxDropFragBadCsum", delivered: "tap.RxFragDatagrams"},
		{name: v6frags, build: func(i int, bad bool) [][]byte {
			return n.FragmentsV6(uint8(header.UDPProtocolNumber), uint32(5000+i), hostile.Split(udp(true, v6frags, bad, i, 3000), 1232))
		}, dropped: "tap.RxDropFragBadCsum", delivered: "tap.RxFragDatagrams"},
		{name: routed, build: func(i int, bad bool) [][]byte {
			ext := hostile.RoutingHeader(uint8(header.UDPProtocolNumber), 253, 0, n.Dst6)
			return [][]byte{n.FrameV6(uint8(header.IPv6RoutingExtHdrIdentifier), ext, udp(true, routed, bad, i, 200))}
		}, dropped: "tap.RxDropBadCsum", delivered: "tap.RxCsumVerified"},
		{name: partial, vnet: &hostile.VnetHdr{Flags: 1, CsumStart: 34, CsumOffset: 6}, build: func(i int, bad bool) [][]byte {
			f := n.FrameV4(header.UDPProtocolNumber, udp(false, partial, false, i, 200), hostile.IPv4{ID: uint16(6000 + i)})
			if bad {
				f = hostile.BadIPv4Checksum(f)
			}
			return [][]byte{f}
		}, dropped: "tap.RxDropBadCsum"},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			send := func(bad bool) int {
				before := m.e.counters()
				frames := 0
				for i := range malReps {
					for _, f := range c.build(i, bad) {
						var err error
						if c.vnet != nil {
							err = m.vnet.SendVnet(*c.vnet, f)
						} else {
							_, err = m.plain.Send(f)
						}
						if err != nil {
							t.Fatal(err)
						}
						frames++
					}
				}
				// Let the link read them all before the next batch, so
				// the TAP's queue (500 frames) never overflows.
				if !evchantest.Poll(10*time.Second, func() bool { return relDelta(before, m.e.counters(), "tap.RxFrames") >= uint64(frames) }) {
					t.Fatalf("%d of %d frames reached the link", relDelta(before, m.e.counters(), "tap.RxFrames"), frames)
				}
				return frames
			}

			// 1. Wrong checksums: every frame dropped by the link,
			// counted.
			before := m.e.counters()
			badFrames := send(true)
			if !evchantest.Poll(5*time.Second, func() bool { return relDelta(before, m.e.counters(), c.dropped) >= uint64(badFrames) }) {
				t.Errorf("%d frames of %d bad datagrams sent, %s moved by %d; all that moved: %s",
					badFrames, malReps, c.dropped, relDelta(before, m.e.counters(), c.dropped), movedCounters(before, m.e.counters()))
			}

			// 2. The same shapes with right checksums: all delivered.
			// Frames cross the link and the stack in order, so any bad
			// datagram that got through arrives before the good ones
			// are all in.
			mid := m.e.counters()
			send(false)
			good, bad := 0, 0
			timeout := time.After(10 * time.Second)
			for good < malReps {
				select {
				case d := <-m.arrived:
					switch s := string(d); {
					case strings.HasPrefix(s, "BAD|"+c.name+"|"):
						bad++
					case strings.HasPrefix(s, "good|"+c.name+"|"):
						good++
					default:
						t.Errorf("an unexpected datagram arrived: %d bytes, starting %.32q", len(d), d)
					}
				case <-timeout:
					t.Fatalf("%d of %d datagrams with right checksums arrived (%d with wrong ones); moved: %s",
						good, malReps, bad, movedCounters(mid, m.e.counters()))
				}
			}
			if bad != 0 {
				t.Errorf("%d datagrams with a wrong checksum reached the UDP socket", bad)
			}
			if c.delivered != "" {
				if d := relDelta(mid, m.e.counters(), c.delivered); d < malReps {
					t.Errorf("%s moved by %d for %d good datagrams", c.delivered, d, malReps)
				}
			}
			if d := relDelta(mid, m.e.counters(), c.dropped); d != 0 {
				t.Errorf("%s moved by %d for datagrams with right checksums", c.dropped, d)
			}
			t.Logf("%d bad datagrams (%d frames) sent, %d good received; moved: %s",
				malReps, badFrames, good, movedCounters(before, m.e.counters()))
		})
	}
	m.noDelivery(t)
}
