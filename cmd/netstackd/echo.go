package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/hist"
)

const echoHelp = `Usage: netstackd echo -s [flags] NETWORK
       netstackd echo -c HOST [flags] NETWORK
       netstackd echo -inproc [flags]

An echo (RFC 862) client and server, TCP or UDP. The client sends -n
messages of -size bytes one at a time, checks that every byte comes back
unchanged, and prints the round trips' latency (min, p50, p90, p99, max and
a histogram) and the round trips per second. The server answers TCP and
UDP on the port, on zero-copy sockets when it runs on zcnet.

NETWORK is where the sockets live: -kernel, -tap NAME -addr PREFIX (a zcnet
stack on a TAP device; root), -ring PATH -addr PREFIX (a zcnet stack on the
peer side of the ring "netstackd serve -ring PATH" listens on; no root), or
-inproc, which runs the server and the client on two zcnet stacks in this
process (no root).

Examples:
  netstackd echo -inproc -n 10000 -size 100
  netstackd echo -inproc -u -n 1000
  sudo netstackd echo -s -tap zc0 -addr 192.0.2.2/24          # then: socat - TCP:192.0.2.2:7
  sudo netstackd echo -c 192.0.2.1 -tap zc0 -addr 192.0.2.2/24   # against socat ... PIPE
  netstackd echo -c 192.0.2.2 -kernel -json
  netstackd serve -ring /tmp/zc.sock -addr 192.0.2.2/24 &   # no root: echo over the ring
  netstackd echo -c 192.0.2.2 -ring /tmp/zc.sock -addr 192.0.2.1/24 -n 10000
`

type echoFlags struct {
	server   bool
	host     string
	port     int
	udp      bool
	count    int
	size     int
	duration time.Duration
	timeout  time.Duration
	json     bool
	verbose  bool
}

func runEcho(args []string, stdout, stderr io.Writer) error {
	var f echoFlags
	net := newToolNet()
	fs := newFlagSet("echo", echoHelp, stdout, stderr)
	fs.BoolVar(&f.server, "s", false, "run a server (TCP and UDP)")
	fs.StringVar(&f.host, "c", "", "run a client against the server at this address")
	fs.IntVar(&f.port, "p", 7, "port")
	fs.BoolVar(&f.udp, "u", false, "client: UDP instead of TCP")
	fs.IntVar(&f.count, "n", 1000, "client: round trips (1 to 100000000)")
	fs.IntVar(&f.size, "size", 64, "client: bytes per message (TCP: 1 to 1048576; UDP: 8 to 65507)")
	fs.DurationVar(&f.duration, "t", 0, "client: stop after this long even if -n round trips are not done (0: no limit)")
	fs.DurationVar(&f.timeout, "timeout", time.Second, "client: how long to wait for each reply before a UDP datagram counts as lost (TCP: 10 times this)")
	fs.BoolVar(&f.json, "json", false, "client: print a JSON summary")
	fs.BoolVar(&f.verbose, "v", false, "log the stack's and server's work to stderr")
	net.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usage := func(err error) error {
		fmt.Fprintf(stderr, "netstackd echo: %v\nRun 'netstackd echo -help' for usage.\n", err)
		return errUsage
	}
	mode, setup, err := net.resolve()
	if err != nil {
		return usage(err)
	}
	if err := f.check(fs, mode); err != nil {
		return usage(err)
	}
	var host netip.Addr
	if f.host != "" {
		if host, err = parseHost("c", f.host); err != nil {
			return usage(err)
		}
	}
	log := toolLogger(f.verbose, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := openToolEnv(mode, setup, net.ring, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Close(); err != nil {
			log.Error("teardown", "err", err)
		}
	}()
	port := uint16(f.port)
	if f.server || mode == modeInproc {
		srv, err := startEchoServer(ctx, env.server, port, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		if f.server {
			fmt.Fprintf(stdout, "echo server listening on TCP and UDP port %d over %s sockets\n", port, env.server.Name())
			<-ctx.Done()
			return nil
		}
		host = env.serverAddr
	}
	res, err := runEchoClient(ctx, env.client, netip.AddrPortFrom(host, port), f)
	if res != nil {
		if f.json {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(res.json(err))
		} else {
			res.write(stdout)
		}
	}
	return err
}

func (f *echoFlags) check(fs interface{ Visit(func(*flag.Flag)) }, mode toolMode) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case f.server && f.host != "":
		return errors.New("-s and -c exclude each other: a server (-s) or a client (-c HOST)")
	case mode == modeInproc && (f.server || f.host != ""):
		return errors.New("-inproc runs both the server and the client; leave out -s and -c")
	case mode != modeInproc && !f.server && f.host == "":
		return errors.New("run a server (-s) or a client (-c HOST)")
	case f.port < 1 || f.port > 65535:
		return fmt.Errorf("-p %d: want a port, 1 to 65535", f.port)
	}
	if f.server {
		for _, name := range []string{"u", "n", "size", "t", "timeout", "json"} {
			if set[name] {
				return fmt.Errorf("-%s is a client flag (a server takes -p and answers TCP and UDP)", name)
			}
		}
		return nil
	}
	switch {
	case f.count < 1 || f.count > 100_000_000:
		return fmt.Errorf("-n %d: want 1 to 100000000 round trips", f.count)
	case f.udp && (f.size < echoHeader || f.size > iperf3.MaxUDPBlock):
		return fmt.Errorf("-size %d: want %d to %d bytes for a UDP message", f.size, echoHeader, iperf3.MaxUDPBlock)
	case !f.udp && (f.size < 1 || f.size > 1<<20):
		return fmt.Errorf("-size %d: want 1 to 1048576 bytes", f.size)
	case f.duration < 0 || f.duration > 24*time.Hour:
		return fmt.Errorf("-t %v: want 0 (no limit) to 24h", f.duration)
	case f.timeout < time.Millisecond || f.timeout > time.Minute:
		return fmt.Errorf("-timeout %v: want 1ms to 1m", f.timeout)
	}
	return nil
}

// echoServer answers TCP and UDP on one port of a transport: each TCP
// connection on its own goroutine, UDP on one. Close stops it and waits.
type echoServer struct {
	cancel context.CancelFunc
	ln     transport.Listener
	pc     transport.PacketConn
	wg     sync.WaitGroup
	bytes  atomic.Uint64
	dgrams atomic.Uint64
}

func startEchoServer(ctx context.Context, tr transport.Transport, port uint16, log *slog.Logger) (*echoServer, error) {
	ln, err := tr.ListenTCP(netip.AddrPortFrom(netip.Addr{}, port))
	if err != nil {
		return nil, fmt.Errorf("echo/tcp: %w", err)
	}
	pc, err := tr.ListenUDP(netip.AddrPortFrom(netip.Addr{}, port))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("echo/udp: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &echoServer{cancel: cancel, ln: ln, pc: pc}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		acceptLoop(ctx, ln, &s.wg, func(c transport.Conn) {
			err := echoStream(ctx, c, &s.bytes)
			if err != nil && ctx.Err() == nil {
				log.Debug("echo connection ended", "peer", c.RemoteAddr(), "err", err)
			}
		})
	}()
	go func() {
		defer s.wg.Done()
		for {
			ch, from, err := pc.RecvFrom(ctx)
			if err != nil {
				return
			}
			s.dgrams.Add(1)
			if _, err := pc.Bounce(ctx, ch, from); err != nil {
				log.Debug("udp echo failed", "peer", from, "err", err)
			}
		}
	}()
	log.Info("listening", "service", "echo", "tcp", addrString(ln.Addr()), "udp", addrString(pc.LocalAddr()))
	return s, nil
}

// Close stops the server and waits for its connections.
func (s *echoServer) Close() {
	s.cancel()
	s.ln.Close()
	s.pc.Close()
	s.wg.Wait()
}

// acceptLoop accepts connections until ctx ends or the listener closes and
// runs handle on each, on a goroutine wg tracks; handle's connection is
// closed when it returns.
func acceptLoop(ctx context.Context, ln transport.Listener, wg *sync.WaitGroup, handle func(transport.Conn)) error {
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			handle(c)
		}()
	}
}

// echoHeader is the start of each message: the round number, so a UDP
// reply to an earlier round is told from the current one.
const echoHeader = 8

// echoResult is what an echo client measured.
type echoResult struct {
	proto     string
	server    netip.AddrPort
	transport string
	size      int
	sent      int // messages sent
	ok        int // round trips completed and verified
	lost      int // UDP: no reply within the timeout
	late      int // UDP: replies to earlier rounds, after their timeout
	verified  uint64
	elapsed   time.Duration
	hist      hist.Hist
}

// runEchoClient makes f.count round trips (or as many as fit in
// f.duration) and verifies every byte of every reply.
func runEchoClient(ctx context.Context, tr transport.Transport, server netip.AddrPort, f echoFlags) (*echoResult, error) {
	res := &echoResult{proto: "TCP", server: server, transport: tr.Name(), size: f.size}
	if f.udp {
		res.proto = "UDP"
	}
	// The messages are windows of a random pattern, a different one each
	// round, so a byte echoed from the wrong place cannot pass.
	pattern := make([]byte, f.size+4096)
	rand.Read(pattern)
	msg := func(round int) []byte {
		off := (round * 61) % 4096
		m := pattern[off : off+f.size]
		if len(m) >= echoHeader {
			binary.BigEndian.PutUint64(m, uint64(round))
		}
		return m
	}
	rctx := ctx
	if f.duration > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, f.duration)
		defer cancel()
	}
	var err error
	start := time.Now()
	if f.udp {
		err = res.udp(rctx, tr, server, f, msg)
	} else {
		err = res.tcp(rctx, tr, server, f, msg)
	}
	res.elapsed = time.Since(start)
	if err != nil && f.duration > 0 && rctx.Err() != nil && ctx.Err() == nil && res.ok > 0 {
		// -t ended the run, in the middle of a round that does not count.
		err = nil
		res.sent = res.ok + res.lost
	}
	if res.sent == 0 && err != nil {
		return nil, err
	}
	return res, err
}

func (res *echoResult) tcp(ctx context.Context, tr transport.Transport, server netip.AddrPort, f echoFlags, msg func(int) []byte) error {
	dctx, cancel := context.WithTimeout(ctx, 10*f.timeout)
	c, err := tr.DialTCP(dctx, server)
	cancel()
	if err != nil {
		return fmt.Errorf("connecting to %v: %w", server, err)
	}
	defer c.Close()
	for round := 0; round < f.count; round++ {
		if err := res.tcpRound(ctx, c, round, msg(round), 10*f.timeout); err != nil {
			return err
		}
	}
	return nil
}

// tcpRound sends m and reads it back, checking every byte. A message larger
// than a server may buffer is sent while the echo is read, or a server that
// echoes as it reads would block on us; a small one is sent first, which
// times the round trip without a goroutine hand-off.
func (res *echoResult) tcpRound(ctx context.Context, c transport.Conn, round int, m []byte, timeout time.Duration) (err error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	sendErr := make(chan error, 1)
	if len(m) > echoInlineSend {
		go func() {
			_, err := transport.SendBytes(rctx, c, m)
			sendErr <- err
		}()
		defer func() {
			cancel() // ends a send still blocked if the round failed
			if serr := <-sendErr; err == nil && serr != nil {
				err = fmt.Errorf("round %d: send: %w", round, serr)
			}
		}()
	} else if _, err := transport.SendBytes(rctx, c, m); err != nil {
		return fmt.Errorf("round %d: send: %w", round, err)
	}
	res.sent++
	got := 0
	for got < len(m) {
		ch, err := c.Recv(rctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("round %d: the server closed the connection after echoing %d of %d bytes", round, got, len(m))
			}
			return fmt.Errorf("round %d: after %d of %d bytes: %w", round, got, len(m), err)
		}
		b := ch.Bytes()
		if got+len(b) > len(m) {
			ch.Release()
			return fmt.Errorf("round %d: the server echoed %d bytes, more than the %d sent", round, got+len(b), len(m))
		}
		if i := mismatch(b, m[got:got+len(b)]); i >= 0 {
			want, have := m[got+i], b[i]
			ch.Release()
			return fmt.Errorf("round %d: byte %d differs: got %#02x, want %#02x", round, got+i, have, want)
		}
		got += len(b)
		ch.Release()
	}
	res.hist.Add(time.Since(t0))
	res.ok++
	res.verified += uint64(len(m))
	return nil
}

// echoInlineSend is the largest message the TCP client sends before it
// reads the echo: below what any echo server buffers.
const echoInlineSend = 16 << 10

func (res *echoResult) udp(ctx context.Context, tr transport.Transport, server netip.AddrPort, f echoFlags, msg func(int) []byte) error {
	pc, err := tr.DialUDP(server)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	defer pc.Close()
	for round := 0; round < f.count; round++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := msg(round)
		t0 := time.Now()
		if _, err := pc.SendTo(ctx, len(m), func(p []byte) int { return copy(p, m) }, netip.AddrPort{}); err != nil {
			return fmt.Errorf("round %d: send: %w", round, err)
		}
		res.sent++
		rctx, cancel := context.WithTimeout(ctx, f.timeout)
		for {
			ch, _, err := pc.RecvFrom(rctx)
			if err != nil {
				if ctx.Err() != nil {
					cancel()
					return ctx.Err()
				}
				res.lost++ // the reply did not come in time
				break
			}
			b := ch.Bytes()
			if len(b) >= echoHeader && int(binary.BigEndian.Uint64(b)) < round {
				res.late++
				ch.Release()
				continue
			}
			if len(b) != len(m) {
				ch.Release()
				cancel()
				return fmt.Errorf("round %d: the reply has %d bytes, want %d", round, len(b), len(m))
			}
			if i := mismatch(b, m); i >= 0 {
				want, have := m[i], b[i]
				ch.Release()
				cancel()
				return fmt.Errorf("round %d: byte %d differs: got %#02x, want %#02x", round, i, have, want)
			}
			ch.Release()
			res.hist.Add(time.Since(t0))
			res.ok++
			res.verified += uint64(len(m))
			break
		}
		cancel()
	}
	return nil
}

// mismatch returns the first index where a and b differ, or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

func (res *echoResult) rate() float64 {
	if res.elapsed <= 0 {
		return 0
	}
	return float64(res.ok) / res.elapsed.Seconds()
}

func (res *echoResult) write(w io.Writer) {
	fmt.Fprintf(w, "echo: %d round trips of %d bytes over %s to %v (%s sockets), every byte verified (%d bytes)\n",
		res.ok, res.size, res.proto, res.server, res.transport, res.verified)
	if res.proto == "UDP" {
		pct := 0.0
		if res.sent > 0 {
			pct = 100 * float64(res.lost) / float64(res.sent)
		}
		fmt.Fprintf(w, "udp: %d sent, %d lost (%.2f%%), %d late replies\n", res.sent, res.lost, pct, res.late)
	}
	res.hist.Print(w)
	fmt.Fprintf(w, "round trips/s: %.0f (%d in %.2f s)\n", res.rate(), res.ok, res.elapsed.Seconds())
}

// echoJSON is the -json summary.
type echoJSON struct {
	Protocol     string             `json:"protocol"`
	Server       string             `json:"server"`
	Transport    string             `json:"transport"`
	Size         int                `json:"size"`
	Sent         int                `json:"sent"`
	RoundTrips   int                `json:"round_trips"`
	Lost         int                `json:"lost"`
	Late         int                `json:"late"`
	VerifiedByte uint64             `json:"verified_bytes"`
	Seconds      float64            `json:"seconds"`
	RoundTripsPS float64            `json:"round_trips_per_second"`
	LatencyUs    map[string]float64 `json:"latency_us"`
	Histogram    []echoJSONBucket   `json:"histogram"`
	Error        string             `json:"error,omitempty"`
}

type echoJSONBucket struct {
	FromUs float64 `json:"from_us"`
	ToUs   float64 `json:"to_us"`
	Count  uint64  `json:"count"`
}

func (res *echoResult) json(err error) echoJSON {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	j := echoJSON{Protocol: res.proto, Server: res.server.String(), Transport: res.transport, Size: res.size,
		Sent: res.sent, RoundTrips: res.ok, Lost: res.lost, Late: res.late, VerifiedByte: res.verified,
		Seconds: res.elapsed.Seconds(), RoundTripsPS: res.rate(),
		LatencyUs: map[string]float64{"min": us(res.hist.Min()), "p50": us(res.hist.Quantile(.5)), "p90": us(res.hist.Quantile(.9)),
			"p99": us(res.hist.Quantile(.99)), "max": us(res.hist.Max()), "mean": us(res.hist.Mean())},
		Histogram: []echoJSONBucket{}}
	for _, o := range res.hist.Octaves() {
		j.Histogram = append(j.Histogram, echoJSONBucket{FromUs: us(o.Lo), ToUs: us(o.Hi), Count: o.Count})
	}
	if err != nil {
		j.Error = err.Error()
	}
	return j
}
