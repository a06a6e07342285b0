package iperf3

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// perfRun is the data-moving part of a perf test, the same on the client
// and the server: the streams, the window in which bytes count, the
// interval samples and the final counts.
//
//  1. The role (client or server) sets the streams up and calls begin.
//  2. Each stream runs on its own goroutine: a sender fills blocks straight
//     into the transmit buffer (paced to the target bitrate), a receiver
//     counts and releases what arrives; UDP receivers also track loss,
//     reordering and jitter (RFC 1889, as iperf3 does).
//  3. A reporter samples the counters every interval.
//  4. stop closes the counting window, stops the senders and waits for them;
//     receivers keep draining until their sockets close, without counting,
//     so a peer that is still sending never blocks.
//  5. finish closes the sockets and waits for everything.
type perfRun struct {
	spec     Spec
	tr       transport.Transport
	interval time.Duration
	// sender says this side sends (client without -R, server with it);
	// with Spec.Bidir, on the first Streams streams (the client's) and
	// receives on the rest (perfStream.send).
	sender   bool
	pattern  []byte
	unfilled bool // TCP sends write nothing (ServerConfig.Unfilled)

	streams []*perfStream // fixed once begin is called

	// counting is true between begin and stop: iperf3 counts only while the
	// test is running.
	counting atomic.Bool
	// limit is closed when a byte or block limit (num, blockcount) is met.
	limit     chan struct{}
	limitOnce sync.Once
	// totals across streams, for the limits.
	totalBytes, totalBlocks atomic.Uint64

	ctx        context.Context // senders' and receivers' calls; cancelled by stop (senders) and finish (all)
	cancel     context.CancelFunc
	sendCtx    context.Context
	sendCancel context.CancelFunc
	sendWG     sync.WaitGroup
	recvWG     sync.WaitGroup
	repWG      sync.WaitGroup
	repStop    chan struct{} // closed by stop once the senders are done

	start, end      time.Time
	cpuUser, cpuSys time.Duration // at begin
	cpu             cpuUsage      // over the test, set by stop
	retrBase        uint64        // transport-wide retransmits at begin
	retrEnd         uint64
	// copyBase is the transport's copy counters at begin; copyDelta their
	// growth over the test (nil over kernel sockets).
	copyBase, copyDelta *transport.CopyBudget
	retrKnown           bool

	mu        sync.Mutex
	samples   []intervalSample // +checklocks:mu
	onSample  func(intervalSample)
	firstErr  error // +checklocks:mu; a stream's unexpected error
	omitUntil time.Time
}

// perfStream is one stream of a test.
type perfStream struct {
	id     int
	conn   transport.Conn       // TCP
	pc     transport.PacketConn // UDP: the client's connected socket or the server's shared one
	peer   netip.AddrPort       // UDP on the server: the client's address
	local  netip.AddrPort
	remote netip.AddrPort
	// ownsPC says whether finish closes pc (not the server's shared one).
	ownsPC bool
	// send says this side sends on the stream (perfRun.sender, but for the
	// second half of a bidirectional test's streams).
	send bool

	bytes, blocks atomic.Uint64 // counted payload bytes and sends
	omitBytes     atomic.Uint64 // bytes counted before the omit period ended
	packets       atomic.Uint64 // UDP datagrams sent (sender)

	mu  sync.Mutex
	udp udpRecvState // +checklocks:mu

	retrBase int64 // the connection's retransmits at begin (kernel), or -1
	retrEnd  int64
	lastRetr int64 // at the last sample
}

// udpRecvState is a UDP receiver's view of a stream (iperf_udp_recv).
type udpRecvState struct {
	packetCount uint64  // highest sequence number seen
	cntError    int64   // datagrams missing (gaps less late arrivals)
	outOfOrder  int64   // datagrams that arrived after a later one
	jitter      float64 // seconds, smoothed (RFC 1889 A.8)
	prevTransit float64
	first       bool // a datagram has been counted
	// counts at the last sample, for interval lines
	lastPackets uint64
	lastErrors  int64
}

// intervalSample is one reporting interval, summed over streams.
type intervalSample struct {
	start, end  time.Duration // since the test began
	bytes       uint64
	retransmits int64 // -1: unknown
	packets     uint64
	lost        int64
	jitter      float64 // seconds, mean over streams (UDP receivers)
	omitted     bool
	perStream   []uint64
}

// cpuUsage is the process's CPU use over the test, in percent of one CPU
// as iperf3 reports it.
type cpuUsage struct{ total, user, system float64 }

func newPerfRun(spec Spec, tr transport.Transport, sender bool, interval time.Duration) *perfRun {
	r := &perfRun{spec: spec, tr: tr, sender: sender, interval: interval, limit: make(chan struct{}), repStop: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.sendCtx, r.sendCancel = context.WithCancel(r.ctx)
	// Fill parts are at most transport.MaxFillPart bytes, and a UDP datagram at most
	// MaxUDPBlock: one pattern serves every block.
	r.pattern = make([]byte, transport.MaxFillPart)
	rand.Read(r.pattern)
	return r
}

// addTCP adds a TCP stream; the run owns c from now on.
func (r *perfRun) addTCP(c transport.Conn) *perfStream {
	st := &perfStream{id: streamID(len(r.streams)), send: r.nextSends(), conn: c, local: c.LocalAddr(), remote: c.RemoteAddr(), retrBase: -1}
	r.streams = append(r.streams, st)
	return st
}

// addUDP adds a UDP stream on pc; own says whether the run closes pc.
func (r *perfRun) addUDP(pc transport.PacketConn, peer, remote netip.AddrPort, own bool) *perfStream {
	st := &perfStream{id: streamID(len(r.streams)), send: r.nextSends(), pc: pc, peer: peer, local: pc.LocalAddr(), remote: remote, ownsPC: own, retrBase: -1}
	r.streams = append(r.streams, st)
	return st
}

// nextSends says whether this side sends on the next stream added: as its
// role says, except on the second half of a bidirectional test's streams,
// where the client's first Streams streams send and the rest receive.
func (r *perfRun) nextSends() bool {
	return r.sender != (r.spec.Bidir && len(r.streams) >= r.spec.Streams)
}

// sends reports whether this side sends on any stream.
func (r *perfRun) sends() bool { return r.sender || r.spec.Bidir }

// begin opens the counting window and starts the streams and the
// reporter. sharedUDPReader says that UDP receiving is done by the caller
// (the server's shared socket), which calls udpReceive.
func (r *perfRun) begin(sharedUDPReader bool) {
	r.start = time.Now()
	r.cpuUser, r.cpuSys = cpuTimes()
	if r.spec.Omit > 0 {
		r.omitUntil = r.start.Add(time.Duration(r.spec.Omit) * time.Second)
	}
	r.copyBase = r.tr.CopyBudget()
	r.retrBase, r.retrKnown = r.tr.TCPRetransmits()
	r.retrKnown = r.retrKnown && !r.spec.UDP
	for _, st := range r.streams {
		if st.conn != nil {
			st.retrBase = st.conn.Retransmits()
			st.lastRetr = st.retrBase
		}
		st.udp.first = false
	}
	r.counting.Store(true)
	for _, st := range r.streams {
		switch {
		case st.send:
			r.sendWG.Add(1)
			go r.send(st)
		case st.conn != nil:
			r.recvWG.Add(1)
			go r.recvTCP(st)
		case !sharedUDPReader:
			r.recvWG.Add(1)
			go r.recvUDP(st)
		}
	}
	r.repWG.Add(1)
	go r.report()
}

// stop closes the counting window and stops the senders, and waits for
// them; receivers go on draining without counting until finish.
func (r *perfRun) stop() {
	if !r.counting.Swap(false) {
		return
	}
	r.end = time.Now()
	u, s := cpuTimes()
	if secs := r.end.Sub(r.start).Seconds(); secs > 0 {
		r.cpu.user = 100 * (u - r.cpuUser).Seconds() / secs
		r.cpu.system = 100 * (s - r.cpuSys).Seconds() / secs
		r.cpu.total = r.cpu.user + r.cpu.system
	}
	r.retrEnd, _ = r.tr.TCPRetransmits()
	for _, st := range r.streams {
		if st.conn != nil {
			st.retrEnd = st.conn.Retransmits()
		}
	}
	r.sendCancel()
	r.sendWG.Wait()
	// After the senders: every block they booked is in the budget.
	if end := r.tr.CopyBudget(); end != nil && r.copyBase != nil {
		r.copyDelta = &transport.CopyBudget{RxHandedOver: end.RxHandedOver - r.copyBase.RxHandedOver, RxCopied: end.RxCopied - r.copyBase.RxCopied,
			TxInPlace: end.TxInPlace - r.copyBase.TxInPlace, TxCopied: end.TxCopied - r.copyBase.TxCopied}
	}
	close(r.repStop)
	r.repWG.Wait()
}

// finish closes every stream's socket and waits for the receivers.
func (r *perfRun) finish() {
	r.stop()
	r.cancel()
	for _, st := range r.streams {
		if st.conn != nil {
			st.conn.Close()
		}
		if st.pc != nil && st.ownsPC {
			st.pc.Close()
		}
	}
	r.recvWG.Wait()
}

// elapsed is the length of the counting window (so far, while it is open).
func (r *perfRun) elapsed() time.Duration {
	if r.counting.Load() || r.end.IsZero() {
		return time.Since(r.start)
	}
	return r.end.Sub(r.start)
}

// fail records a stream's unexpected error.
func (r *perfRun) fail(err error) {
	if err == nil || r.ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return
	}
	r.mu.Lock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.mu.Unlock()
}

func (r *perfRun) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstErr
}

// limitReached closes limit once.
func (r *perfRun) limitReached() { r.limitOnce.Do(func() { close(r.limit) }) }

// count books n received bytes of st while the window is open. It reports
// whether the window is open.
func (r *perfRun) count(st *perfStream, n int) bool {
	if !r.counting.Load() {
		return false
	}
	r.book(st, n)
	return true
}

// book adds n bytes (one block) to st and checks the limits. Senders book
// every block they send: they only send while the test runs, and stop
// waits for them, as iperf3's single thread does.
func (r *perfRun) book(st *perfStream, n int) {
	st.bytes.Add(uint64(n))
	st.blocks.Add(1)
	tb := r.totalBytes.Add(uint64(n))
	tk := r.totalBlocks.Add(1)
	if (r.spec.Bytes > 0 && tb >= r.spec.Bytes) || (r.spec.Blocks > 0 && tk >= r.spec.Blocks) {
		r.limitReached()
	}
}

// atLimit reports whether a sender has sent what num or blockcount asked.
func (r *perfRun) atLimit() bool {
	return (r.spec.Bytes > 0 && r.totalBytes.Load() >= r.spec.Bytes) || (r.spec.Blocks > 0 && r.totalBlocks.Load() >= r.spec.Blocks)
}

// send runs a sender: TCP blocks or UDP datagrams, paced to the target
// bitrate (per stream, as iperf3's -b), until stop.
func (r *perfRun) send(st *perfStream) {
	defer r.sendWG.Done()
	ctx := r.sendCtx
	var timer *time.Timer
	var sentAll uint64 // bytes sent, counted or not, for pacing
	rate := r.spec.Rate
	if r.spec.UDP && rate == 0 {
		rate = DefaultUDPRate
	}
	var pace *pacer
	if rate > 0 {
		pace = newPacer(rate, time.Now())
	}
	n := r.spec.BlockSize
	var fill func([]byte) int
	var seq uint64
	if r.spec.UDP {
		dgram := make([]byte, n)
		copy(dgram, r.pattern)
		hdr := r.spec.udpHeaderLen()
		off := 0
		fill = func(p []byte) int {
			if off == 0 {
				now := time.Now()
				putUDPHeader(dgram[:hdr], uint32(now.Unix()), uint32(now.Nanosecond()/1000), seq, r.spec.Counters64)
			}
			m := copy(p, dgram[off:])
			off += m
			if off == len(dgram) {
				off = 0
			}
			return m
		}
	} else if r.unfilled {
		fill = func(p []byte) int { return len(p) }
	} else {
		fill = func(p []byte) int { return copy(p, r.pattern) }
	}
	for ctx.Err() == nil {
		if r.atLimit() {
			r.limitReached()
			return
		}
		if pace != nil {
			if d := pace.delay(time.Now(), sentAll); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
					defer timer.Stop()
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
		}
		var m int
		var err error
		if r.spec.UDP {
			seq++
			m, err = st.pc.SendTo(ctx, n, fill, st.peer)
			if m > 0 {
				st.packets.Store(seq)
			}
		} else {
			m, err = st.conn.Send(ctx, n, fill)
		}
		sentAll += uint64(m)
		if m > 0 {
			r.book(st, m)
		}
		if err != nil {
			if !r.spec.UDP || !isTransientUDP(err) {
				r.fail(err)
				return
			}
		}
	}
}

// pacer spaces a sender's blocks to a bitrate, as iperf3's -b does: a
// token bucket that fills at the rate from the sender's start and holds at
// most maxPacingBurst's worth.
type pacer struct {
	bytesPerSec float64
	start       time.Time // when the bucket was empty, moved on by forgiven lag
}

func newPacer(bitsPerSec uint64, start time.Time) *pacer {
	return &pacer{bytesPerSec: float64(bitsPerSec) / 8, start: start}
}

// delay returns how long a sender that has sent sent bytes since the start
// waits at now before it sends more (zero or less: send now).
func (p *pacer) delay(now time.Time, sent uint64) time.Duration {
	due := p.start.Add(time.Duration(float64(sent) / p.bytesPerSec * float64(time.Second)))
	if lag := now.Sub(due); lag > maxPacingBurst {
		// A sender that fell behind (descheduled, blocked) catches up by
		// at most maxPacingBurst at once: an unbounded debt, repaid in
		// one burst, would overrun the receiver's socket buffer.
		p.start = p.start.Add(lag - maxPacingBurst)
		due = now.Add(-maxPacingBurst)
	}
	return due.Sub(now)
}

// maxPacingBurst bounds how far behind its schedule a paced sender may be
// before it gives up on the lag: after a stall it sends at most this much
// time's worth at once (at 20 Mbit/s, 17 datagrams of 1460 bytes), where an
// unbounded catch-up would overrun the receiver's socket buffer.
const maxPacingBurst = 10 * time.Millisecond

// isTransientUDP reports a send error a UDP sender rides out (a full
// socket buffer), as iperf3 does.
func isTransientUDP(err error) bool {
	return errors.Is(err, syscall.ENOBUFS)
}

// recvTCP counts and releases what a TCP stream receives.
func (r *perfRun) recvTCP(st *perfStream) {
	defer r.recvWG.Done()
	for {
		ch, err := st.conn.Recv(r.ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) && r.counting.Load() {
				r.fail(err)
			}
			return
		}
		if r.count(st, len(ch.Bytes())) {
			r.checkReceiveLimit()
		}
		ch.Release()
	}
}

// checkReceiveLimit ends a receiving client's test once num bytes or
// blockcount blocks (of blksize) have arrived.
func (r *perfRun) checkReceiveLimit() {
	tb := r.totalBytes.Load()
	if (r.spec.Bytes > 0 && tb >= r.spec.Bytes) || (r.spec.Blocks > 0 && tb >= r.spec.Blocks*uint64(r.spec.BlockSize)) {
		r.limitReached()
	}
}

// recvUDP reads a client's connected UDP socket.
func (r *perfRun) recvUDP(st *perfStream) {
	defer r.recvWG.Done()
	for {
		ch, _, err := st.pc.RecvFrom(r.ctx)
		if err != nil {
			if r.counting.Load() {
				r.fail(err)
			}
			return
		}
		r.udpReceive(st, ch.Bytes(), time.Now())
		ch.Release()
	}
}

// udpReceive books one datagram of st that arrived at arrival
// (iperf_udp_recv: loss from sequence gaps, late arrivals offsetting them,
// jitter per RFC 1889 §6.3.1 and A.8).
func (r *perfRun) udpReceive(st *perfStream, p []byte, arrival time.Time) {
	if len(p) == len(udpConnectMsg) {
		return // a set-up datagram repeated or overtaken by data
	}
	sec, usec, seq, ok := parseUDPHeader(p, r.spec.Counters64)
	if !ok || !r.count(st, len(p)) {
		return
	}
	r.checkReceiveLimit()
	sent := time.Unix(int64(sec), int64(usec)*1000)
	transit := arrival.Sub(sent).Seconds()
	st.mu.Lock()
	defer st.mu.Unlock()
	u := &st.udp
	if seq >= u.packetCount+1 {
		if seq > u.packetCount+1 {
			u.cntError += int64(seq - 1 - u.packetCount)
		}
		u.packetCount = seq
	} else {
		u.outOfOrder++
		if u.cntError > 0 {
			u.cntError--
		}
	}
	if !u.first {
		u.first = true
		u.prevTransit = transit
	}
	d := math.Abs(transit - u.prevTransit)
	u.prevTransit = transit
	u.jitter += (d - u.jitter) / 16
}

// report samples the counters every interval until stop, and once more
// at stop for the last, partial interval (if it is more than a tenth of
// one).
func (r *perfRun) report() {
	defer r.repWG.Done()
	if r.interval <= 0 {
		<-r.repStop
		return
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	smp := sampler{r: r, last: make([]uint64, len(r.streams)), lastRetr: r.retrBase}
	for {
		select {
		case <-r.repStop:
			// stop set r.end before closing repStop. A last interval of
			// less than a tenth is folded into the one before, so the
			// intervals always add up to the summary.
			smp.sample(r.end, r.end.Sub(r.start)-smp.lastAt < r.interval/10)
			return
		case now := <-t.C:
			if !r.counting.Load() {
				continue // stop is on its way
			}
			smp.sample(now, false)
		}
	}
}

// sampler turns counters into interval samples; used by report only.
type sampler struct {
	r        *perfRun
	last     []uint64
	lastAt   time.Duration
	lastRetr uint64
}

// sample takes the counters' growth since the last sample as a new
// interval, or, with fold, adds it to the last one.
func (smp *sampler) sample(now time.Time, fold bool) {
	r := smp.r
	at := now.Sub(r.start)
	s := intervalSample{start: smp.lastAt, end: at, retransmits: -1, perStream: make([]uint64, len(r.streams))}
	// A sample that ends in the omit period (give or take half a tick) is
	// omitted, as iperf3 does with -O.
	s.omitted = !r.omitUntil.IsZero() && now.Before(r.omitUntil.Add(r.interval/2))
	var jit float64
	var nj int
	for i, st := range r.streams {
		b := st.bytes.Load()
		s.perStream[i] = b - smp.last[i]
		s.bytes += b - smp.last[i]
		smp.last[i] = b
		if !r.spec.UDP {
			continue
		}
		st.mu.Lock()
		if st.send {
			p := st.packets.Load()
			s.packets += p - st.udp.lastPackets
			st.udp.lastPackets = p
		} else {
			s.packets += st.udp.packetCount - st.udp.lastPackets
			s.lost += st.udp.cntError - st.udp.lastErrors
			st.udp.lastPackets, st.udp.lastErrors = st.udp.packetCount, st.udp.cntError
			jit += st.udp.jitter
			nj++
		}
		st.mu.Unlock()
	}
	if nj > 0 {
		s.jitter = jit / float64(nj)
	}
	if r.sends() && !r.spec.UDP {
		s.retransmits = r.sampleRetransmits(&smp.lastRetr)
	}
	if s.omitted {
		// What came before the omit period ended is not reported
		// (iperf3's bytes_sent_omit).
		for i, st := range r.streams {
			st.omitBytes.Store(smp.last[i])
		}
	}
	smp.lastAt = at
	r.mu.Lock()
	if n := len(r.samples); fold && n > 0 {
		l := &r.samples[n-1]
		l.end = s.end
		l.bytes += s.bytes
		l.packets += s.packets
		l.lost += s.lost
		if l.retransmits >= 0 && s.retransmits >= 0 {
			l.retransmits += s.retransmits
		}
		for i := range l.perStream {
			l.perStream[i] += s.perStream[i]
		}
		r.mu.Unlock()
		return
	}
	r.samples = append(r.samples, s)
	r.mu.Unlock()
	if r.onSample != nil {
		r.onSample(s)
	}
}

// sampleRetransmits returns the retransmits since the last sample: per
// connection where the transport knows them, else the transport's total.
func (r *perfRun) sampleRetransmits(last *uint64) int64 {
	var sum int64
	known := false
	for _, st := range r.streams {
		if st.conn == nil {
			continue
		}
		if n := st.conn.Retransmits(); n >= 0 {
			sum += n - st.lastRetr
			st.lastRetr = n
			known = true
		}
	}
	if known {
		return sum
	}
	if n, ok := r.tr.TCPRetransmits(); ok {
		d := int64(n - *last)
		*last = n
		return d
	}
	return -1
}

// streamResult is one stream's final counts on this side.
type streamResult struct {
	id          int
	sends       bool // this side sent on the stream
	bytes       uint64
	seconds     float64
	retransmits int64 // -1 unknown or not a TCP sender
	packets     uint64
	lost        int64
	outOfOrder  int64
	jitter      float64 // seconds
}

// results returns the streams' final counts on this side. TCP
// retransmits come per connection (kernel) or, for zcnet, as the
// stack-wide count, attributed to the first stream so the sum is right.
func (r *perfRun) results() []streamResult {
	secs := r.elapsed().Seconds()
	if !r.omitUntil.IsZero() {
		secs = max(secs-float64(r.spec.Omit), 0)
	}
	out := make([]streamResult, len(r.streams))
	firstSender := true
	for i, st := range r.streams {
		res := streamResult{id: st.id, sends: st.send, bytes: st.bytes.Load() - st.omitBytes.Load(), seconds: secs, retransmits: -1}
		if r.spec.UDP {
			if st.send {
				res.packets = st.packets.Load()
			} else {
				st.mu.Lock()
				res.packets, res.lost, res.outOfOrder, res.jitter = st.udp.packetCount, st.udp.cntError, st.udp.outOfOrder, st.udp.jitter
				st.mu.Unlock()
			}
		} else if st.send {
			switch {
			case st.retrBase >= 0 && st.retrEnd >= 0:
				res.retransmits = st.retrEnd - st.retrBase
			case r.retrKnown && firstSender:
				res.retransmits = int64(r.retrEnd - r.retrBase)
			case r.retrKnown:
				res.retransmits = 0
			}
			firstSender = false
		}
		out[i] = res
	}
	return out
}

// hasRetransmits says whether this side, as the sender, reports them.
func (r *perfRun) hasRetransmits() bool {
	if !r.sends() || r.spec.UDP {
		return false
	}
	if r.retrKnown {
		return true
	}
	for _, st := range r.streams {
		if st.retrBase >= 0 {
			return true
		}
	}
	return false
}

// Results is what this side sends in EXCHANGE_RESULTS.
func (r *perfRun) Results() Results {
	res := Results{
		CPUUtilTotal: r.cpu.total, CPUUtilUser: r.cpu.user, CPUUtilSystem: r.cpu.system,
		SenderHasRetransmits: -1,
	}
	if r.sends() {
		res.SenderHasRetransmits = 0
		if r.hasRetransmits() {
			res.SenderHasRetransmits = 1
		}
	}
	for _, s := range r.results() {
		res.Streams = append(res.Streams, StreamJSON{
			ID: float64(s.id), Bytes: float64(s.bytes), Retransmits: float64(s.retransmits),
			Jitter: s.jitter, Errors: float64(s.lost), Packets: float64(s.packets),
			StartTime: 0, EndTime: s.seconds,
		})
	}
	if res.Streams == nil {
		res.Streams = []StreamJSON{}
	}
	return res
}

// samplesCopy returns the interval samples so far.
func (r *perfRun) samplesCopy() []intervalSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]intervalSample(nil), r.samples...)
}

// connected describes the streams' sockets for the JSON report.
func (r *perfRun) connected() []ReportConnected {
	var out []ReportConnected
	for _, st := range r.streams {
		out = append(out, ReportConnected{Socket: st.id, LocalHost: st.local.Addr().String(), LocalPort: st.local.Port(),
			RemoteHost: st.remote.Addr().String(), RemotePort: st.remote.Port()})
	}
	return out
}
