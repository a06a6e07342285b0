package tap

import (
	"net"
	"testing"

	"github.com/zcnet/zcnet/tap/taptest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The receive and transmit paths allocate nothing per frame in steady
// state: views, packet buffers and scratch come from pools.

func TestRxNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	tcp4 := frameBuilder{proto: header.TCPProtocolNumber, payload: 20000}.build()
	udp4 := frameBuilder{proto: header.UDPProtocolNumber, payload: 1000}.build()
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"TSO super-frame, NEEDS_CSUM", withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 16}, tcp4)},
		{"UDP, verified in software", withVnet(vnetHdr{}, udp4)},
		{"USO, 4 datagrams", withVnet(vnetHdr{flags: vnetFNeedsCsum, gsoType: vnetGSOUDPL4, gsoSize: 250, csumStart: 34, csumOffset: 6}, udp4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := fuzzLink(t, &countingDispatcher{})
			var hooked int
			q.link.SetPayloadHook(func(_ []byte, v *buffer.View, _ int) { hooked += v.Size() })
			allocs := testing.AllocsPerRun(2000, func() { inject(q, tc.frame) })
			if allocs > 0.05 {
				t.Fatalf("%.2f allocations per frame", allocs)
			}
			if hooked == 0 || q.c.dropCsum.Load()+q.c.dropVnet.Load() != 0 {
				t.Fatalf("frames not delivered: hook saw %d bytes, %+v", hooked, q.link.Stats())
			}
		})
	}
}

func TestTxNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	fa, fb, err := taptest.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fb)
	link, err := OpenFD(Config{LinkAddress: net.HardwareAddr(stackMAC)}, fa)
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	pkt := outboundTCP(false, 0, 30000, stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448})
	defer pkt.DecRef()
	buf := make([]byte, 1<<17)
	// The list is built once: PushBack allocates its backing slice, and
	// that is the caller's cost, not the link's.
	var pkts stack.PacketBufferList
	pkts.PushBack(pkt)
	allocs := testing.AllocsPerRun(2000, func() {
		if n, err := link.WritePackets(pkts); n != 1 || err != nil {
			t.Fatalf("WritePackets: %d, %v", n, err)
		}
		if n, err := unix.Read(fb, buf); err != nil || n != VnetHdrLen+pkt.Size() {
			t.Fatalf("read %d bytes, %v; want %d", n, err, VnetHdrLen+pkt.Size())
		}
	})
	if allocs > 0.05 {
		t.Fatalf("%.2f allocations per packet", allocs)
	}
	if st := link.Stats(); st.TxGSOFrames == 0 || st.TxCopiedBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}
