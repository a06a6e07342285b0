// Package echo is netstackd's echo protocol over a transport: a server that
// answers TCP and UDP on one port, and a client that makes round trips,
// verifies every byte of every reply and records their latency. The TCP
// echo services of the daemon run on package evloop instead; this server is
// the tool's, one goroutine per connection, on zcnet or kernel sockets
// alike. It does not parse flags or print for a command line beyond
// Result's own report.
package echo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/hist"
	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// Server answers TCP and UDP on one port of a transport: each TCP
// connection on its own goroutine, UDP on one. Close stops it and waits.
type Server struct {
	cancel context.CancelFunc
	ln     transport.Listener
	pc     transport.PacketConn
	wg     sync.WaitGroup
	bytes  atomic.Uint64
	dgrams atomic.Uint64
}

func StartServer(ctx context.Context, tr transport.Transport, port uint16, log *slog.Logger) (*Server, error) {
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
	s := &Server{cancel: cancel, ln: ln, pc: pc}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		transport.AcceptLoop(ctx, ln, &s.wg, func(c transport.Conn) {
			err := stream(ctx, c, &s.bytes)
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
	log.Info("listening", "service", "echo", "tcp", transport.AddrString(ln.Addr()), "udp", transport.AddrString(pc.LocalAddr()))
	return s, nil
}

// Close stops the server and waits for its connections.
func (s *Server) Close() {
	s.cancel()
	s.ln.Close()
	s.pc.Close()
	s.wg.Wait()
}

// HeaderLen is the start of each message: the round number, so a UDP
// reply to an earlier round is told from the current one.
const HeaderLen = 8

// Result is what an echo client measured.
type Result struct {
	Proto     string // "TCP" or "UDP"
	Server    netip.AddrPort
	Transport string // the client's transport, by name
	Size      int    // bytes per message
	Sent      int    // messages sent
	OK        int    // round trips completed and verified
	Lost      int    // UDP: no reply within the timeout
	Late      int    // UDP: replies to earlier rounds, after their timeout
	Verified  uint64 // bytes of replies checked
	Elapsed   time.Duration
	Latency   hist.Hist // round-trip times of the verified rounds
}

// Config is what a client runs.
type Config struct {
	UDP   bool
	Count int // round trips
	Size  int // bytes per message; UDP: at least HeaderLen
	// Duration, if positive, ends the run early.
	Duration time.Duration
	// Timeout bounds the wait for each UDP reply (TCP: 10 times this).
	Timeout time.Duration
}

// Run makes cfg.Count round trips (or as many as fit in
// cfg.Duration) and verifies every byte of every reply.
func Run(ctx context.Context, tr transport.Transport, server netip.AddrPort, cfg Config) (*Result, error) {
	res := &Result{Proto: "TCP", Server: server, Transport: tr.Name(), Size: cfg.Size}
	if cfg.UDP {
		res.Proto = "UDP"
	}
	// The messages are windows of a random pattern, a different one each
	// round, so a byte echoed from the wrong place cannot pass.
	pattern := make([]byte, cfg.Size+4096)
	rand.Read(pattern)
	msg := func(round int) []byte {
		off := (round * 61) % 4096
		m := pattern[off : off+cfg.Size]
		if len(m) >= HeaderLen {
			binary.BigEndian.PutUint64(m, uint64(round))
		}
		return m
	}
	rctx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var err error
	start := time.Now()
	if cfg.UDP {
		err = res.udp(rctx, tr, server, cfg, msg)
	} else {
		err = res.tcp(rctx, tr, server, cfg, msg)
	}
	res.Elapsed = time.Since(start)
	if err != nil && cfg.Duration > 0 && rctx.Err() != nil && ctx.Err() == nil && res.OK > 0 {
		// -t ended the run, in the middle of a round that does not count.
		err = nil
		res.Sent = res.OK + res.Lost
	}
	if res.Sent == 0 && err != nil {
		return nil, err
	}
	return res, err
}

func (res *Result) tcp(ctx context.Context, tr transport.Transport, server netip.AddrPort, cfg Config, msg func(int) []byte) error {
	dctx, cancel := context.WithTimeout(ctx, 10*cfg.Timeout)
	c, err := tr.DialTCP(dctx, server)
	cancel()
	if err != nil {
		return fmt.Errorf("connecting to %v: %w", server, err)
	}
	defer c.Close()
	for round := 0; round < cfg.Count; round++ {
		if err := res.tcpRound(ctx, c, round, msg(round), 10*cfg.Timeout); err != nil {
			return err
		}
	}
	return nil
}

// tcpRound sends m and reads it back, checking every byte. A message larger
// than a server may buffer is sent while the echo is read, or a server that
// echoes as it reads would block on us; a small one is sent first, which
// times the round trip without a goroutine hand-off.
func (res *Result) tcpRound(ctx context.Context, c transport.Conn, round int, m []byte, timeout time.Duration) (err error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	sendErr := make(chan error, 1)
	if len(m) > inlineSend {
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
	res.Sent++
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
	res.Latency.Add(time.Since(t0))
	res.OK++
	res.Verified += uint64(len(m))
	return nil
}

// inlineSend is the largest message the TCP client sends before it
// reads the echo: below what any echo server buffers.
const inlineSend = 16 << 10

func (res *Result) udp(ctx context.Context, tr transport.Transport, server netip.AddrPort, cfg Config, msg func(int) []byte) error {
	pc, err := tr.DialUDP(server)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	defer pc.Close()
	for round := 0; round < cfg.Count; round++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := msg(round)
		t0 := time.Now()
		if _, err := pc.SendTo(ctx, len(m), func(p []byte) int { return copy(p, m) }, netip.AddrPort{}); err != nil {
			return fmt.Errorf("round %d: send: %w", round, err)
		}
		res.Sent++
		rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		for {
			ch, _, err := pc.RecvFrom(rctx)
			if err != nil {
				if ctx.Err() != nil {
					cancel()
					return ctx.Err()
				}
				res.Lost++ // the reply did not come in time
				break
			}
			b := ch.Bytes()
			if len(b) >= HeaderLen && int(binary.BigEndian.Uint64(b)) < round {
				res.Late++
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
			res.Latency.Add(time.Since(t0))
			res.OK++
			res.Verified += uint64(len(m))
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

func (res *Result) Rate() float64 {
	if res.Elapsed <= 0 {
		return 0
	}
	return float64(res.OK) / res.Elapsed.Seconds()
}

func (res *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "echo: %d round trips of %d bytes over %s to %v (%s sockets), every byte verified (%d bytes)\n",
		res.OK, res.Size, res.Proto, res.Server, res.Transport, res.Verified)
	if res.Proto == "UDP" {
		pct := 0.0
		if res.Sent > 0 {
			pct = 100 * float64(res.Lost) / float64(res.Sent)
		}
		fmt.Fprintf(w, "udp: %d sent, %d lost (%.2f%%), %d late replies\n", res.Sent, res.Lost, pct, res.Late)
	}
	res.Latency.Print(w)
	fmt.Fprintf(w, "round trips/s: %.0f (%d in %.2f s)\n", res.Rate(), res.OK, res.Elapsed.Seconds())
}

// JSONReport is the -json summary.
type JSONReport struct {
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
	Histogram    []JSONBucket       `json:"histogram"`
	Error        string             `json:"error,omitempty"`
}

type JSONBucket struct {
	FromUs float64 `json:"from_us"`
	ToUs   float64 `json:"to_us"`
	Count  uint64  `json:"count"`
}

// WriteJSON prints the JSON summary (JSON), indented.
func (res *Result) WriteJSON(w io.Writer, err error) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(res.JSON(err))
}

// JSON is the summary, with err if the run ended in one.
func (res *Result) JSON(err error) JSONReport {
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	j := JSONReport{Protocol: res.Proto, Server: res.Server.String(), Transport: res.Transport, Size: res.Size,
		Sent: res.Sent, RoundTrips: res.OK, Lost: res.Lost, Late: res.Late, VerifiedByte: res.Verified,
		Seconds: res.Elapsed.Seconds(), RoundTripsPS: res.Rate(),
		LatencyUs: map[string]float64{"min": us(res.Latency.Min()), "p50": us(res.Latency.Quantile(.5)), "p90": us(res.Latency.Quantile(.9)),
			"p99": us(res.Latency.Quantile(.99)), "max": us(res.Latency.Max()), "mean": us(res.Latency.Mean())},
		Histogram: []JSONBucket{}}
	for _, o := range res.Latency.Octaves() {
		j.Histogram = append(j.Histogram, JSONBucket{FromUs: us(o.Lo), ToUs: us(o.Hi), Count: o.Count})
	}
	if err != nil {
		j.Error = err.Error()
	}
	return j
}

// stream sends back everything it receives until the peer's FIN,
// adding the bytes to n as it goes. Each received chunk is written straight
// into the stack's send buffer and then released: one copy, the one the
// stack's send path needs.
func stream(ctx context.Context, c transport.Conn, n *atomic.Uint64) error {
	for {
		ch, err := c.Recv(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		m, err := transport.SendBytes(ctx, c, ch.Bytes())
		ch.Release()
		n.Add(uint64(m))
		if err != nil {
			return err
		}
	}
}
