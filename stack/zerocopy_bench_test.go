package stack

import (
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// BenchmarkFlowTakeUDP measures one datagram's pass through a UDP flow's
// shadows — kept at arrival, taken oldest first at delivery — with depth
// datagrams queued ahead of it. It justified dropping taken shadows by
// reslicing the front instead of shifting the rest down, which cost
// O(depth) per datagram:
//
//	go test -run '^$' -bench FlowTakeUDP -count 5 ./stack/
func BenchmarkFlowTakeUDP(b *testing.B) {
	for _, depth := range []int{1, 64, 4096} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			st := &Stack{}
			f, err := st.RegisterFlow(header.UDPProtocolNumber, netip.MustParseAddrPort("192.0.2.2:9"), netip.AddrPort{}, 1<<30)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			// A ring of received views: each is shadowed on arrival and
			// taken when its turn comes, depth arrivals later.
			views := make([]*buffer.View, depth)
			for i := range views {
				views[i] = buffer.NewViewWithData(make([]byte, 64))
				f.add(views[i], 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				v := views[i%depth]
				got := f.Take(v.AsSlice())
				if got == nil {
					b.Fatal("shadow not found")
				}
				got.Release()
				f.add(v, 0)
			}
			b.StopTimer()
			for _, v := range views {
				v.Release()
			}
		})
	}
}
