package impair

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Fixtures shared by the unit tests and benchmarks.

var (
	srcV4  = tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	dstV4  = tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	macA   = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x0a")
	macB   = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x0b")
	ethLen = header.EthernetMinimumSize
)

// newLink wraps a fresh channel endpoint (optionally behind gVisor's
// ethernet link) in an Endpoint with cfg, attaches rec as its dispatcher and
// registers cleanup (Close, drain, leak check).
func newLink(t testing.TB, cfg Config, eth bool, rec *recorder) (*Endpoint, *channel.Endpoint) {
	t.Helper()
	ch := channel.New(1<<12, 1500, macA)
	var inner stack.LinkEndpoint = ch
	if eth {
		inner = ethernet.New(ch)
	}
	e, err := New(inner, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if rec == nil {
		rec = newRecorder(0)
	}
	e.Attach(rec)
	t.Cleanup(func() { checkLeaks(t) }) // runs last: cleanups are LIFO
	t.Cleanup(func() {
		e.Close()
		e.Wait()
	})
	return e, ch
}

// payload returns n bytes that start with id and continue pseudo-randomly.
func payload(id uint32, n int) []byte {
	b := make([]byte, (max(n, 4)+7)&^7)
	r := rand.NewPCG(uint64(id), 7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	binary.BigEndian.PutUint32(b, id)
	return b[:max(n, 4)]
}

// rawPacket is a bare outbound packet with no headers: the cheapest thing
// to push through the counting tests. Hash carries id, which Clone keeps,
// so a packet is recognised even when corrupted.
func rawPacket(id uint32, n int) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(payload(id, n)),
	})
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.Hash = id
	return pkt
}

// udp4Packet is an outbound IPv4/UDP packet with valid checksums, headers
// pushed the way the stack pushes them, room for linkHdr more bytes, and
// Hash = id.
func udp4Packet(id uint32, n, linkHdr int) *stack.PacketBuffer {
	data := payload(id, n)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: linkHdr + header.IPv4MinimumSize + header.UDPMinimumSize,
		Payload:            buffer.MakeWithData(data),
	})
	l4len := header.UDPMinimumSize + len(data)
	u := header.UDP(pkt.TransportHeader().Push(header.UDPMinimumSize))
	u.Encode(&header.UDPFields{SrcPort: 5000, DstPort: 6000, Length: uint16(l4len)})
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, srcV4, dstV4, uint16(l4len))
	xsum = checksum.Checksum(data, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	ip := header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + l4len),
		TTL:         64,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     srcV4,
		DstAddr:     dstV4,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	pkt.TransportProtocolNumber = header.UDPProtocolNumber
	pkt.EgressRoute.LocalLinkAddress = macA
	pkt.EgressRoute.RemoteLinkAddress = macB
	pkt.Hash = id
	return pkt
}

// ipv4Intact reports whether b, an IPv4 packet, would pass the checks a
// receiving stack makes before delivering its UDP or TCP payload: header
// validity and checksum, and the transport checksum over the length the IP
// header claims.
func ipv4Intact(b []byte) bool {
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) || !ip.IsChecksumValid() {
		return false
	}
	l4 := b[ip.HeaderLength():ip.TotalLength()]
	proto := tcpip.TransportProtocolNumber(ip.Protocol())
	switch proto {
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize || int(header.UDP(l4).Length()) != len(l4) {
			return false
		}
	case header.TCPProtocolNumber:
	default:
		return false
	}
	xsum := header.PseudoHeaderChecksum(proto, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}

// bytesOf copies a packet's bytes, every header included.
func bytesOf(pkt *stack.PacketBuffer) []byte {
	v := pkt.ToView()
	defer v.Release()
	return append([]byte(nil), v.AsSlice()...)
}

// record is one packet a recorder saw.
type record struct {
	id    uint32
	proto tcpip.NetworkProtocolNumber
	data  []byte
	at    time.Time
}

// recorder is a stack.NetworkDispatcher for the inbound direction. It
// records what it is given and, like the stack, parses the packet in place
// by consuming consume bytes of network header: a packet delivered twice
// would panic there.
type recorder struct {
	consume int
	keep    bool // copy the bytes of each packet
	ch      chan record
}

func newRecorder(consume int) *recorder {
	return &recorder{consume: consume, ch: make(chan record, 1<<17)}
}

func (r *recorder) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if r.consume > 0 {
		if _, ok := pkt.NetworkHeader().Consume(r.consume); !ok {
			panic("short packet")
		}
	}
	rec := record{id: uint32(pkt.Hash), proto: proto, at: time.Now()}
	if r.keep {
		rec.data = bytesOf(pkt)
	}
	r.ch <- rec
}

func (*recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// next waits up to d for the next record.
func (r *recorder) next(t testing.TB, d time.Duration) record {
	t.Helper()
	select {
	case rec := <-r.ch:
		return rec
	case <-time.After(d):
		t.Fatalf("no packet delivered within %v", d)
		return record{}
	}
}

// drainRecords returns every record waiting, without blocking.
func (r *recorder) drainRecords() []record {
	var out []record
	for {
		select {
		case rec := <-r.ch:
			out = append(out, rec)
		default:
			return out
		}
	}
}

// drainChannel reads every packet queued on ch, copying bytes if keep.
func drainChannel(ch *channel.Endpoint, keep bool) []record {
	var out []record
	for pkt := ch.Read(); pkt != nil; pkt = ch.Read() {
		rec := record{id: uint32(pkt.Hash), proto: pkt.NetworkProtocolNumber, at: time.Now()}
		if keep {
			rec.data = bytesOf(pkt)
		}
		pkt.DecRef()
		out = append(out, rec)
	}
	return out
}

// readChannel waits up to d for the next packet on ch.
func readChannel(t testing.TB, ch *channel.Endpoint, d time.Duration, keep bool) record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	pkt := ch.ReadContext(ctx)
	if pkt == nil {
		t.Fatalf("no packet written within %v", d)
	}
	defer pkt.DecRef()
	rec := record{id: uint32(pkt.Hash), at: time.Now()}
	if keep {
		rec.data = bytesOf(pkt)
	}
	return rec
}

// write sends one packet outbound and drops the caller's reference, as the
// stack's qdisc does.
func write(t testing.TB, e *Endpoint, pkt *stack.PacketBuffer) {
	t.Helper()
	var l stack.PacketBufferList
	l.PushBack(pkt)
	if n, err := e.WritePackets(l); err != nil || n != 1 {
		t.Fatalf("WritePackets = %d, %v; want 1, nil", n, err)
	}
	l.DecRef()
}

// inject delivers one packet inbound through the inner channel and drops
// the caller's reference, as a link's receive loop does.
func inject(ch *channel.Endpoint, pkt *stack.PacketBuffer) {
	ch.InjectInbound(pkt.NetworkProtocolNumber, pkt)
	pkt.DecRef()
}

// The replay: the decisions a direction makes, recomputed here from the
// draw order documented in pipe.go (step 1), with the same generator. The
// tests compare what the endpoint did with this, so a change of the
// documented contract fails them.

type copyFate struct {
	corrupt bool
	pos     int
	xor     byte
	jitter  time.Duration
	held    bool
}

type fate struct {
	lost   bool
	copies []copyFate
}

// replay returns the fates of packets of the given sizes (whole packet,
// headers included); skip is the link header length corruption skips.
func replay(im Impairments, seed, stream uint64, sizes []int, skip int) []fate {
	im, _ = im.validate("replay")
	rng := rand.New(rand.NewPCG(seed, stream))
	out := make([]fate, len(sizes))
	for i, size := range sizes {
		if im.Loss > 0 && rng.Float64() < im.Loss {
			out[i].lost = true
			continue
		}
		n := 1
		if im.Duplicate > 0 && rng.Float64() < im.Duplicate {
			n = 2
		}
		for range n {
			var c copyFate
			if im.Corrupt > 0 && rng.Float64() < im.Corrupt && size > skip {
				c.corrupt = true
				c.pos = skip + rng.IntN(size-skip)
				c.xor = byte(1 + rng.IntN(255))
			}
			if im.Jitter > 0 {
				c.jitter = time.Duration(rng.Int64N(int64(im.Jitter)))
			}
			if im.Reorder > 0 && rng.Float64() < im.Reorder {
				c.held = true
			}
			out[i].copies = append(out[i].copies, c)
		}
	}
	return out
}

// expectedOrder is the order in which ids leave an untimed direction with
// these fates: held copies re-enter right behind the gap-th copy to pass
// after them. stillHeld are the copies held when the input ends.
func expectedOrder(fates []fate, gap int) (order []uint32, stillHeld []uint32) {
	type h struct {
		id   uint32
		left int
	}
	var holds []h
	for i, f := range fates {
		for _, c := range f.copies {
			if c.held {
				holds = append(holds, h{uint32(i), gap})
				continue
			}
			order = append(order, uint32(i))
			kept := holds[:0]
			var rel []uint32
			for _, x := range holds {
				x.left--
				if x.left == 0 {
					rel = append(rel, x.id)
				} else {
					kept = append(kept, x)
				}
			}
			holds = kept
			order = append(order, rel...)
		}
	}
	for _, x := range holds {
		stillHeld = append(stillHeld, x.id)
	}
	return order, stillHeld
}

// balance checks the accounting identity of DirectionStats.
func balance(t testing.TB, dir string, s DirectionStats) {
	t.Helper()
	left := s.In + s.Duplicated
	right := s.Passed + s.Refused + s.DroppedLoss + s.DroppedQueueFull + s.DroppedClosed + s.Pending
	if left != right {
		t.Errorf("%s: In+Duplicated = %d, but Passed+Refused+Dropped*+Pending = %d (%+v)", dir, left, right, s)
	}
}
