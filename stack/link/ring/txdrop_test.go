//go:build linux

package ring

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestTxDropsCounted checks the three ways the ring's transmit drops a
// packet, each counted by reason: no peer connected, a packet larger than
// a frame, and no free frame (a peer that takes nothing).
func TestTxDropsCounted(t *testing.T) {
	ss := newStackSide(t, Config{})
	write := func(size, n int) {
		t.Helper()
		var l stack.PacketBufferList
		for range n {
			l.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, size))}))
		}
		if got, err := ss.link.WritePackets(l); got != n || err != nil {
			t.Fatalf("WritePackets: %d, %v; want %d (drops are not errors)", got, err, n)
		}
		l.DecRef()
	}
	write(100, 3)
	if st := ss.link.Stats(); st.TxDropsNoPeer != 3 || st.TxFrames != 0 {
		t.Fatalf("no peer: %+v, want 3 TxDropsNoPeer", st)
	}
	p, err := Dial(ss.link.Addr(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitUp(t, ss)
	write(64<<10, 1)
	if st := ss.link.Stats(); st.TxDropsTooBig != 1 || st.TxFrames != 0 {
		t.Fatalf("too big: %+v, want 1 TxDropsTooBig", st)
	}
	// The peer is not attached to a stack, so it takes no frame: the
	// ring fills, and every later packet is dropped for want of a frame.
	const n = 5000
	for range n / 500 {
		write(100, 500)
	}
	st := ss.link.Stats()
	if st.TxDropsNoFrame == 0 || st.TxFrames+st.TxDropsNoFrame != n {
		t.Fatalf("full ring: %+v; want frames + TxDropsNoFrame = %d, some dropped", st, n)
	}
	t.Logf("ring took %d frames, dropped %d", st.TxFrames, st.TxDropsNoFrame)
}
