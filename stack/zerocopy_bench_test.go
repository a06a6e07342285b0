package stack

import (
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
)

// BenchmarkFlowTakeUDP measures one datagram's pass through a UDP flow's
// shadows — kept at arrival, taken oldest first at delivery — with depth
// datagrams queued ahead of it. It justified dropping taken shadows by
// reslicing the front instead of shifting the rest down, which cost
// O(depth) per datagram, and then moving the queue back down into its
// array when it reaches the end (pushLocked) instead of letting append
// reallocate it, which had allocated on every pass at depth 64 and more.
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

// TestFlowShadowArrayReused checks that a UDP flow whose queue keeps a
// steady depth (shadows added at the back, taken at the front) reuses one
// array: it neither allocates per datagram nor grows past twice the depth.
func TestFlowShadowArrayReused(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	const depth = 64
	st := &Stack{}
	f, err := st.RegisterFlow(header.UDPProtocolNumber, netip.MustParseAddrPort("192.0.2.2:9"), netip.AddrPort{}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	views := make([]*buffer.View, depth)
	for i := range views {
		views[i] = buffer.NewViewWithData(make([]byte, 64))
		f.add(views[i], 0)
	}
	defer func() {
		for _, v := range views {
			v.Release()
		}
	}()
	i := 0
	step := func() {
		v := views[i%depth]
		i++
		got := f.Take(v.AsSlice())
		if got == nil {
			t.Fatal("shadow not found")
		}
		got.Release()
		f.add(v, 0)
	}
	for range 10 * depth {
		step()
	}
	// AllocsPerRun rounds down per run: count over many datagrams a run.
	const per = 20 * depth
	if allocs := testing.AllocsPerRun(10, func() {
		for range per {
			step()
		}
	}); allocs > 0 {
		t.Errorf("%.0f allocations per %d datagrams", allocs, per)
	}
	f.mu.Lock()
	n, c := len(f.shadows), len(f.arr)
	f.mu.Unlock()
	if n != depth || c > 2*depth {
		t.Errorf("%d shadows in an array of %d, want %d in at most %d", n, c, depth, 2*depth)
	}
}

// BenchmarkFlowTakeTCP measures one segment's pass through a TCP flow's
// shadows with depth segments in flight ahead of it, read in order: the
// common case of a bulk receiver. It justified releasing delivered shadows
// from the front when the slice taken is the oldest shadow's, instead of
// walking every shadow on every Take (O(depth) per segment).
func BenchmarkFlowTakeTCP(b *testing.B) {
	const mss = 1448
	for _, depth := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			st := &Stack{}
			f, err := st.RegisterFlow(header.TCPProtocolNumber, netip.MustParseAddrPort("192.0.2.2:9"), netip.MustParseAddrPort("192.0.2.1:5000"), 1<<30)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			views := make([]*buffer.View, depth)
			seq := seqnum.Value(1)
			for i := range views {
				views[i] = buffer.NewViewWithData(make([]byte, mss))
				f.add(views[i], seq)
				seq = seq.Add(mss)
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
				f.add(v, seq)
				seq = seq.Add(mss)
			}
			b.StopTimer()
			for _, v := range views {
				v.Release()
			}
		})
	}
}

// TestFlowTCPReleasesDelivered checks that a TCP flow releases every
// delivered shadow whatever the arrival order — in order (the prefix),
// after a hole is filled by a later arrival, and behind a shadow the stack
// never delivers — and keeps exactly those not yet delivered.
func TestFlowTCPReleasesDelivered(t *testing.T) {
	st := &Stack{}
	f, err := st.RegisterFlow(header.TCPProtocolNumber, netip.MustParseAddrPort("192.0.2.2:9"), netip.MustParseAddrPort("192.0.2.1:5000"), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seg := func(seq seqnum.Value) *buffer.View {
		v := buffer.NewViewWithData(make([]byte, 1000))
		f.add(v, seq)
		return v
	}
	take := func(v *buffer.View, wantLeft int) {
		t.Helper()
		got := f.Take(v.AsSlice())
		if got == nil {
			t.Fatal("shadow not found")
		}
		got.Release()
		v.Release()
		if n := f.Stats().Shadows; n != wantLeft {
			t.Fatalf("%d shadows left, want %d", n, wantLeft)
		}
	}
	a, c, b := seg(1), seg(2001), seg(1001) // b fills the hole late
	future := seg(100001)                   // beyond the window: never delivered
	take(a, 3)                              // the prefix: a
	take(b, 2)                              // b is behind c: found by the full walk
	take(c, 1)                              // c is now the front: future stays
	d := seg(3001)
	take(d, 1) // d is behind future: found by the full walk
	future.Release()
}
