package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// client drives every contender with the same code. In the benchmark its
// dialer makes kernel sockets in the client namespace (the kernel side of
// each TAP, one end of the veth pair), used from ordinary goroutines.
type client struct {
	dial  dialer
	grace time.Duration // how long past its window a measurement may take to drain
}

// dialer opens the client's connections.
type dialer interface {
	// DialTCP connects to a server's TCP service.
	DialTCP(ctx context.Context, to netip.AddrPort) (streamConn, error)
	// DialUDP returns a UDP socket connected to a server's UDP service.
	DialUDP(to netip.AddrPort) (net.Conn, error)
}

// streamConn is a TCP connection that can shut down its sending side.
type streamConn interface {
	net.Conn
	CloseWrite() error
}

// nsDialer dials with kernel sockets created in a namespace: a socket
// belongs to the network namespace of the thread that creates it, and
// keeps working from any goroutine afterwards.
type nsDialer struct{ ns netns }

// DialTCP implements dialer.
func (d nsDialer) DialTCP(ctx context.Context, to netip.AddrPort) (streamConn, error) {
	var conn net.Conn
	err := d.ns.Do(func() error {
		nd := net.Dialer{Timeout: 10 * time.Second}
		var err error
		conn, err = nd.DialContext(ctx, "tcp", to.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", errMeasure, to, err)
	}
	return conn.(*net.TCPConn), nil
}

// DialUDP implements dialer.
func (d nsDialer) DialUDP(to netip.AddrPort) (net.Conn, error) {
	var conn *net.UDPConn
	err := d.ns.Do(func() error {
		var err error
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: dial udp %s: %v", errMeasure, to, err)
	}
	return conn, nil
}

// sample is one measurement's outcome.
type sample struct {
	value   float64       // in the figure's unit
	bytes   int64         // TCP payload bytes moved (bulk figures)
	elapsed time.Duration // from the window's start to the last byte (or the last send)
	cpu     time.Duration // process CPU over elapsed (processCPU)
	extra   map[string]float64
}

func (c *client) dialStreams(ctx context.Context, to netip.AddrPort, n int) ([]streamConn, error) {
	conns := make([]streamConn, 0, n)
	for range n {
		conn, err := c.dial.DialTCP(ctx, to)
		if err != nil {
			closeConns(conns)
			return nil, err
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeConns(conns []streamConn) {
	for _, c := range conns {
		c.Close()
	}
}

// drainResults throws away results of earlier, abandoned measurements.
func drainResults(ch chan streamResult) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// upload measures streams parallel TCP streams from the client to the
// server's sink for d: every stream writes until the window closes and then
// shuts down its sending side; the server reads each to EOF. The figure is
// the bytes the server read, over the time from the window's start to the
// last stream's EOF (so data still queued when the window closes counts,
// and so does the time it takes to drain).
func (c *client) upload(ctx context.Context, srv *server, streams int, d time.Duration) (sample, error) {
	drainResults(srv.sinkDone)
	conns, err := c.dialStreams(ctx, srv.port(offSink), streams)
	if err != nil {
		return sample{}, err
	}
	w := newWindow()
	var wg sync.WaitGroup
	// Closing the connections first unblocks writers on the error paths.
	defer func() { closeConns(conns); wg.Wait() }()
	werrs := make(chan error, streams)
	for _, conn := range conns {
		buf := make([]byte, writeChunk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-w.begin
			_ = conn.SetWriteDeadline(w.until.Add(c.grace))
			for i := 0; i < maxOps(d) && time.Now().Before(w.until); i++ {
				if _, err := conn.Write(buf); err != nil {
					werrs <- fmt.Errorf("upload write: %w", err)
					return
				}
			}
			if err := conn.CloseWrite(); err != nil {
				werrs <- fmt.Errorf("upload shutdown: %w", err)
			}
		}()
	}
	cpu0 := processCPU()
	start := w.open(d)

	timer := time.NewTimer(d + c.grace)
	defer timer.Stop()
	var s sample
	var end time.Time
	for got := 0; got < streams; {
		select {
		case r := <-srv.sinkDone:
			if r.err != nil {
				return sample{}, r.err
			}
			s.bytes += r.bytes
			if r.end.After(end) {
				end = r.end
			}
			got++
		case err := <-werrs:
			return sample{}, err
		case <-timer.C:
			return sample{}, fmt.Errorf("%w: upload: %d of %d streams unfinished %v after the window", errMeasure, streams-got, streams, c.grace)
		case <-ctx.Done():
			return sample{}, ctx.Err()
		}
	}
	s.cpu = processCPU() - cpu0
	s.elapsed = end.Sub(start)
	s.value = gbits(s.bytes, s.elapsed)
	return s, nil
}

// download measures streams parallel TCP streams from the server's source
// to the client for d: the server writes until the window closes and then
// closes; the client reads each to EOF. The figure is the bytes the client
// read over the time from the window's start to the last EOF.
func (c *client) download(ctx context.Context, srv *server, streams int, d time.Duration) (sample, error) {
	drainResults(srv.sourceDone)
	for len(srv.plans) > 0 {
		<-srv.plans
	}
	w := newWindow()
	opened := false
	defer func() {
		if !opened { // let planned handlers go: their window is empty
			w.open(0)
		}
	}()
	for range streams {
		srv.plans <- w
	}
	conns, err := c.dialStreams(ctx, srv.port(offSource), streams)
	if err != nil {
		return sample{}, err
	}
	var wg sync.WaitGroup
	defer func() { closeConns(conns); wg.Wait() }()

	results := make(chan streamResult, streams)
	for _, conn := range conns {
		buf := make([]byte, readChunk)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-w.begin
			_ = conn.SetReadDeadline(w.until.Add(c.grace))
			var n int64
			for i := 0; i < maxOps(d+c.grace); i++ {
				m, err := conn.Read(buf)
				n += int64(m)
				if errors.Is(err, io.EOF) {
					results <- streamResult{bytes: n, end: time.Now()}
					return
				}
				if err != nil {
					results <- streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("download read: %w", err)}
					return
				}
			}
			results <- streamResult{bytes: n, end: time.Now(), err: fmt.Errorf("%w: download read loop bound", errMeasure)}
		}()
	}
	cpu0 := processCPU()
	start := w.open(d)
	opened = true

	timer := time.NewTimer(d + 2*c.grace)
	defer timer.Stop()
	var s sample
	var end time.Time
	for got, served := 0, 0; got < streams || served < streams; {
		select {
		case r := <-results:
			if r.err != nil {
				return sample{}, r.err
			}
			s.bytes += r.bytes
			if r.end.After(end) {
				end = r.end
			}
			got++
		case r := <-srv.sourceDone:
			if r.err != nil {
				return sample{}, r.err
			}
			served++
		case <-timer.C:
			return sample{}, fmt.Errorf("%w: download: streams unfinished %v after the window", errMeasure, 2*c.grace)
		case <-ctx.Done():
			return sample{}, ctx.Err()
		}
	}
	s.cpu = processCPU() - cpu0
	s.elapsed = end.Sub(start)
	s.value = gbits(s.bytes, s.elapsed)
	return s, nil
}

// udpFlood sends 64-byte datagrams to the server as fast as one kernel
// socket can for d, and counts what the server received meanwhile. The
// figure is datagrams received per second, in millions; datagrams still
// queued when the window closes are not counted, so a receiver that keeps
// up reads at the sender's rate and one that does not reads at its own.
func (c *client) udpFlood(ctx context.Context, srv *server, d time.Duration) (sample, error) {
	conn, err := c.dial.DialUDP(srv.port(offUDP))
	if err != nil {
		return sample{}, err
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(d + c.grace))
	payload := make([]byte, udpPayload)
	var sent, sendErrs int
	r0 := srv.udpRecv.Load()
	cpu0 := processCPU()
	start := time.Now()
	until := start.Add(d)
	for i := 0; i < maxOps(d) && ctx.Err() == nil; i++ {
		if i%64 == 0 && !time.Now().Before(until) {
			break
		}
		if _, err := conn.Write(payload); err != nil {
			// ENOBUFS and the like: the sender outran a queue. Count it,
			// but a socket that never sends is broken.
			sendErrs++
			if sent == 0 && sendErrs > 1000 {
				return sample{}, fmt.Errorf("udp send: %w", err)
			}
			continue
		}
		sent++
	}
	elapsed := time.Since(start)
	recv := srv.udpRecv.Load() - r0
	cpu := processCPU() - cpu0
	// Datagrams still queued for this server (in the TAP's queue, the
	// stack, the socket) reach it after the window. Let them, before the
	// next measurement opens its window: on a link shared by two
	// contenders (zcnet and zcnet-netconn) the next one's datagrams would
	// otherwise wait behind this backlog, and a stack slower than the
	// queue is long can spend the whole next window draining it.
	tick := time.NewTicker(udpQuiet)
	defer tick.Stop()
	timeout := time.NewTimer(c.grace)
	defer timeout.Stop()
	drained := settle(ctx, srv.udpRecv.Load, tick.C, timeout.C)
	if recv == 0 {
		return sample{}, fmt.Errorf("%w: udp: none of %d datagrams received", errMeasure, sent)
	}
	if drained != nil {
		return sample{}, fmt.Errorf("%w: udp: after the window: %w", errMeasure, drained)
	}
	return sample{
		value:   float64(recv) / elapsed.Seconds() / 1e6,
		elapsed: elapsed,
		cpu:     cpu,
		extra: map[string]float64{
			"sent_mpps":      float64(sent) / elapsed.Seconds() / 1e6,
			"received_ratio": float64(recv) / float64(max(sent, 1)),
			"send_errors":    float64(sendErrs),
		},
	}, nil
}

// udpQuiet is how long a server must go without receiving a datagram for
// the flood's backlog to count as drained. While a backlog remains, the
// slowest contender (zcnet under -race, a few thousand datagrams a second)
// delivers one far more often than that.
const udpQuiet = 100 * time.Millisecond

// errUnsettled reports a count that kept growing until settle's timeout.
var errUnsettled = errors.New("server still receiving")

// settle waits for count to stop growing: it reads count once, then at
// every tick, and returns nil as soon as a read equals the one before. It
// returns an error wrapping errUnsettled if timeout fires first, or ctx's
// error if ctx ends first.
func settle(ctx context.Context, count func() uint64, tick, timeout <-chan time.Time) error {
	last := count()
	for {
		select {
		case <-tick:
		case <-timeout:
			return fmt.Errorf("%w: %d datagrams so far", errUnsettled, last)
		case <-ctx.Done():
			return ctx.Err()
		}
		n := count()
		if n == last {
			return nil
		}
		last = n
	}
}

// roundTrips makes 1-byte request/response round trips over one TCP
// connection to the server's echo for d. The figure is thousands of round
// trips per second.
func (c *client) roundTrips(ctx context.Context, srv *server, d time.Duration) (sample, error) {
	conn, err := c.dial.DialTCP(ctx, srv.port(offEcho))
	if err != nil {
		return sample{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(d + c.grace))
	req, resp := []byte{'x'}, make([]byte, 1)
	rt := func() error {
		if _, err := conn.Write(req); err != nil {
			return fmt.Errorf("request: %w", err)
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return fmt.Errorf("response: %w", err)
		}
		return nil
	}
	if err := rt(); err != nil { // warm up: connection accepted, paths hot
		return sample{}, err
	}
	cpu0 := processCPU()
	start := time.Now()
	until := start.Add(d)
	n := 0
	for i := 0; i < maxOps(d) && time.Now().Before(until) && ctx.Err() == nil; i++ {
		if err := rt(); err != nil {
			return sample{}, err
		}
		n++
	}
	elapsed := time.Since(start)
	return sample{value: float64(n) / elapsed.Seconds() / 1e3, elapsed: elapsed, cpu: processCPU() - cpu0}, nil
}

// gbits is n bytes over d in Gbit/s.
func gbits(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) * 8 / d.Seconds() / 1e9
}
