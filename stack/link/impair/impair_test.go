package impair

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

const testSeed = 0x5eed

func TestNewRejectsInvalidConfig(t *testing.T) {
	ch := channel.New(1, 1500, "")
	defer ch.Close()
	bad := map[string]Config{
		"negative loss":      {Outbound: Impairments{Loss: -0.1}},
		"loss above one":     {Outbound: Impairments{Loss: 1.5}},
		"NaN corrupt":        {Inbound: Impairments{Corrupt: math.NaN()}},
		"duplicate above 1":  {Inbound: Impairments{Duplicate: 2}},
		"negative reorder":   {Inbound: Impairments{Reorder: -1}},
		"negative delay":     {Inbound: Impairments{Delay: -time.Second}},
		"negative jitter":    {Inbound: Impairments{Jitter: -1}},
		"negative timeout":   {Outbound: Impairments{ReorderTimeout: -1}},
		"negative gap":       {Outbound: Impairments{ReorderGap: -1}},
		"negative burst":     {Outbound: Impairments{Burst: -1}},
		"negative queue lim": {Outbound: Impairments{QueueLimit: -1}},
	}
	for name, cfg := range bad {
		if _, err := New(ch, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: New error = %v, want ErrInvalidConfig", name, err)
		}
	}
	if _, err := New(nil, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil inner: New error = %v, want ErrInvalidConfig", err)
	}
}

func TestDefaultsFillZeroFields(t *testing.T) {
	const fast, slow = 8_000_000_000, 1_000_000
	ch := channel.New(1, 1500, "")
	e, err := New(ch, Config{
		Outbound: Impairments{Rate: fast},
		Inbound:  Impairments{Rate: slow, Reorder: 0.1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	out, in := e.Config().Outbound, e.Config().Inbound
	if want := int(float64(fast) / 8 * DefaultBurstTime.Seconds()); out.Burst != want {
		t.Errorf("fast Burst = %d, want %d (DefaultBurstTime of Rate)", out.Burst, want)
	}
	if in.Burst != MinDefaultBurst {
		t.Errorf("slow Burst = %d, want MinDefaultBurst %d", in.Burst, MinDefaultBurst)
	}
	if out.QueueLimit != DefaultQueueLimit || in.ReorderGap != DefaultReorderGap || in.ReorderTimeout != DefaultReorderTimeout {
		t.Errorf("defaults not filled: %+v %+v", out, in)
	}
	e2, err := New(ch, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !e2.Config().Outbound.IsZero() || !e2.Config().Inbound.IsZero() {
		t.Errorf("zero config gained defaults: %+v", e2.Config())
	}
}

func TestPassThroughChangesNothing(t *testing.T) {
	rec := newRecorder(0)
	rec.keep = true
	e, ch := newLink(t, Config{Seed: testSeed}, false, rec)
	const n = 100
	for i := range uint32(n) {
		pkt := rawPacket(i, 64)
		want := bytesOf(pkt)
		write(t, e, pkt)
		got := readChannel(t, ch, time.Second, true)
		if got.id != i || !bytes.Equal(got.data, want) {
			t.Fatalf("outbound packet %d: got id %d, bytes equal %v", i, got.id, bytes.Equal(got.data, want))
		}
		in := rawPacket(i, 64)
		inject(ch, in)
		r := rec.next(t, time.Second)
		if r.id != i || !bytes.Equal(r.data, want) {
			t.Fatalf("inbound packet %d: got id %d, bytes equal %v", i, r.id, bytes.Equal(r.data, want))
		}
	}
	s := e.Stats()
	for dir, d := range map[string]DirectionStats{"outbound": s.Outbound, "inbound": s.Inbound} {
		if d.In != n || d.Passed != n {
			t.Errorf("%s: In %d Passed %d, want %d each", dir, d.In, d.Passed, n)
		}
		balance(t, dir, d)
	}
}

func TestCapabilitiesHideOffloadsOnlyForCorruption(t *testing.T) {
	const all = stack.CapabilityRXChecksumOffload | stack.CapabilityTXChecksumOffload | stack.CapabilityResolutionRequired
	mk := func(cfg Config) *Endpoint {
		ch := channel.New(1, 1500, "")
		ch.LinkEPCapabilities = all
		ch.SupportedGSOKind = stack.HostGSOSupported
		e, err := New(ch, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		return e
	}
	other := Impairments{Loss: 0.5, Duplicate: 0.5, Reorder: 0.5, Delay: time.Second, Rate: 1}
	e := mk(Config{Outbound: other, Inbound: other})
	if e.Capabilities() != all || e.SupportedGSO() != stack.HostGSOSupported || e.GSOMaxSize() == 0 {
		t.Errorf("without corruption: caps %b GSO %v/%d, want inner's %b", e.Capabilities(), e.SupportedGSO(), e.GSOMaxSize(), all)
	}
	e = mk(Config{Inbound: Impairments{Corrupt: 0.1}})
	if want := all &^ stack.CapabilityRXChecksumOffload; e.Capabilities() != want || e.SupportedGSO() != stack.HostGSOSupported {
		t.Errorf("inbound corruption: caps %b GSO %v, want %b and GSO kept", e.Capabilities(), e.SupportedGSO(), want)
	}
	e = mk(Config{Outbound: Impairments{Corrupt: 0.1}})
	if want := all &^ stack.CapabilityTXChecksumOffload; e.Capabilities() != want || e.SupportedGSO() != stack.GSONotSupported || e.GSOMaxSize() != 0 {
		t.Errorf("outbound corruption: caps %b GSO %v/%d, want %b and no GSO", e.Capabilities(), e.SupportedGSO(), e.GSOMaxSize(), want)
	}
}

// sizes returns the whole-packet sizes of n raw packets of payload size m.
func sizes(n, m int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = m
	}
	return s
}

// survivors lists, in order, the ids of copies an untimed, unreordered
// direction passes.
func survivors(fates []fate) []uint32 {
	var ids []uint32
	for i, f := range fates {
		for range f.copies {
			ids = append(ids, uint32(i))
		}
	}
	return ids
}

// sendOut writes n raw packets outbound in batches of 64 and returns the
// ids in the order the inner link got them.
func sendOut(t *testing.T, e *Endpoint, ch *channel.Endpoint, n, size int) []uint32 {
	t.Helper()
	var got []uint32
	for base := 0; base < n; base += 64 {
		var l stack.PacketBufferList
		for i := base; i < min(base+64, n); i++ {
			l.PushBack(rawPacket(uint32(i), size))
		}
		if w, err := e.WritePackets(l); err != nil || w != l.Len() {
			t.Fatalf("WritePackets = %d, %v; want %d, nil", w, err, l.Len())
		}
		l.DecRef()
		for _, r := range drainChannel(ch, false) {
			got = append(got, r.id)
		}
	}
	return got
}

// sendIn injects n raw packets inbound and returns the ids in the order
// the stack side got them.
func sendIn(t *testing.T, ch *channel.Endpoint, rec *recorder, n, size int) []uint32 {
	t.Helper()
	for i := range n {
		inject(ch, rawPacket(uint32(i), size))
	}
	var got []uint32
	for _, r := range rec.drainRecords() {
		got = append(got, r.id)
	}
	return got
}

// eachDirection runs f for the outbound and the inbound direction of a
// fresh link whose impaired direction has im. f gets a send function that
// offers n packets of the given payload size and returns the ids passed.
func eachDirection(t *testing.T, im Impairments, f func(t *testing.T, e *Endpoint, stream uint64, send func(n, size int) []uint32)) {
	t.Run("outbound", func(t *testing.T) {
		e, ch := newLink(t, Config{Seed: testSeed, Outbound: im}, false, nil)
		f(t, e, outboundStream, func(n, size int) []uint32 { return sendOut(t, e, ch, n, size) })
	})
	t.Run("inbound", func(t *testing.T) {
		// The recorder parses each packet in place as the stack does, so a
		// packet delivered twice would panic.
		rec := newRecorder(4)
		e, ch := newLink(t, Config{Seed: testSeed, Inbound: im}, false, rec)
		f(t, e, inboundStream, func(n, size int) []uint32 { return sendIn(t, ch, rec, n, size) })
	})
}

func dirStats(e *Endpoint, stream uint64) DirectionStats {
	if stream == outboundStream {
		return e.Stats().Outbound
	}
	return e.Stats().Inbound
}

func TestLossRateAndReplay(t *testing.T) {
	const n, p = 100_000, 0.02
	im := Impairments{Loss: p}
	eachDirection(t, im, func(t *testing.T, e *Endpoint, stream uint64, send func(int, int) []uint32) {
		got := send(n, 32)
		want := survivors(replay(im, testSeed, stream, sizes(n, 32), 0))
		if !slices.Equal(got, want) {
			t.Fatalf("passed %d packets, replay of seed says %d; sequences differ", len(got), len(want))
		}
		lost := n - len(got)
		// Binomial standard deviation is sqrt(n p (1-p)) = 44 packets;
		// 0.25 percentage points is 5.6 of them.
		if frac := float64(lost) / n; math.Abs(frac-p) > 0.0025 {
			t.Errorf("lost %d of %d = %.4f, want %.2f ± 0.0025", lost, n, frac, p)
		}
		s := dirStats(e, stream)
		if s.DroppedLoss != uint64(lost) || s.Passed != uint64(len(got)) || s.In != n {
			t.Errorf("stats %+v, want In %d DroppedLoss %d Passed %d", s, n, lost, len(got))
		}
		balance(t, "loss", s)
		t.Logf("lost %d of %d (%.3f%%)", lost, n, 100*float64(lost)/n)
	})
}

func TestDuplicateFollowsOriginal(t *testing.T) {
	const n, p = 20_000, 0.05
	im := Impairments{Duplicate: p}
	eachDirection(t, im, func(t *testing.T, e *Endpoint, stream uint64, send func(int, int) []uint32) {
		got := send(n, 32)
		want := survivors(replay(im, testSeed, stream, sizes(n, 32), 0))
		if !slices.Equal(got, want) {
			t.Fatalf("passed %d packets, replay says %d; sequences differ", len(got), len(want))
		}
		dups := len(got) - n
		if frac := float64(dups) / n; math.Abs(frac-p) > 0.008 { // 5σ
			t.Errorf("duplicated %d of %d = %.4f, want %.2f ± 0.008", dups, n, frac, p)
		}
		s := dirStats(e, stream)
		if s.Duplicated != uint64(dups) || s.Passed != uint64(len(got)) {
			t.Errorf("stats %+v, want Duplicated %d Passed %d", s, dups, len(got))
		}
		balance(t, "duplicate", s)
	})
}

func TestReorderHoldsBackByGap(t *testing.T) {
	const n, p = 20_000, 0.05
	im := Impairments{Reorder: p, ReorderGap: 3, ReorderTimeout: time.Hour}
	eachDirection(t, im, func(t *testing.T, e *Endpoint, stream uint64, send func(int, int) []uint32) {
		got := send(n, 32)
		fates := replay(im, testSeed, stream, sizes(n, 32), 0)
		want, still := expectedOrder(fates, im.ReorderGap)
		if !slices.Equal(got, want) {
			t.Fatalf("order differs from the replay (%d vs %d packets)", len(got), len(want))
		}
		held := 0
		for _, f := range fates {
			if f.copies[0].held {
				held++
			}
		}
		if frac := float64(held) / n; math.Abs(frac-p) > 0.008 {
			t.Errorf("held %d of %d = %.4f, want %.2f ± 0.008", held, n, frac, p)
		}
		s := dirStats(e, stream)
		if s.Reordered != uint64(held) || s.Pending != uint64(len(still)) {
			t.Errorf("stats %+v, want Reordered %d Pending %d", s, held, len(still))
		}
		e.Close()
		s = dirStats(e, stream)
		if s.Pending != 0 || s.DroppedClosed != uint64(len(still)) {
			t.Errorf("after Close: %+v, want Pending 0 DroppedClosed %d", s, len(still))
		}
		balance(t, "reorder", s)
	})
}

func TestReorderTimeoutReleases(t *testing.T) {
	const n, timeout = 20, 20 * time.Millisecond
	// Every packet is held, so none ever passes a hold: only the timeout
	// can release them.
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: Impairments{Reorder: 1, ReorderTimeout: timeout}}, false, nil)
	sent := make([]time.Time, n)
	for i := range uint32(n) {
		sent[i] = time.Now()
		write(t, e, rawPacket(i, 32))
	}
	seen := make(map[uint32]bool)
	for range n {
		r := readChannel(t, ch, 5*time.Second, false)
		if el := r.at.Sub(sent[r.id]); el < timeout {
			t.Errorf("packet %d released after %v, before the %v timeout", r.id, el, timeout)
		}
		seen[r.id] = true
	}
	e.Close() // waits for the timer goroutine to finish counting
	s := e.Stats().Outbound
	if len(seen) != n || s.Reordered != n || s.Passed != n || s.Pending != 0 {
		t.Errorf("saw %d distinct, stats %+v; want all %d held and passed", len(seen), s, n)
	}
}

// frame returns the bytes of an Ethernet frame carrying IPv4/UDP with
// payload size m, and the same as an outbound packet with headers pushed.
func udpFrame(e *Endpoint, id uint32, m int) *stack.PacketBuffer {
	pkt := udp4Packet(id, m, ethLen)
	e.AddHeader(pkt) // as the NIC does before WritePackets
	return pkt
}

func TestCorruptOneByteAfterLinkHeader(t *testing.T) {
	const n = 2000
	im := Impairments{Corrupt: 1}
	check := func(t *testing.T, i int, orig, got []byte, f fate) {
		t.Helper()
		c := f.copies[0]
		if len(got) != len(orig) {
			t.Fatalf("packet %d: length %d, want %d", i, len(got), len(orig))
		}
		var diff []int
		for j := range got {
			if got[j] != orig[j] {
				diff = append(diff, j)
			}
		}
		if len(diff) != 1 || diff[0] != c.pos || got[c.pos]^orig[c.pos] != c.xor {
			t.Fatalf("packet %d: bytes differ at %v, want only %d by %#x", i, diff, c.pos, c.xor)
		}
		if c.pos < ethLen {
			t.Fatalf("packet %d: link header damaged at %d", i, c.pos)
		}
		if !ipv4Intact(orig[ethLen:]) {
			t.Fatalf("packet %d: fixture is not a valid packet", i)
		}
		if ipv4Intact(got[ethLen:]) {
			t.Errorf("packet %d: damage at %d (%#x) passes the checksums", i, c.pos, c.xor)
		}
	}
	t.Run("outbound", func(t *testing.T) {
		e, ch := newLink(t, Config{Seed: testSeed, Outbound: im}, true, nil)
		var szs []int
		var origs [][]byte
		var got []record
		for i := range uint32(n) {
			pkt := udpFrame(e, i, 1+int(i)%300)
			orig := bytesOf(pkt)
			pkt.IncRef() // the sender keeps the packet, as TCP does
			write(t, e, pkt)
			if after := bytesOf(pkt); !bytes.Equal(after, orig) {
				t.Fatalf("packet %d: the sender's copy changed", i)
			}
			pkt.DecRef()
			szs = append(szs, len(orig))
			origs = append(origs, orig)
			got = append(got, drainChannel(ch, true)...)
		}
		fates := replay(im, testSeed, outboundStream, szs, ethLen)
		if len(got) != n {
			t.Fatalf("got %d packets, want %d", len(got), n)
		}
		for i, r := range got {
			check(t, i, origs[r.id], r.data, fates[r.id])
		}
		if s := e.Stats().Outbound; s.Corrupted != n || s.Passed != n {
			t.Errorf("stats %+v, want Corrupted = Passed = %d", s, n)
		}
	})
	t.Run("inbound", func(t *testing.T) {
		rec := newRecorder(0)
		rec.keep = true
		e, ch := newLink(t, Config{Seed: testSeed, Inbound: im}, true, rec)
		var szs []int
		var origs [][]byte
		for i := range uint32(n) {
			out := udpFrame(e, i, 1+int(i)%300)
			frame := bytesOf(out)
			out.DecRef()
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
			pkt.Hash = i
			ch.InjectInbound(0, pkt) // gVisor's ethernet link parses the frame first
			if after := bytesOf(pkt); !bytes.Equal(after, frame) {
				t.Fatalf("packet %d: the link's copy changed", i)
			}
			pkt.DecRef()
			szs = append(szs, len(frame))
			origs = append(origs, frame)
		}
		fates := replay(im, testSeed, inboundStream, szs, ethLen)
		got := rec.drainRecords()
		if len(got) != n {
			t.Fatalf("got %d packets, want %d", len(got), n)
		}
		for i, r := range got {
			if r.proto != header.IPv4ProtocolNumber {
				t.Fatalf("packet %d: protocol %d, want IPv4", i, r.proto)
			}
			check(t, i, origs[r.id], r.data, fates[r.id])
		}
		if s := e.Stats().Inbound; s.Corrupted != n || s.Passed != n {
			t.Errorf("stats %+v, want Corrupted = Passed = %d", s, n)
		}
	})
}

func TestCorruptCopyLeavesTwinIntact(t *testing.T) {
	// Every packet is duplicated, and each copy is corrupted or not on its
	// own: the twins share memory until one is damaged, so a damage that
	// leaked would show in the other.
	const n = 1000
	im := Impairments{Duplicate: 1, Corrupt: 0.5}
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: im}, false, nil)
	var szs []int
	var origs [][]byte
	for i := range uint32(n) {
		pkt := udp4Packet(i, 1+int(i)%300, 0)
		origs = append(origs, bytesOf(pkt))
		szs = append(szs, len(origs[i]))
		write(t, e, pkt)
	}
	got := drainChannel(ch, true)
	fates := replay(im, testSeed, outboundStream, szs, 0)
	if len(got) != 2*n {
		t.Fatalf("got %d packets, want %d", len(got), 2*n)
	}
	damaged := 0
	for k, r := range got {
		id, c := r.id, fates[r.id].copies[k%2]
		want := bytes.Clone(origs[id])
		if c.corrupt {
			want[c.pos] ^= c.xor
			damaged++
		}
		if !bytes.Equal(r.data, want) {
			t.Fatalf("packet %d copy %d (corrupt %v): bytes differ from the expected", id, k%2, c.corrupt)
		}
	}
	if s := e.Stats().Outbound; s.Corrupted != uint64(damaged) || damaged == 0 || damaged == 2*n {
		t.Errorf("corrupted %d of %d copies, stats %+v", damaged, 2*n, s)
	}
}

func TestDelayAndJitterKeepOrder(t *testing.T) {
	const n = 30
	im := Impairments{Delay: 30 * time.Millisecond, Jitter: 20 * time.Millisecond}
	run := func(t *testing.T, stream uint64, send func(i uint32), next func() record, e *Endpoint) {
		fates := replay(im, testSeed, stream, sizes(n, 32), 0)
		sent := make([]time.Time, n)
		for i := range uint32(n) {
			sent[i] = time.Now()
			send(i)
		}
		for i := range uint32(n) {
			r := next()
			if r.id != i {
				t.Fatalf("packet %d arrived in place %d: jitter reordered", r.id, i)
			}
			// Departure is never before entry + Delay + own jitter: a
			// lower bound that no scheduling delay can break.
			if min := im.Delay + fates[i].copies[0].jitter; r.at.Sub(sent[i]) < min {
				t.Errorf("packet %d took %v, less than its %v", i, r.at.Sub(sent[i]), min)
			}
		}
		e.Close() // waits for the timer goroutine to finish counting
		s := dirStats(e, stream)
		if s.Delayed != n || s.Passed != n || s.Pending != 0 {
			t.Errorf("stats %+v, want Delayed = Passed = %d", s, n)
		}
		balance(t, "delay", s)
	}
	t.Run("outbound", func(t *testing.T) {
		e, ch := newLink(t, Config{Seed: testSeed, Outbound: im}, false, nil)
		run(t, outboundStream, func(i uint32) { write(t, e, rawPacket(i, 32)) },
			func() record { return readChannel(t, ch, 5*time.Second, false) }, e)
	})
	t.Run("inbound", func(t *testing.T) {
		rec := newRecorder(0)
		e, ch := newLink(t, Config{Seed: testSeed, Inbound: im}, false, rec)
		run(t, inboundStream, func(i uint32) { inject(ch, rawPacket(i, 32)) },
			func() record { return rec.next(t, 5*time.Second) }, e)
	})
}

func TestRateLimitQueueOverflow(t *testing.T) {
	// 1000-byte packets at 800 bit/s leave 10 s apart, so the whole burst
	// below enters in one instant as far as the bucket can tell.
	const (
		n, size = 100, 1000
		rate    = 800
		burst   = 1000
		limit   = 50
	)
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: Impairments{Rate: rate, Burst: burst, QueueLimit: limit}}, false, nil)
	start := time.Now()
	for i := range uint32(n) {
		write(t, e, rawPacket(i, size))
	}
	if el := time.Since(start); el >= 10*time.Second {
		t.Fatalf("writing took %v: the test's premise (one instant) does not hold", el)
	}
	// A packet leaves as soon as the bucket is not in debt: a full bucket
	// of burst bytes lets burst/size + 1 go at once.
	immediate := burst/size + 1
	wantDropped := n - immediate - limit
	for range immediate {
		readChannel(t, ch, 5*time.Second, false)
	}
	s := e.Stats().Outbound
	if s.DroppedQueueFull != uint64(wantDropped) || s.Delayed != limit {
		t.Errorf("stats %+v, want DroppedQueueFull %d and Delayed %d", s, wantDropped, limit)
	}
	e.Close()
	s = e.Stats().Outbound
	if s.Passed < uint64(immediate) || s.Passed+s.DroppedClosed != uint64(immediate+limit) {
		t.Errorf("after Close %+v, want Passed >= %d and Passed+DroppedClosed = %d", s, immediate, immediate+limit)
	}
	balance(t, "rate", s)
}

func TestRateLimitPaces(t *testing.T) {
	const (
		n, size = 40, 1250
		rate    = 2_000_000 // 5 ms per packet
		burst   = 1500
	)
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: Impairments{Rate: rate, Burst: burst}}, false, nil)
	start := time.Now()
	for i := range uint32(n) {
		write(t, e, rawPacket(i, size))
	}
	per := transmitTime(size, rate)
	tau := time.Duration(burst * 8 * int64(time.Second) / rate)
	for k := range n {
		r := readChannel(t, ch, 5*time.Second, false)
		if r.id != uint32(k) {
			t.Fatalf("packet %d left in place %d", r.id, k)
		}
		// GCRA: packet k leaves no earlier than k transmit times after the
		// first, less the bucket's depth.
		if min := time.Duration(k)*per - tau; r.at.Sub(start) < min {
			t.Errorf("packet %d left %v after start, before %v", k, r.at.Sub(start), min)
		}
	}
	e.Close() // waits for the timer goroutine to finish counting
	if s := e.Stats().Outbound; s.Passed != n || s.DroppedQueueFull != 0 {
		t.Errorf("stats %+v, want all %d passed", s, n)
	}
}

// runMixed pushes n IPv4/UDP packets each way through a link with cfg and
// returns what came out, as id and SHA-256 of the bytes, and the stats.
func runMixed(t *testing.T, cfg Config, n int) (out, in [][2]any, s Stats) {
	rec := newRecorder(0)
	rec.keep = true
	e, ch := newLink(t, cfg, false, rec)
	for i := range uint32(n) {
		write(t, e, udp4Packet(i, int(i)%700, 0))
		for _, r := range drainChannel(ch, true) {
			out = append(out, [2]any{r.id, sha256.Sum256(r.data)})
		}
		wire := udp4Packet(i, int(i)%700, 0)
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(bytesOf(wire))})
		wire.DecRef()
		pkt.Hash = i
		inject(ch, pkt)
	}
	for _, r := range rec.drainRecords() {
		in = append(in, [2]any{r.id, sha256.Sum256(r.data)})
	}
	e.Close()
	return out, in, e.Stats()
}

func TestSameSeedSameDecisions(t *testing.T) {
	const n = 5000
	im := Impairments{Loss: 0.02, Duplicate: 0.01, Reorder: 0.05, ReorderTimeout: time.Hour, Corrupt: 0.01, Jitter: 0}
	cfg := Config{Seed: 42, Outbound: im, Inbound: im}
	out1, in1, s1 := runMixed(t, cfg, n)
	out2, in2, s2 := runMixed(t, cfg, n)
	if !slices.Equal(out1, out2) || !slices.Equal(in1, in2) || s1 != s2 {
		t.Errorf("same seed, different runs: %d/%d out, %d/%d in, stats equal %v", len(out1), len(out2), len(in1), len(in2), s1 == s2)
	}
	for dir, d := range map[string]DirectionStats{"outbound": s1.Outbound, "inbound": s1.Inbound} {
		if d.DroppedLoss == 0 || d.Duplicated == 0 || d.Reordered == 0 || d.Corrupted == 0 {
			t.Errorf("%s: some impairment never fired: %+v", dir, d)
		}
		balance(t, dir, d)
	}
	cfg.Seed = 43
	out3, in3, _ := runMixed(t, cfg, n)
	if slices.Equal(out1, out3) || slices.Equal(in1, in3) {
		t.Errorf("seeds 42 and 43 made the same decisions")
	}
}

func TestCloseReleasesEverythingHeld(t *testing.T) {
	const n = 200
	im := Impairments{Duplicate: 0.2, Corrupt: 0.2, Reorder: 0.3, ReorderTimeout: time.Hour, Delay: time.Hour, Rate: 1_000_000}
	var released atomic.Int64
	onRelease := func() { released.Add(1) }
	mk := func(i uint32) *stack.PacketBuffer {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
			ReserveHeaderBytes: 20,
			Payload:            buffer.MakeWithData(payload(i, 100)),
			OnRelease:          onRelease,
		})
		pkt.NetworkHeader().Push(20)
		pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
		return pkt
	}
	rec := newRecorder(0)
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: im, Inbound: im}, false, rec)
	for i := range uint32(n) {
		write(t, e, mk(i))
		inject(ch, mk(i))
	}
	before := e.Stats()
	if before.Outbound.Pending == 0 || before.Inbound.Pending == 0 {
		t.Fatalf("nothing pending before Close: %+v", before)
	}
	// A packet whose first copy was corrupted is held only as a clone
	// (its own PacketBuffer sharing the chunks), so the original's
	// OnRelease has already run; every other original is still held.
	early := 0
	for _, stream := range []uint64{outboundStream, inboundStream} {
		for _, f := range replay(im, testSeed, stream, sizes(n, 120), 0) {
			if f.copies[0].corrupt {
				early++
			}
		}
	}
	if got := released.Load(); got != int64(early) {
		t.Fatalf("%d originals released before Close, want the %d corrupted ones", got, early)
	}
	e.Close()
	e.Wait()
	after := e.Stats()
	for dir, p := range map[string][2]DirectionStats{"outbound": {before.Outbound, after.Outbound}, "inbound": {before.Inbound, after.Inbound}} {
		if p[1].Pending != 0 || p[1].DroppedClosed != p[0].Pending || p[1].Passed != 0 {
			t.Errorf("%s: before %+v after %+v; want all %d pending released at Close", dir, p[0], p[1], p[0].Pending)
		}
		balance(t, dir, p[1])
	}
	if got := released.Load(); got != 2*n {
		t.Errorf("released %d originals, want %d", got, 2*n)
	}
	// checkLeaks, at cleanup, proves the clones were released too.
}

func TestDetachStopsAndReattachRestarts(t *testing.T) {
	rec := newRecorder(0)
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: Impairments{Delay: time.Hour}}, false, rec)
	for i := range uint32(10) {
		write(t, e, rawPacket(i, 32))
	}
	e.Attach(nil)
	s := e.Stats().Outbound
	if s.Pending != 0 || s.DroppedClosed != 10 {
		t.Errorf("after detach: %+v, want 10 released", s)
	}
	var l stack.PacketBufferList
	l.PushBack(rawPacket(99, 32))
	if _, err := e.WritePackets(l); !isClosedForSend(err) {
		t.Errorf("WritePackets while detached: %v, want ErrClosedForSend", err)
	}
	l.DecRef()

	e.Attach(rec)
	if !e.IsAttached() {
		t.Fatal("not attached")
	}
	write(t, e, rawPacket(100, 32))
	if s := e.Stats().Outbound; s.Pending != 1 {
		t.Errorf("after reattach: %+v, want 1 pending", s)
	}
	if ch.NumQueued() != 0 {
		t.Errorf("a packet passed a one-hour delay")
	}
}

func TestClosedEndpointRefuses(t *testing.T) {
	im := Impairments{Loss: 0.1}
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: im, Inbound: im}, false, nil)
	e.Close()
	e.Close() // idempotent
	var l stack.PacketBufferList
	l.PushBack(rawPacket(1, 32))
	if n, err := e.WritePackets(l); n != 0 || !isClosedForSend(err) {
		t.Errorf("WritePackets after Close = %d, %v; want 0, ErrClosedForSend", n, err)
	}
	l.DecRef()
	inject(ch, rawPacket(2, 32))
	s := e.Stats()
	if s.Outbound.DroppedClosed != 1 || s.Inbound.DroppedClosed != 1 {
		t.Errorf("stats %+v, want one DroppedClosed each way", s)
	}
}

func TestConcurrentTrafficBalances(t *testing.T) {
	im := Impairments{
		Loss: 0.02, Duplicate: 0.02, Reorder: 0.05, ReorderTimeout: time.Millisecond,
		Corrupt: 0.01, Delay: time.Millisecond, Jitter: time.Millisecond, Rate: 1_000_000_000,
	}
	rec := newRecorder(0)
	e, ch := newLink(t, Config{Seed: testSeed, Outbound: im, Inbound: im}, false, rec)
	ctx, cancel := context.WithCancel(context.Background())
	var drained atomic.Int64
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for pkt := ch.ReadContext(ctx); pkt != nil; pkt = ch.ReadContext(ctx) {
			pkt.DecRef()
			drained.Add(1)
		}
	}()
	readers.Add(1)
	go func() { // Stats while traffic flows
		defer readers.Done()
		for ctx.Err() == nil {
			_ = e.Stats()
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}()
	const writers, per = 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range per {
				var l stack.PacketBufferList
				l.PushBack(udp4Packet(uint32(w*per+i), i%500, 0))
				e.WritePackets(l)
				l.DecRef()
			}
		}()
		go func() {
			defer wg.Done()
			for i := range per {
				wire := udp4Packet(uint32(w*per+i), i%500, 0)
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(bytesOf(wire))})
				wire.DecRef()
				inject(ch, pkt)
			}
		}()
	}
	wg.Wait()
	e.Close()
	cancel()
	readers.Wait()
	ch.Drain()
	rec.drainRecords()
	s := e.Stats()
	for dir, d := range map[string]DirectionStats{"outbound": s.Outbound, "inbound": s.Inbound} {
		if d.In != writers*per || d.Pending != 0 {
			t.Errorf("%s: %+v, want In %d and nothing pending", dir, d, writers*per)
		}
		balance(t, dir, d)
	}
	if got := drained.Load(); got > int64(s.Outbound.Passed) {
		t.Errorf("inner link got %d packets, more than the %d passed", got, s.Outbound.Passed)
	}
}

func isClosedForSend(err tcpip.Error) bool {
	_, ok := err.(*tcpip.ErrClosedForSend)
	return ok
}
