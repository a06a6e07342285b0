//go:build linux

package xdp

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The data path against a kernel played by the test: rings in Go memory,
// a UMEM slice, and a fake for the system calls. No root needed.

type fakeKernel struct {
	wake    chan struct{}
	stopped chan struct{}
	once    sync.Once
	kicks   atomic.Int64
	wakeRxs atomic.Int64
	kickErr error
	onKick  func()
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{wake: make(chan struct{}, 1), stopped: make(chan struct{})}
}

func (k *fakeKernel) kick() (bool, error) {
	k.kicks.Add(1)
	if k.onKick != nil {
		k.onKick()
	}
	return false, k.kickErr
}
func (k *fakeKernel) wakeRx() { k.wakeRxs.Add(1) }
func (k *fakeKernel) wait() bool {
	select {
	case <-k.wake:
		return true
	case <-k.stopped:
		return false
	}
}
func (k *fakeKernel) stop() { k.once.Do(func() { close(k.stopped) }) }
func (k *fakeKernel) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// recorder is a dispatcher that keeps copies of what it is given.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
}

func (r *recorder) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	b := pkt.ToBuffer()
	r.mu.Lock()
	r.frames = append(r.frames, b.Flatten())
	r.mu.Unlock()
	b.Release()
}
func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

var (
	ourMAC   = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	peerMAC  = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	ourAddr  = netip.MustParseAddr("192.0.2.2")
	ourAddr6 = netip.MustParseAddr("2001:db8::2")
)

type fakeEnv struct {
	l                  *Link
	k                  *fakeKernel
	umem               []byte
	fm, cm, rm, tm     *ringMem
	fill, comp         *addrRing
	rx, tx             *descRing
	rec                *recorder
	fillSeen, txSeen   uint32 // the kernel's consumer positions
	rxPosted, compDone uint32 // the kernel's producer positions
}

// newFakeEnv builds a link of frames frames with a fill ring of fillSize
// entries (others frames/2) and starts it.
func newFakeEnv(t *testing.T, frames int, fillSize uint32) *fakeEnv {
	t.Helper()
	e := &fakeEnv{k: newFakeKernel(), umem: make([]byte, frames*2048), rec: &recorder{}}
	e.fill, e.fm = newAddrRingMem(fillSize)
	e.comp, e.cm = newAddrRingMem(uint32(frames / 2))
	e.rx, e.rm = newDescRingMem(uint32(frames / 2))
	e.tx, e.tm = newDescRingMem(uint32(frames / 2))
	info := Info{Interface: "fake", Frames: frames, FrameSize: 2048}
	cfg := Config{Addresses: []netip.Addr{ourAddr, ourAddr6}, LinkAddress: ourMAC, MTU: 1500, BusyPoll: -1}
	e.l = newLink(info, e.umem, e.k, e.fill, e.comp, e.rx, e.tx, cfg)
	e.l.Attach(e.rec)
	e.l.start()
	t.Cleanup(func() {
		e.l.Close()
		e.l.Wait()
	})
	return e
}

// takeFill pops one address the link put on the fill ring.
func (e *fakeEnv) takeFill(t *testing.T) uint64 {
	t.Helper()
	if e.fm.prod.Load() == e.fillSeen {
		t.Fatal("fill ring empty")
	}
	a := e.fill.addrs[e.fillSeen&e.fill.mask]
	e.fillSeen++
	e.fm.cons.Store(e.fillSeen)
	return a
}

// post puts a descriptor on the RX ring and wakes the link.
func (e *fakeEnv) post(addr uint64, n uint32) {
	e.rx.descs[e.rxPosted&e.rx.mask] = unix.XDPDesc{Addr: addr, Len: n}
	e.rxPosted++
	e.rm.prod.Store(e.rxPosted)
	e.k.poke()
}

// deliverFrame copies frame into a frame from the fill ring and posts it.
func (e *fakeEnv) deliverFrame(t *testing.T, frame []byte) {
	a := e.takeFill(t) + 256
	copy(e.umem[a:], frame)
	e.post(a, uint32(len(frame)))
}

// udpFrame builds an Ethernet/IPv4/UDP frame to dst with payload bytes.
func udpFrame(dstMAC tcpip.LinkAddress, dst netip.Addr, payload int) []byte {
	n := header.EthernetMinimumSize + header.IPv4MinimumSize + header.UDPMinimumSize + payload
	b := make([]byte, n)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: dstMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(n - header.EthernetMinimumSize), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), DstAddr: tcpip.AddrFrom4(dst.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(b[header.EthernetMinimumSize+header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 2000, Length: uint16(header.UDPMinimumSize + payload)})
	return b
}

// TestReceiveAndBadInput feeds good frames and every kind of bad entry;
// good ones reach the dispatcher, bad ones are counted, and every receive
// frame goes back to the fill ring.
func TestReceiveAndBadInput(t *testing.T) {
	e := newFakeEnv(t, 64, 32)
	st := e.l.Stats()
	if st.FramesRxKernel != 32 || st.FramesTxFree != 32 {
		t.Fatalf("after start: %+v", st)
	}
	good := udpFrame(ourMAC, ourAddr, 100)
	e.deliverFrame(t, good)
	e.deliverFrame(t, udpFrame(header.EthernetBroadcastAddress, ourAddr, 10))
	evchantest.Eventually(t, "two frames", func() bool { return e.rec.count() == 2 })
	e.rec.mu.Lock()
	if string(e.rec.frames[0]) != string(good) {
		t.Fatalf("delivered %x, want the frame", e.rec.frames[0])
	}
	e.rec.mu.Unlock()

	// Bad descriptors: never followed, the frame untouched.
	e.post(uint64(len(e.umem))+4096, 60) // past the UMEM
	e.post(40*2048, 60)                  // a transmit frame
	held := e.takeFill(t)                // a frame the kernel holds, overrun
	e.post(held+2000, 100)               //
	evchantest.Eventually(t, "bad descriptors", func() bool { return e.l.Stats().RxDropBadDesc == 3 })
	// Good descriptors, bad frames: counted, frames returned.
	e.post(held, 10)                                                          // the frame held above, truncated below Ethernet
	e.deliverFrame(t, udpFrame(ourMAC, ourAddr, 100)[:20])                    // IPv4 header cut
	e.deliverFrame(t, udpFrame(ourMAC, ourAddr, 1600))                        // oversized
	e.deliverFrame(t, udpFrame(peerMAC, ourAddr, 10))                         // another MAC
	e.deliverFrame(t, udpFrame(ourMAC, netip.MustParseAddr("192.0.2.9"), 10)) // another address
	arpOther := make([]byte, 42)
	header.Ethernet(arpOther).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: header.EthernetBroadcastAddress, Type: 0x88cc})
	e.deliverFrame(t, arpOther) // an EtherType the program passes
	evchantest.Eventually(t, "bad frames", func() bool {
		s := e.l.Stats()
		return s.RxDropShort == 2 && s.RxDropOversized == 1 && s.RxDropNotForUs == 3
	})
	// A producer index far ahead: clamped, counted, the link goes on.
	e.rm.prod.Store(e.rxPosted + 1000)
	e.k.poke()
	evchantest.Eventually(t, "bad index", func() bool { return e.l.Stats().RxBadIndex > 0 })
	e.rm.prod.Store(e.rxPosted)
	// Catch up with whatever the link consumed of the bogus entries.
	st = e.l.Stats()
	if st.RxFrames != 2 {
		t.Fatalf("delivered %d frames, want 2: %+v", st.RxFrames, st)
	}
	if st.RxCopiedBytes != st.RxBytes {
		t.Fatalf("copies %d, bytes %d", st.RxCopiedBytes, st.RxBytes)
	}
	if tot := e.l.Totals(); tot.RxFrames != 2 || tot.RxBytes != st.RxBytes || tot.TxFrames < st.TxFrames || tot.TxBytes < st.TxBytes {
		t.Fatalf("Totals %+v, Stats %+v", tot, st)
	}
	e.l.Close()
	e.l.Wait()
	st = e.l.Stats()
	if st.FramesRxKernel+st.FramesRxHeld != 32 || st.FramesTxFree != 32 {
		t.Fatalf("frames lost: %+v", st)
	}
}

// TestFillRingFull gives the link a fill ring smaller than its receive
// frames: the rest wait, counted, and go on as the kernel consumes.
func TestFillRingFull(t *testing.T) {
	e := newFakeEnv(t, 64, 16)
	st := e.l.Stats()
	if st.FramesRxKernel != 16 || st.FramesRxHeld != 16 || st.RxFillDeferred == 0 {
		t.Fatalf("fill ring of 16 for 32 frames: %+v", st)
	}
	for i := 0; i < 40; i++ {
		e.deliverFrame(t, udpFrame(ourMAC, ourAddr, 10))
		evchantest.Eventually(t, "frame", func() bool { return e.rec.count() == i+1 })
	}
	st = e.l.Stats()
	if st.FramesRxKernel+st.FramesRxHeld != 32 {
		t.Fatalf("frames: %+v", st)
	}
}

// writePackets sends n UDP packets from the link.
func writePackets(l *Link, n, size int) {
	var pl stack.PacketBufferList
	for i := 0; i < n; i++ {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, size))})
		pl.PushBack(pkt)
	}
	l.WritePackets(pl)
	pl.DecRef()
}

// TestTransmitStuck: a kernel that never sends. Frames run out, packets
// are dropped and counted, and frames come back once it completes them.
func TestTransmitStuck(t *testing.T) {
	e := newFakeEnv(t, 64, 32)
	e.tm.flags.Store(unix.XDP_RING_NEED_WAKEUP)
	writePackets(e.l, 40, 100)
	st := e.l.Stats()
	if st.TxFrames != 32 || st.TxDropNoFrame != 8 || st.FramesTxKernel != 32 {
		t.Fatalf("stuck ring: %+v", st)
	}
	if st.TxKicks == 0 || e.k.kicks.Load() != int64(st.TxKicks) {
		t.Fatalf("kicks: stats %d, kernel %d", st.TxKicks, e.k.kicks.Load())
	}
	writePackets(e.l, 1, 3000)
	if e.l.Stats().TxDropTooBig != 1 {
		t.Fatalf("oversized packet not counted: %+v", e.l.Stats())
	}
	// The kernel takes the 32 and completes 31 of them, plus a bogus
	// entry (the completion ring holds 32).
	for i := uint32(0); i < 31; i++ {
		d := e.tx.descs[(e.txSeen+i)&e.tx.mask]
		if d.Len != 100 {
			t.Fatalf("descriptor %d length %d", i, d.Len)
		}
		e.comp.addrs[(e.compDone+i)&e.comp.mask] = d.Addr
	}
	e.txSeen += 32
	e.tm.cons.Store(e.txSeen)
	e.compDone += 31
	e.comp.addrs[e.compDone&e.comp.mask] = 0 // a receive frame
	e.compDone++
	e.cm.prod.Store(e.compDone)
	e.k.kickErr = errors.New("sendto: fake failure")
	writePackets(e.l, 1, 100)
	st = e.l.Stats()
	if st.TxBadCompletion != 1 || st.TxFrames != 33 || st.FramesTxKernel != 2 || st.TxKickErrors != 1 {
		t.Fatalf("after completion: %+v", st)
	}
	if err := e.l.Err(); err == nil || !errors.Is(err, e.k.kickErr) {
		t.Fatalf("Err after a failed kick: %v", err)
	}
}

// TestNoDispatcher: frames before Attach are counted, frames returned.
func TestNoDispatcher(t *testing.T) {
	e := newFakeEnv(t, 64, 32)
	e.l.Attach(nil)
	e.deliverFrame(t, udpFrame(ourMAC, ourAddr, 10))
	evchantest.Eventually(t, "drop", func() bool { return e.l.Stats().RxDropNotAttached == 1 })
	if e.l.IsAttached() {
		t.Fatal("attached after Attach(nil)")
	}
}

// TestAllowAddress: an address added later is accepted.
func TestAllowAddress(t *testing.T) {
	e := newFakeEnv(t, 64, 32)
	other := netip.MustParseAddr("192.0.2.77")
	e.deliverFrame(t, udpFrame(ourMAC, other, 10))
	evchantest.Eventually(t, "drop", func() bool { return e.l.Stats().RxDropNotForUs == 1 })
	if err := e.l.AllowAddress(other); err != nil {
		t.Fatal(err)
	}
	e.deliverFrame(t, udpFrame(ourMAC, other, 10))
	evchantest.Eventually(t, "delivery", func() bool { return e.rec.count() == 1 })
	e.l.Close()
	if err := e.l.AllowAddress(netip.MustParseAddr("192.0.2.78")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("AllowAddress after Close: %v", err)
	}
}

// TestOpenErrors: a bad config and a missing interface fail before
// anything is made.
func TestOpenErrors(t *testing.T) {
	if _, err := Open(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("empty config: %v", err)
	}
	if _, err := Open(Config{Interface: "zcnet-no-such"}); err == nil {
		t.Fatal("missing interface: no error")
	}
}
