package iperf3

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// startPerfServer runs a one-off perf server (it ends after its first
// test) on env's server stack; done is closed when Serve has returned.
func startPerfServer(t *testing.T, env *testEnv, cfg ServerConfig) (srv *Server, done <-chan struct{}) {
	t.Helper()
	cfg.OneOff = true
	srv, err := NewServer(env.server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var serveErr error
	go func() {
		defer close(ch)
		serveErr = srv.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-ch
		if serveErr != nil {
			t.Errorf("Serve: %v", serveErr)
		}
	})
	return srv, ch
}

// waitDone waits for a one-off server to finish its test.
func waitDone(t *testing.T, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not finish its test within 20 s")
	}
}

// rawClient opens a control connection to the perf server on env and sends
// a cookie, as an iperf3 client's first step.
func rawClient(t *testing.T, env *testEnv, cookie [cookieLen]byte) *ctrlConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, err := env.client.DialTCP(ctx, netip.AddrPortFrom(env.serverAddr, Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc := newCtrlConn(ctx, c)
	if err := cc.write(cookie[:]); err != nil {
		t.Fatal(err)
	}
	return cc
}

func mustState(t *testing.T, cc *ctrlConn, want iperfState) {
	t.Helper()
	st, err := cc.readState()
	if err != nil || st != want {
		t.Fatalf("state %v, %v; want %v", st, err, want)
	}
}

func TestCookie(t *testing.T) {
	a, b := newCookie(), newCookie()
	if a == b {
		t.Fatal("two cookies are equal")
	}
	if a[cookieLen-1] != 0 {
		t.Fatal("cookie is not NUL-terminated")
	}
	for _, c := range a[:cookieLen-1] {
		if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyz234567", rune(c)) {
			t.Fatalf("cookie %q has %q", a, c)
		}
	}
}

func TestStreamIDs(t *testing.T) {
	// iperf_add_stream numbers the first stream 1 and the rest from 3.
	for i, want := range []int{1, 3, 4, 5, 6} {
		if got := streamID(i); got != want {
			t.Errorf("streamID(%d) = %d, want %d", i, got, want)
		}
	}
}

func TestUDPHeader(t *testing.T) {
	for _, c64 := range []bool{false, true} {
		p := make([]byte, 64)
		putUDPHeader(p, 1700000000, 999999, 0x1_0000_0002, c64)
		sec, usec, seq, ok := parseUDPHeader(p, c64)
		want := uint64(0x1_0000_0002)
		if !c64 {
			want = 2 // 32-bit counters wrap, as iperf3's do
		}
		if !ok || sec != 1700000000 || usec != 999999 || seq != want {
			t.Errorf("counters64=%v: %d %d %d %v", c64, sec, usec, seq, ok)
		}
		if binary.BigEndian.Uint32(p[:4]) != 1700000000 {
			t.Errorf("seconds are not big-endian at offset 0")
		}
		if _, _, _, ok := parseUDPHeader(p[:11], c64); ok {
			t.Errorf("counters64=%v: an 11-byte datagram parsed", c64)
		}
	}
	// The set-up datagrams are the bytes iperf3 puts on the wire.
	if string(udpConnectMsg[:]) != "9876" || string(udpConnectReply[:]) != "6789" {
		t.Errorf("connect %q reply %q", udpConnectMsg, udpConnectReply)
	}
}

func TestParamsSpec(t *testing.T) {
	ok := iperfParams{TCP: true, Time: 10, Parallel: 1}
	for _, tc := range []struct {
		name string
		edit func(*iperfParams)
		code int32
		want string
	}{
		{"defaults", func(p *iperfParams) {}, 0, ""},
		{"udp", func(p *iperfParams) { p.TCP, p.UDP, p.Len, p.Bandwidth = false, true, 1400, 1e9 }, 0, ""},
		{"bytes instead of time", func(p *iperfParams) { p.Time, p.Num = 0, 1e6 }, 0, ""},
		{"sctp", func(p *iperfParams) { p.TCP, p.SCTP = false, true }, ieProtocol, "only TCP and UDP"},
		{"neither", func(p *iperfParams) { p.TCP = false }, ieProtocol, "neither"},
		{"bidirectional", func(p *iperfParams) { p.Bidirectional = true }, 0, ""},
		{"no streams", func(p *iperfParams) { p.Parallel = 0 }, ieNumStreams, "parallel 0"},
		{"too many streams", func(p *iperfParams) { p.Parallel = 129 }, ieNumStreams, "want 1 to 128"},
		{"fractional streams", func(p *iperfParams) { p.Parallel = 1.5 }, ieNumStreams, ""},
		{"too long", func(p *iperfParams) { p.Time = 86401 }, ieDuration, "time"},
		{"no end", func(p *iperfParams) { p.Time = 0 }, ieDuration, "no end condition"},
		{"huge block", func(p *iperfParams) { p.Len = 2 << 20 }, ieBlockSize, "len"},
		{"tiny datagram", func(p *iperfParams) { p.TCP, p.UDP, p.Len = false, true, 8 }, ieUDPBlock, "UDP"},
		{"negative rate", func(p *iperfParams) { p.Bandwidth = -1 }, ieRecvParams, "bandwidth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.edit(&p)
			s, code, err := p.spec()
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if s.BlockSize == 0 || s.Streams < 1 {
					t.Fatalf("spec %+v", s)
				}
				// What a client sends for s is accepted as s.
				back := s.params()
				if s2, _, err := back.spec(); err != nil || s2 != s {
					t.Fatalf("round trip: %+v, %v; want %+v", s2, err, s)
				}
				return
			}
			if err == nil || code != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("spec() = code %d, %v; want code %d and %q", code, err, tc.code, tc.want)
			}
		})
	}
}

// TestParamsDefaults checks the block sizes iperf3 uses when the client
// does not say.
func TestParamsDefaults(t *testing.T) {
	s, _, err := (&iperfParams{TCP: true, Time: 1, Parallel: 1}).spec()
	if err != nil || s.BlockSize != 128<<10 {
		t.Errorf("TCP default block %d, %v", s.BlockSize, err)
	}
	s, _, err = (&iperfParams{UDP: true, Time: 1, Parallel: 1}).spec()
	if err != nil || s.BlockSize != 1460 {
		t.Errorf("UDP default datagram %d, %v", s.BlockSize, err)
	}
}

// TestParamsFromIperf3 decodes parameters as iperf3 3.12 sends them
// (captured from a stock client; cJSON prints 1e9 as 1000000000).
func TestParamsFromIperf3(t *testing.T) {
	doc := `{"udp":true,"omit":0,"time":3,"num":0,"blockcount":0,"parallel":4,"reverse":true,"len":1460,"bandwidth":1000000000,"pacing_timer":1000,"get_server_output":1,"client_version":"3.12"}`
	var p iperfParams
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	s, _, err := p.spec()
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{UDP: true, Reverse: true, Streams: 4, BlockSize: 1460, Duration: 3, Rate: 1e9, ServerOutput: true}
	if s != want {
		t.Fatalf("spec %+v, want %+v", s, want)
	}
}

// TestServerRefusesBadParameters: a client asking for what the server does
// not do gets SERVER_ERROR with iperf3's error code, as iperf3 -c expects.
func TestServerRefusesBadParameters(t *testing.T) {
	env := inprocEnv(t)
	srv, done := startPerfServer(t, env, ServerConfig{})
	cc := rawClient(t, env, newCookie())
	mustState(t, cc, stParamExchange)
	if err := cc.writeJSON(iperfParams{SCTP: true, Time: 1, Parallel: 1}); err != nil {
		t.Fatal(err)
	}
	mustState(t, cc, stServerError)
	err := cc.readServerError()
	if err == nil || !strings.Contains(err.Error(), "protocol not supported (iperf3 error 131") {
		t.Fatalf("readServerError = %v", err)
	}
	waitDone(t, done)
	if s := srv.Stats(); s.Failed != 1 || s.Tests != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestServerRejectsOversizedJSON: the length prefix is checked before
// anything is read or allocated.
func TestServerRejectsOversizedJSON(t *testing.T) {
	env := inprocEnv(t)
	srv, done := startPerfServer(t, env, ServerConfig{})
	cc := rawClient(t, env, newCookie())
	mustState(t, cc, stParamExchange)
	if err := cc.write([]byte{0x7f, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.readState(); !errors.Is(err, io.EOF) {
		t.Fatalf("after an oversized message the server should close; read: %v", err)
	}
	waitDone(t, done)
	if s := srv.Stats(); s.Failed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestServerBusyAndCookies: while a test is being set up, another client
// gets ACCESS_DENIED, and so does a stream connection with another cookie;
// the test's own stream is taken. Our client reports the busy server.
func TestServerBusyAndCookies(t *testing.T) {
	env := inprocEnv(t)
	srv, done := startPerfServer(t, env, ServerConfig{Timeout: 5 * time.Second})
	cookie := newCookie()
	cc := rawClient(t, env, cookie)
	mustState(t, cc, stParamExchange)
	if err := cc.writeJSON(iperfParams{TCP: true, Time: 1, Parallel: 1}); err != nil {
		t.Fatal(err)
	}
	mustState(t, cc, stCreateStreams)

	intruder := rawClient(t, env, newCookie())
	mustState(t, intruder, stAccessDenied)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := RunClient(ctx, env.client, ClientConfig{Server: netip.AddrPortFrom(env.serverAddr, Port),
		Spec: Spec{Streams: 1, BlockSize: 1000, Duration: 1}, Timeout: 5 * time.Second})
	if !errors.Is(err, errBusy) {
		t.Fatalf("client against a busy server: %v, want errBusy", err)
	}

	stream := rawClient(t, env, cookie)
	mustState(t, cc, stTestStart)
	mustState(t, cc, stTestRunning)
	if err := cc.writeState(stTestEnd); err != nil {
		t.Fatal(err)
	}
	mustState(t, cc, stExchangeResults)
	if err := cc.writeJSON(Results{SenderHasRetransmits: 0, Streams: []StreamJSON{{ID: 1}}}); err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := cc.readJSON(&res, maxResultsJSON); err != nil {
		t.Fatal(err)
	}
	if len(res.Streams) != 1 || res.Streams[0].ID != 1 || res.SenderHasRetransmits != -1 {
		t.Fatalf("server results %+v", res)
	}
	mustState(t, cc, stDisplayResults)
	cc.writeState(stIperfDone)
	stream.c.Close()
	waitDone(t, done)
	if s := srv.Stats(); s.Tests != 1 || s.Running || s.Denied < 2 || s.Failed != 0 {
		t.Fatalf("stats %+v: want 2 or more denied (client and intruder), none failed", s)
	}
}

// TestServerStreamTimeout: a client that never opens its streams gets
// SERVER_ERROR, and the server is free again.
func TestServerStreamTimeout(t *testing.T) {
	env := inprocEnv(t)
	srv, done := startPerfServer(t, env, ServerConfig{Timeout: 500 * time.Millisecond})
	cc := rawClient(t, env, newCookie())
	mustState(t, cc, stParamExchange)
	if err := cc.writeJSON(iperfParams{UDP: true, Time: 1, Parallel: 2}); err != nil {
		t.Fatal(err)
	}
	mustState(t, cc, stCreateStreams)
	mustState(t, cc, stServerError)
	if err := cc.readServerError(); err == nil || !strings.Contains(err.Error(), "cannot accept the streams") {
		t.Fatalf("readServerError = %v", err)
	}
	waitDone(t, done)
	if s := srv.Stats(); s.Failed != 1 || s.Running {
		t.Fatalf("stats %+v", s)
	}
	// The next server runs a test. (On another port: the first server's
	// closed connections hold 5201 in TIME_WAIT, and zcnet's listeners do
	// not set SO_REUSEADDR.)
	startPerfServer(t, env, ServerConfig{Port: 5202})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o, err := RunClient(ctx, env.client, ClientConfig{Server: netip.AddrPortFrom(env.serverAddr, 5202),
		Spec: Spec{Streams: 1, BlockSize: 1000, Duration: 1, UDP: true, Rate: 1e6}})
	if err != nil || o == nil || len(o.local) != 1 || o.local[0].packets == 0 {
		t.Fatalf("second test: %v, %+v", err, o)
	}
}

func FuzzParams(f *testing.F) {
	f.Add(`{"tcp":true,"time":10,"parallel":1}`)
	f.Add(`{"udp":true,"time":3,"parallel":4,"reverse":true,"len":1460,"bandwidth":1e9}`)
	f.Add(`{"tcp":true,"time":1e300,"parallel":-1,"len":1.5}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var p iperfParams
		if json.Unmarshal([]byte(doc), &p) != nil {
			return
		}
		s, code, err := p.spec()
		if err != nil {
			if code == 0 {
				t.Fatalf("refusal without an iperf3 error code: %v", err)
			}
			return
		}
		if s.Streams < 1 || s.Streams > MaxStreams || s.BlockSize < 1 || s.BlockSize > MaxTCPBlock ||
			(s.UDP && (s.BlockSize < UDPHeader64 || s.BlockSize > MaxUDPBlock)) || s.Duration > MaxTime ||
			(s.Duration == 0 && s.Bytes == 0 && s.Blocks == 0) {
			t.Fatalf("accepted an impossible test: %+v from %s", s, doc)
		}
	})
}

func FuzzUDPHeader(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), false)
	f.Add([]byte{1, 2, 3}, true)
	f.Fuzz(func(t *testing.T, p []byte, c64 bool) {
		sec, usec, seq, ok := parseUDPHeader(p, c64)
		if !ok {
			return
		}
		q := make([]byte, len(p))
		putUDPHeader(q, sec, usec, seq, c64)
		s2, u2, q2, _ := parseUDPHeader(q, c64)
		if s2 != sec || u2 != usec || q2 != seq {
			t.Fatal("header does not round-trip")
		}
	})
}

// TestServerUnfilledReverse runs a reverse (download) test against a
// server whose senders write nothing into the send buffer: the test runs
// to its byte count and both sides count the bytes.
func TestServerUnfilledReverse(t *testing.T) {
	env := inprocEnv(t)
	srv, done := startPerfServer(t, env, ServerConfig{Addr: env.serverAddr, Port: 5203, Unfilled: true})
	if srv.Addr() != netip.AddrPortFrom(env.serverAddr, 5203) {
		t.Fatalf("listening on %v", srv.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 4 << 20
	o, err := RunClient(ctx, env.client, ClientConfig{Server: srv.Addr(),
		Spec: Spec{Reverse: true, Streams: 1, BlockSize: 64 << 10, Bytes: n}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
	if got := o.BytesReceived(); got < n {
		t.Errorf("the client received %d bytes, want at least %d", got, n)
	}
	if s := srv.Stats(); s.Tests != 1 || s.BytesSent < n {
		t.Errorf("server stats %+v: want one test and at least %d bytes sent", s, n)
	}
}

// TestServerBidir runs iperf3's --bidir against the server, TCP and UDP,
// two streams each way: the client's first two streams send, the other
// two receive, and both sides count bytes each way on the right streams.
func TestServerBidir(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"tcp", Spec{Bidir: true, Streams: 2, BlockSize: 64 << 10, Duration: 1, Rate: 50e6}},
		{"udp", Spec{UDP: true, Bidir: true, Streams: 2, BlockSize: 1200, Duration: 1, Rate: 10e6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := inprocEnv(t)
			srv, done := startPerfServer(t, env, ServerConfig{OneOff: true})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o, err := RunClient(ctx, env.client, ClientConfig{Server: netip.AddrPortFrom(env.serverAddr, Port), Spec: tc.spec})
			if err != nil {
				t.Fatal(err)
			}
			waitDone(t, done)
			if len(o.local) != 4 {
				t.Fatalf("client has %d streams, want 4", len(o.local))
			}
			for i, l := range o.local {
				if want := i < 2; l.sends != want {
					t.Errorf("client stream %d (id %d) sends=%v, want %v", i, l.id, l.sends, want)
				}
				if l.bytes == 0 {
					t.Errorf("client stream %d (id %d) counted no bytes", i, l.id)
				}
			}
			sent, received := o.here()
			if sent.bytes == 0 || received.bytes == 0 {
				t.Errorf("client sent %d and received %d bytes, want both > 0", sent.bytes, received.bytes)
			}
			// The server's per-stream results, as the client got them:
			// every stream moved bytes.
			if n := len(o.peer.Streams); n != 4 {
				t.Fatalf("server reported %d streams, want 4", n)
			}
			for _, p := range o.peer.Streams {
				if p.Bytes == 0 {
					t.Errorf("server stream %v counted no bytes", p.ID)
				}
			}
			s := srv.Stats()
			if s.Tests != 1 || s.BytesSent == 0 || s.BytesReceived == 0 {
				t.Errorf("server stats %+v: want one test with bytes each way", s)
			}
		})
	}
}

// TestServerFreeAfterInterruptedClient: a client that starts right after
// another was interrupted mid-test is served, as stock iperf3's server
// serves it once done with the last, not told the server is busy while
// this one cleans up.
func TestServerFreeAfterInterruptedClient(t *testing.T) {
	env := inprocEnv(t)
	srv, err := NewServer(env.server, ServerConfig{}) // not one-off
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	addr := netip.AddrPortFrom(env.serverAddr, Port)
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		spec := Spec{Streams: 2, BlockSize: 64 << 10, Duration: 30, Reverse: i%2 == 1}
		running := make(chan error, 1)
		go func() {
			_, err := RunClient(ctx, env.client, ClientConfig{Server: addr, Spec: spec, Interval: 50 * time.Millisecond,
				Out: &sampleWaiter{cancel: cancel}})
			running <- err
		}()
		if err := <-running; err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("round %d: the interrupted client: %v, want interrupted", i, err)
		}
		cancel()
		ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := RunClient(ctx2, env.client, ClientConfig{Server: addr, Spec: Spec{Streams: 1, BlockSize: 64 << 10, Bytes: 1 << 20}})
		cancel2()
		if err != nil {
			t.Fatalf("round %d: a client right after an interrupted one: %v", i, err)
		}
	}
	srv.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if s := srv.Stats(); s.Denied != 0 {
		t.Errorf("stats %+v: want no client denied", s)
	}
}

// sampleWaiter is a client's output that cancels the client at its first
// progress line: the test is running.
type sampleWaiter struct {
	cancel context.CancelFunc
	once   sync.Once
}

func (w *sampleWaiter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("bit/s")) {
		w.once.Do(w.cancel)
	}
	return len(p), nil
}
