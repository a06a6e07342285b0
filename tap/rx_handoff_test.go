package tap

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// seqDispatcher records the 4-byte sequence number each packet ends with.
type seqDispatcher struct {
	mu  sync.Mutex
	got []uint32
}

func (d *seqDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	b := pkt.Data().AsRange().ToSlice()
	d.mu.Lock()
	d.got = append(d.got, binary.BigEndian.Uint32(b[len(b)-4:]))
	d.mu.Unlock()
}

func (d *seqDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *seqDispatcher) n() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.got)
}

// TestHandoffKeepsOrder queues a burst of frames while the link is
// detached, so the reader finds them all at once when it attaches: it
// must deliver the first few itself, hand the rest to its deliverer, and
// the stack must see every frame in the order the device gave them.
func TestHandoffKeepsOrder(t *testing.T) {
	const burst = 200
	link, _, peer := newPeerLink(t, OffloadOn)
	link.Attach(nil)
	link.Wait()
	for i := range burst {
		var seq [4]byte
		binary.BigEndian.PutUint32(seq[:], uint32(i))
		if err := peer.Write(withVnet(vnetHdr{}, udpFrame(frameSpec{payload: seq[:]}))); err != nil {
			t.Fatal(err)
		}
	}
	before := link.Stats().RxHandedOff
	d := &seqDispatcher{}
	link.Attach(d)
	if !evchantest.Poll(10*time.Second, func() bool { return d.n() == burst }) {
		t.Fatalf("delivered %d of %d frames", d.n(), burst)
	}
	link.Attach(nil)
	link.Wait()
	for i, s := range d.got {
		if s != uint32(i) {
			t.Fatalf("frame %d delivered as number %d: out of order", s, i)
		}
	}
	if got, want := link.Stats().RxHandedOff-before, uint64(burst-handoffAfter+1); got != want {
		t.Fatalf("%d frames handed to the deliverer, want %d (all after the first %d)", got, want, handoffAfter-1)
	}
}
