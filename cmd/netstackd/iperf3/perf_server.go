package iperf3

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// Server is an iperf3 server on a transport: one test at a time, as
// iperf3 runs them; a client that connects while a test runs gets
// ACCESS_DENIED ("the server is busy"). Stream connections are told apart
// from control connections by their cookie.
type Server struct {
	cfg ServerConfig
	tr  transport.Transport
	ln  transport.Listener

	wg sync.WaitGroup // the accept loop's helpers and the tests

	mu       sync.Mutex
	cur      *serverTest // +checklocks:mu; the running test, nil when idle
	accepted uint64      // +checklocks:mu; connections accepted, numbering them in order

	tests, failed     atomic.Uint64
	bytesIn, bytesOut atomic.Uint64
	denied            atomic.Uint64
	lastBitsPerSecond atomic.Uint64
	closed            atomic.Bool
	oneOffDone        chan struct{}
	oneOffOnce        sync.Once
}

// ServerConfig configures a perf server.
type ServerConfig struct {
	// Addr is the address to listen on; the zero Addr is every address.
	Addr netip.Addr
	Port uint16
	Log  *slog.Logger
	// Out, if set, receives each test's progress lines and summary (the
	// standalone server); JSON prints the JSON report instead.
	Out      io.Writer
	JSON     bool
	Interval time.Duration
	// OneOff ends Serve after the first test (iperf3 -s -1).
	OneOff bool
	// Timeout bounds each control-connection step and stream set-up.
	Timeout time.Duration
	// Unfilled makes TCP sends (reverse tests) leave the transmit buffer as
	// it is instead of writing a pattern into it, as a sender of page-cache
	// data writes nothing itself: the send costs the stack's work only.
	Unfilled bool
}

// ServerStats are the server's counters, for the status page and
// metrics.
type ServerStats struct {
	Tests             uint64 `json:"tests"`
	Failed            uint64 `json:"failed"`
	Denied            uint64 `json:"denied"`
	BytesReceived     uint64 `json:"bytes_received"`
	BytesSent         uint64 `json:"bytes_sent"`
	LastBitsPerSecond uint64 `json:"last_bits_per_second"`
	Running           bool   `json:"running"`
}

// DefaultTimeout bounds a control step: generous, since a client may
// pause between steps (iperf3 has no bound at all).
const DefaultTimeout = 30 * time.Second

// perfGrace is how long past its duration a test may run before the server
// ends it (iperf3 allows 4 s for each of 10 state changes).
const perfGrace = 40 * time.Second

// NewServer listens on cfg.Addr and cfg.Port (default Port) of tr; Serve
// runs the tests.
func NewServer(tr transport.Transport, cfg ServerConfig) (*Server, error) {
	if cfg.Port == 0 {
		cfg.Port = Port
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	ln, err := tr.ListenTCP(netip.AddrPortFrom(cfg.Addr, cfg.Port))
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, tr: tr, ln: ln, oneOffDone: make(chan struct{})}, nil
}

// Addr is the listening address.
func (s *Server) Addr() netip.AddrPort { return s.ln.Addr() }

// Close stops accepting; Serve returns once running tests have ended
// (ctx's cancellation ends them).
func (s *Server) Close() error {
	s.closed.Store(true)
	return s.ln.Close()
}

// Stats returns the server's counters so far.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	running := s.cur != nil
	s.mu.Unlock()
	return ServerStats{Tests: s.tests.Load(), Failed: s.failed.Load(), Denied: s.denied.Load(),
		BytesReceived: s.bytesIn.Load(), BytesSent: s.bytesOut.Load(), LastBitsPerSecond: s.lastBitsPerSecond.Load(), Running: running}
}

// Serve accepts connections until ctx ends or Close, then waits for the
// running test to end. With OneOff it returns after the first test.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	go func() {
		select {
		case <-s.oneOffDone:
			s.ln.Close()
		case <-ctx.Done():
		}
	}()
	for {
		c, err := s.ln.Accept(ctx)
		if err != nil {
			select {
			case <-s.oneOffDone:
				return nil
			default:
			}
			if ctx.Err() != nil || s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		seq := s.accepted
		s.accepted++
		s.mu.Unlock()
		s.dispatch(ctx, c, seq)
	}
}

// busyWait is how long a control connection that arrives while a test is
// current waits for that test to end before it is told the server is
// busy. Stock iperf3's server, single-threaded, finishes a test before it
// looks at the next connection, so a client that starts right after
// another ended (or was interrupted) is served, not refused; the wait
// covers this server's clean-up of the test before.
const busyWait = 2 * time.Second

// dispatch hands an accepted connection to the current test (a stream),
// makes it the control connection of a new test, or refuses it.
func (s *Server) dispatch(ctx context.Context, c transport.Conn, seq uint64) {
	s.mu.Lock()
	t := s.cur
	if t == nil {
		t = &serverTest{s: s, ctrl: c, streams: make(chan acceptedStream, 2*MaxStreams), done: make(chan struct{})}
		s.cur = t
	}
	s.mu.Unlock()
	s.wg.Add(1)
	switch {
	case t.ctrl == c:
		go func() {
			defer s.wg.Done()
			t.run(ctx)
			s.mu.Lock()
			s.cur = nil
			s.mu.Unlock()
			close(t.done)
			if s.cfg.OneOff {
				s.oneOffOnce.Do(func() { close(s.oneOffDone) })
			}
		}()
	case t.wantsStreams():
		go func() {
			defer s.wg.Done()
			t.offerStream(ctx, c, seq)
		}()
	default:
		go func() {
			defer s.wg.Done()
			wait := time.NewTimer(busyWait)
			defer wait.Stop()
			select {
			case <-t.done:
				if !s.cfg.OneOff {
					s.dispatch(ctx, c, seq)
					return
				}
			case <-wait.C:
			case <-ctx.Done():
			}
			s.deny(ctx, c)
		}()
	}
}

// deny answers a connection that comes while a test runs with
// ACCESS_DENIED, without reading from it (iperf_accept).
func (s *Server) deny(ctx context.Context, c transport.Conn) {
	s.denied.Add(1)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	cc := newCtrlConn(ctx, c)
	cc.writeState(stAccessDenied)
	drainAndClose(ctx, cc)
}

// drainAndClose reads what the peer sent first (its cookie), for up to a
// second, before closing: closing with unread data would reset the
// connection, and a reset can overtake the answer.
func drainAndClose(ctx context.Context, cc *ctrlConn) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cc.rctx = rctx
	cc.readCookie()
	cc.c.Close()
}

// serverTest is one test on the server side.
type serverTest struct {
	s    *Server
	ctrl transport.Conn // the control connection; immutable

	mu        sync.Mutex
	accepting bool                // +checklocks:mu; the test takes stream connections
	cookie    [cookieLen]byte     // +checklocks:mu; the test's, set before accepting
	streams   chan acceptedStream // stream connections whose cookie matched; sent to under mu

	booked bool // the test's goroutine has counted the test

	done chan struct{} // closed once the test has ended and the server is free
}

// acceptedStream is a stream connection and its place in the accept
// order. The client opens its streams one after another, and with
// --bidir their order says which way each one goes; the cookies are read
// concurrently, so the test puts the streams back in accept order.
type acceptedStream struct {
	c   transport.Conn
	seq uint64
}

// wantsStreams reports whether the test is taking stream connections.
func (t *serverTest) wantsStreams() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.accepting
}

// offerStream reads a connection's cookie: a stream of this test is passed
// on, anything else gets ACCESS_DENIED (iperf_tcp_accept).
func (t *serverTest) offerStream(ctx context.Context, c transport.Conn, seq uint64) {
	rctx, cancel := context.WithTimeout(ctx, t.s.cfg.Timeout)
	defer cancel()
	cc := newCtrlConn(rctx, c)
	cookie, err := cc.readCookie()
	if err == nil {
		t.mu.Lock()
		if t.accepting && cookie == t.cookie {
			select {
			case t.streams <- acceptedStream{c, seq}:
				t.mu.Unlock()
				return
			default: // more streams than the test asked for
			}
		}
		t.mu.Unlock()
	}
	t.s.denied.Add(1)
	cc.writeState(stAccessDenied) // the cookie has been read: close sends FIN
	c.Close()
}

// stopAccepting ends stream set-up and closes connections nobody took.
func (t *serverTest) stopAccepting() {
	t.mu.Lock()
	t.accepting = false
	t.mu.Unlock()
	for {
		select {
		case a := <-t.streams:
			a.c.Close()
		default:
			return
		}
	}
}

// run runs the test on its control connection and books its outcome.
func (t *serverTest) run(ctx context.Context) {
	s := t.s
	log := s.cfg.Log.With("peer", t.ctrl.RemoteAddr())
	defer t.ctrl.Close()
	out, err := t.exchange(ctx, log)
	if err != nil {
		s.failed.Add(1)
		switch {
		case errors.Is(err, errClientTerminated):
			log.Info("perf test ended by the client", "err", err)
		case ctx.Err() != nil && errors.Is(err, context.Canceled):
			// The server is closing (the daemon shuts down); the
			// client was sent SERVER_TERMINATE.
			log.Info("perf test stopped: the server is shutting down")
		default:
			log.Warn("perf test failed", "err", err)
		}
	}
	if out != nil && !t.booked {
		t.book(out, log)
	}
}

// book counts a test that moved data and reports it: a log line, and the
// summary or JSON report of a standalone server. The server books before
// it sends DISPLAY_RESULTS, so a client that has its results can read the
// server's counters.
func (t *serverTest) book(out *Outcome, log *slog.Logger) {
	s := t.s
	t.booked = true
	s.tests.Add(1)
	snd, rcv := out.sides()
	ts, tr := sum(snd), sum(rcv)
	here := tr
	switch {
	case out.spec.Bidir: // below
	case out.sender:
		here = ts
		s.bytesOut.Add(ts.bytes)
	default:
		s.bytesIn.Add(tr.bytes)
	}
	if out.spec.Bidir {
		sent, received := out.here()
		s.bytesOut.Add(sent.bytes)
		s.bytesIn.Add(received.bytes)
		here = received
	}
	s.lastBitsPerSecond.Store(uint64(here.bps()))
	attrs := []any{"proto", map[bool]string{false: "tcp", true: "udp"}[out.spec.UDP], "reverse", out.spec.Reverse,
		"streams", out.spec.Streams, "seconds", fmt.Sprintf("%.2f", here.seconds), "bytes", here.bytes, "bits_per_second", uint64(here.bps())}
	if out.spec.Bidir {
		sent, _ := out.here()
		attrs = append(attrs, "bidir", true, "bytes_sent", sent.bytes, "bits_per_second_sent", uint64(sent.bps()))
	}
	switch {
	case out.spec.UDP && out.spec.Bidir:
		_, rv := out.here() // the direction this side received
		attrs = append(attrs, "lost", rv.lost, "datagrams", rv.packets, "jitter_ms", fmt.Sprintf("%.3f", rv.jitter*1000))
	case out.spec.UDP && !out.sender:
		attrs = append(attrs, "lost", tr.lost, "datagrams", ts.packets, "jitter_ms", fmt.Sprintf("%.3f", tr.jitter*1000))
	}
	if !out.spec.UDP && ts.retransmits >= 0 {
		attrs = append(attrs, "retransmits", ts.retransmits)
	}
	log.Info("perf test done", attrs...)
	if w := s.cfg.Out; w != nil {
		if s.cfg.JSON {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(out.JSONReport())
		} else {
			out.WriteSummary(w)
		}
	}
}

// errClientTerminated reports a client that ended the test early.
var errClientTerminated = errors.New("the client ended the test")

// exchange runs the protocol's steps on the server's side
// (iperf_run_server). It returns the outcome once data has flowed, even
// if a later step failed, and the error.
func (t *serverTest) exchange(ctx context.Context, log *slog.Logger) (*Outcome, error) {
	s := t.s
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cc := newCtrlConn(tctx, t.ctrl)
	// timed bounds the synchronous reads of one step.
	timed := func() func() {
		c, cancel := context.WithTimeout(tctx, s.cfg.Timeout)
		cc.rctx = c
		return cancel
	}

	// 1. Cookie, then parameters.
	untime := timed()
	defer func() { untime() }()
	cookie, err := cc.readCookie()
	if err != nil {
		return nil, fmt.Errorf("reading the cookie: %w", err)
	}
	if err := cc.writeState(stParamExchange); err != nil {
		return nil, err
	}
	var params iperfParams
	if err := cc.readJSON(&params, maxParamsJSON); err != nil {
		return nil, fmt.Errorf("reading the parameters: %w", err)
	}
	spec, code, err := params.spec()
	if err != nil {
		cc.writeServerError(code, 0)
		return nil, fmt.Errorf("refused the parameters: %w", err)
	}
	log.Debug("perf test starting", "udp", spec.UDP, "reverse", spec.Reverse, "streams", spec.Streams,
		"len", spec.BlockSize, "time", spec.Duration, "bitrate", spec.Rate)

	// 2. Streams: TCP connections come through the accept loop, UDP
	// streams are datagrams on a socket of the test's own.
	run := newPerfRun(spec, s.tr, spec.Reverse, s.cfg.Interval)
	run.unfilled = s.cfg.Unfilled
	defer run.finish()
	if w := s.cfg.Out; w != nil && !s.cfg.JSON {
		dir := map[bool]string{false: "client sends", true: "server sends (-R)"}[spec.Reverse]
		if spec.Bidir {
			dir = "each way (--bidir)"
		}
		fmt.Fprintf(w, "Accepted connection from %v: %s, %d stream(s), %s\n", t.ctrl.RemoteAddr(),
			map[bool]string{false: "TCP", true: "UDP"}[spec.UDP], spec.Streams, dir)
		fmt.Fprintln(w, (&Outcome{spec: spec}).headerLine())
		label := "1"
		if spec.Streams > 1 {
			label = "SUM"
		}
		run.onSample = func(smp intervalSample) { fmt.Fprintln(w, intervalLine(spec, run.sender, label, smp)) }
	}
	var demux *udpDemux
	var udpPeers <-chan netip.AddrPort
	if spec.UDP {
		pc, err := s.tr.ListenUDP(netip.AddrPortFrom(netip.Addr{}, s.cfg.Port))
		if err != nil {
			cc.writeServerError(ieStreamListn, 0)
			return nil, fmt.Errorf("UDP socket: %w", err)
		}
		demux = newUDPDemux(pc, run)
		defer demux.close()
		udpPeers = demux.peers
	}
	t.mu.Lock()
	t.cookie, t.accepting = cookie, true
	t.mu.Unlock()
	defer t.stopAccepting()
	if err := cc.writeState(stCreateStreams); err != nil {
		return nil, err
	}
	// From here until TEST_END the client may speak at any time (it may
	// give up): one read of one state byte stays pending, on tctx.
	untime()
	cc.rctx, cc.wctx = tctx, tctx
	ar := asyncReader{cc: cc, msgs: make(chan stateOrErr, 1)}
	defer ar.wait()
	defer cancel() // runs before ar.wait: ends a pending read
	ar.next()
	setup := time.NewTimer(s.cfg.Timeout)
	defer setup.Stop()
	var tcp []acceptedStream // until all are in, then added in accept order
	defer func() {
		for _, a := range tcp {
			if a.c != nil {
				a.c.Close() // not taken over by the run
			}
		}
	}()
	for len(run.streams)+len(tcp) < spec.total() {
		select {
		case a := <-t.streams:
			tcp = append(tcp, a)
			if len(tcp) == spec.total() {
				sort.Slice(tcp, func(i, j int) bool { return tcp[i].seq < tcp[j].seq })
				for i := range tcp {
					run.addTCP(tcp[i].c)
					tcp[i].c = nil
				}
			}
		case peer := <-udpPeers:
			demux.add(run.addUDP(demux.pc, peer, peer, false))
		case m := <-ar.msgs:
			return nil, fmt.Errorf("%w while setting up streams: %v", errClientTerminated, m)
		case <-setup.C:
			cc.writeServerError(ieStreamAcc, 0)
			return nil, fmt.Errorf("only %d of %d streams arrived within %v", len(run.streams)+len(tcp), spec.total(), s.cfg.Timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	t.stopAccepting()

	// 3. Run until the client says TEST_END.
	if err := cc.writeState(stTestStart); err != nil {
		return nil, err
	}
	run.begin(demux != nil)
	if err := cc.writeState(stTestRunning); err != nil {
		return nil, err
	}
	limit := time.NewTimer(time.Duration(spec.Duration+spec.Omit)*time.Second + perfGrace)
	defer limit.Stop()
	for running := true; running; {
		select {
		case m := <-ar.msgs:
			switch {
			case m.err != nil:
				return nil, fmt.Errorf("%w: control connection: %v", errClientTerminated, m.err)
			case m.st == stTestEnd:
				running = false
			case m.st == stClientTerminate || m.st == stIperfDone:
				return nil, fmt.Errorf("%w (%v)", errClientTerminated, m.st)
			case m.st == stTestStart || m.st == stTestRunning:
				ar.next()
			default:
				return nil, fmt.Errorf("%w: unexpected %v while running", errIperfProtocol, m.st)
			}
		case <-limit.C:
			cc.writeState(stServerTerminate)
			return nil, fmt.Errorf("the client did not end the test within %v of its duration", perfGrace)
		case <-ctx.Done():
			wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
			cc.wctx = wctx
			cc.writeState(stServerTerminate)
			wcancel()
			return nil, ctx.Err()
		}
	}

	// 4. Stop, close the streams, exchange results.
	run.finish()
	if demux != nil {
		demux.close()
	}
	if err := run.err(); err != nil {
		log.Debug("a stream failed", "err", err)
	}
	out := &Outcome{spec: spec, role: "server", transport: s.tr.Name(), sender: run.sender, local: run.results(),
		cpu: run.cpu, samples: run.samplesCopy(), start: run.start, cookie: string(cookie[:cookieLen-1]),
		peerAddr: hostPort(t.ctrl.RemoteAddr()), connected: run.connected(), copy: run.copyDelta}
	untime = timed()
	if err := cc.writeState(stExchangeResults); err != nil {
		return out, err
	}
	if err := cc.readJSON(&out.peer, maxResultsJSON); err != nil {
		return out, fmt.Errorf("reading the client's results: %w", err)
	}
	res := run.Results()
	if spec.ServerOutput {
		doc, err := json.Marshal(out.JSONReport())
		if err == nil {
			res.ServerOutputJSON = doc
		}
	}
	if err := cc.writeJSON(res); err != nil {
		return out, err
	}
	t.book(out, log)
	if err := cc.writeState(stDisplayResults); err != nil {
		return out, err
	}
	// 5. The client answers IPERF_DONE and closes; either will do.
	if st, err := cc.readState(); err == nil && st != stIperfDone {
		log.Debug("unexpected state after DISPLAY_RESULTS", "state", st)
	}
	return out, nil
}

// asyncReader keeps one read of one state byte pending on a control
// connection, for the phases in which the peer may speak at any time.
type asyncReader struct {
	cc   *ctrlConn
	msgs chan stateOrErr
	wg   sync.WaitGroup
}

// next starts the next read; its result arrives on msgs.
func (a *asyncReader) next() {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		st, err := a.cc.readState()
		a.msgs <- stateOrErr{st, err}
	}()
}

// wait waits for a pending read, which the caller has ended.
func (a *asyncReader) wait() { a.wg.Wait() }

// stateOrErr is one read of the control connection.
type stateOrErr struct {
	st  iperfState
	err error
}

func (m stateOrErr) String() string {
	if m.err != nil {
		return m.err.Error()
	}
	return m.st.String()
}

func hostPort(ap netip.AddrPort) ReportHostPort {
	return ReportHostPort{Host: ap.Addr().String(), Port: ap.Port()}
}

// udpDemux reads a UDP test's socket on the server: a datagram from a new
// address while streams are being set up is a stream's first
// (udpConnectMsg), answered with udpConnectReply; datagrams from known
// addresses are their stream's data.
type udpDemux struct {
	pc    transport.PacketConn
	run   *perfRun
	peers chan netip.AddrPort // buffered for every stream a test may have
	ctx   context.Context
	stop  context.CancelFunc
	done  chan struct{}

	mu      sync.Mutex
	streams map[netip.AddrPort]*perfStream // +checklocks:mu
	pending map[netip.AddrPort]bool        // +checklocks:mu; announced, not yet added
	closed  bool                           // +checklocks:mu
}

func newUDPDemux(pc transport.PacketConn, run *perfRun) *udpDemux {
	d := &udpDemux{pc: pc, run: run, peers: make(chan netip.AddrPort, 2*MaxStreams), done: make(chan struct{}),
		streams: map[netip.AddrPort]*perfStream{}, pending: map[netip.AddrPort]bool{}}
	d.ctx, d.stop = context.WithCancel(context.Background())
	go d.loop()
	return d
}

// add registers a stream of the run.
func (d *udpDemux) add(st *perfStream) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.streams[st.peer] = st
	delete(d.pending, st.peer)
}

func (d *udpDemux) loop() {
	defer close(d.done)
	for {
		ch, from, err := d.pc.RecvFrom(d.ctx)
		if err != nil {
			return
		}
		p := ch.Bytes()
		d.mu.Lock()
		st := d.streams[from]
		isNew := st == nil && !d.pending[from] && len(p) == len(udpConnectMsg) && len(d.streams)+len(d.pending) < d.run.spec.total()
		if isNew {
			d.pending[from] = true
		}
		d.mu.Unlock()
		switch {
		case st != nil:
			d.run.udpReceive(st, p, time.Now())
			ch.Release()
		case isNew:
			ch.Release()
			d.peers <- from
			d.reply(from)
		default:
			ch.Release() // strangers and repeats
		}
	}
}

// reply sends udpConnectReply to a new stream's client.
func (d *udpDemux) reply(to netip.AddrPort) {
	d.pc.SendTo(d.ctx, len(udpConnectReply), func(p []byte) int { return copy(p, udpConnectReply[:]) }, to)
}

// close stops the reader and closes the socket. Safe to call twice.
func (d *udpDemux) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	d.stop()
	d.pc.Close()
	<-d.done
}
