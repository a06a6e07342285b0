//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// A TCP-only iperf3 server, so that stock `iperf3 -c` drives the gVisor
// contenders as it drives `iperf3 -s` on the kernel. It speaks iperf3's
// control protocol as cmd/netstackd's iperf3.go describes it:
//
//  1. The client connects and sends a cookie (cookieLen bytes); the server
//     answers PARAM_EXCHANGE, the client sends its parameters (a 4-byte
//     big-endian length and JSON).
//  2. The server answers CREATE_STREAMS; the client opens one connection
//     per stream to the same port, each starting with the cookie.
//  3. The server sends TEST_START and TEST_RUNNING; data flows (to the
//     server, or from it with -R) until the client sends TEST_END.
//  4. The server stops its streams and sends EXCHANGE_RESULTS; the client
//     sends its results, the server its own (bytes per stream).
//  5. The server sends DISPLAY_RESULTS; the client answers IPERF_DONE.
//
// A connection arriving while a test runs that is not one of its streams
// gets ACCESS_DENIED. UDP, bidirectional and SCTP tests are refused with
// SERVER_ERROR.

const (
	iperfCookieLen = 37 // 36 characters and a NUL

	ipTestStart       int8 = 1
	ipTestRunning     int8 = 2
	ipTestEnd         int8 = 4
	ipParamExchange   int8 = 9
	ipCreateStreams   int8 = 10
	ipServerTerminate int8 = 11
	ipClientTerminate int8 = 12
	ipExchangeResults int8 = 13
	ipDisplayResults  int8 = 14
	ipIperfDone       int8 = 16
	ipAccessDenied    int8 = -1
	ipServerError     int8 = -2

	ieProtocol   = 10 // iperf_api.h: "cannot run this protocol"
	ieNumStreams = 11 // bad number of streams
	ieStreamAcc  = 16 // could not accept the streams
)

// stateByte is a state's byte on the wire (a signed char).
func stateByte(s int8) byte { return byte(s) }

// iperfStream is a connection an iperf3 server runs on: bytes for the
// control protocol (Read and Write), and the data loops, which each
// transport runs its own way (the zero-copy sockets without copying).
type iperfStream interface {
	io.ReadWriteCloser
	// SetReadDeadline bounds Read (a zero time: no bound).
	SetReadDeadline(t time.Time) error
	// drain reads and discards until an error (EOF, or Close), adding
	// every byte to n.
	drain(n *atomic.Int64) error
	// fill writes blocks of size bytes until an error (Close), adding
	// every byte sent to n.
	fill(size int, n *atomic.Int64) error
}

// iperfListener accepts iperfStreams.
type iperfListener interface {
	Accept() (iperfStream, error)
	Close() error
}

// iperfServer serves one test at a time on ln.
type iperfServer struct {
	ln  iperfListener
	log io.Writer

	mu  sync.Mutex
	cur *iperfTest // +checklocks:mu; the test that is taking streams, if any
	on  bool       // +checklocks:mu; a test is running
}

type iperfTest struct {
	cookie  [iperfCookieLen]byte
	streams chan iperfStream // capacity: the streams the test wants
}

// serve runs until ln is closed.
func (s *iperfServer) serve(wg *sync.WaitGroup) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(c)
		}()
	}
}

// handle reads a new connection's cookie and makes it a test's stream, a
// new test's control connection, or turns it away.
func (s *iperfServer) handle(c iperfStream) {
	var cookie [iperfCookieLen]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, cookie[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	if t := s.cur; t != nil && t.cookie == cookie {
		select {
		case t.streams <- c:
			s.mu.Unlock()
			return
		default: // more streams than it asked for
		}
	}
	if s.on {
		s.mu.Unlock()
		c.Write([]byte{stateByte(ipAccessDenied)})
		c.Close()
		return
	}
	s.on = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.on, s.cur = false, nil
		s.mu.Unlock()
	}()
	if err := s.run(c, cookie); err != nil {
		fmt.Fprintf(s.log, "iperf3 test: %v\n", err)
	}
	c.Close()
}

// iperfParams are the parameters of a test this server reads.
type iperfParams struct {
	TCP           bool    `json:"tcp"`
	UDP           bool    `json:"udp"`
	SCTP          bool    `json:"sctp"`
	Parallel      float64 `json:"parallel"`
	Reverse       bool    `json:"reverse"`
	Bidirectional bool    `json:"bidirectional"`
	Len           float64 `json:"len"`
	Time          float64 `json:"time"`
	Omit          float64 `json:"omit"`
}

type iperfStreamResult struct {
	ID          int     `json:"id"`
	Bytes       int64   `json:"bytes"`
	Retransmits int     `json:"retransmits"`
	Jitter      float64 `json:"jitter"`
	Errors      int     `json:"errors"`
	Packets     int     `json:"packets"`
	StartTime   float64 `json:"start_time"`
	EndTime     float64 `json:"end_time"`
}

type iperfResults struct {
	CPUUtilTotal         float64             `json:"cpu_util_total"`
	CPUUtilUser          float64             `json:"cpu_util_user"`
	CPUUtilSystem        float64             `json:"cpu_util_system"`
	SenderHasRetransmits int                 `json:"sender_has_retransmits"`
	Streams              []iperfStreamResult `json:"streams"`
}

// iperfStreamID is iperf3's id of the i-th stream (from 0): 1, 3, 4, …
func iperfStreamID(i int) int {
	if i == 0 {
		return 1
	}
	return i + 2
}

// run runs one test on its control connection c.
func (s *iperfServer) run(c iperfStream, cookie [iperfCookieLen]byte) error {
	deadline := func(d time.Duration) { c.SetReadDeadline(time.Now().Add(d)) }
	state := func(st int8) error {
		_, err := c.Write([]byte{stateByte(st)})
		return err
	}
	refuse := func(code int32, err error) error {
		msg := make([]byte, 9)
		msg[0] = stateByte(ipServerError)
		binary.BigEndian.PutUint32(msg[1:], uint32(code))
		c.Write(msg)
		return err
	}
	deadline(10 * time.Second)
	if err := state(ipParamExchange); err != nil {
		return err
	}
	var p iperfParams
	if err := readIperfJSON(c, &p, 64<<10); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if !p.TCP || p.UDP || p.SCTP || p.Bidirectional {
		return refuse(ieProtocol, fmt.Errorf("refused: only TCP tests, one direction (%+v)", p))
	}
	n := int(p.Parallel)
	if n < 1 || n > 128 {
		return refuse(ieNumStreams, fmt.Errorf("refused: %v streams", p.Parallel))
	}
	blk := int(p.Len)
	if blk <= 0 || blk > 1<<20 {
		blk = 128 << 10
	}
	t := &iperfTest{cookie: cookie, streams: make(chan iperfStream, n)}
	s.mu.Lock()
	s.cur = t
	s.mu.Unlock()
	var conns []iperfStream
	defer func() {
		for _, sc := range conns {
			sc.Close()
		}
	}()
	if err := state(ipCreateStreams); err != nil {
		return err
	}
	setup := time.NewTimer(10 * time.Second)
	defer setup.Stop()
	for len(conns) < n {
		select {
		case sc := <-t.streams:
			conns = append(conns, sc)
		case <-setup.C:
			return refuse(ieStreamAcc, fmt.Errorf("%d of %d streams arrived", len(conns), n))
		}
	}
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()

	if err := state(ipTestStart); err != nil {
		return err
	}
	start := time.Now()
	counts := make([]atomic.Int64, n)
	var wg sync.WaitGroup
	for i, sc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.Reverse {
				sc.fill(blk, &counts[i])
			} else {
				sc.drain(&counts[i])
			}
		}()
	}
	stopStreams := func() {
		for _, sc := range conns {
			sc.Close()
		}
		wg.Wait()
	}
	if err := state(ipTestRunning); err != nil {
		stopStreams()
		return err
	}
	// Until TEST_END: the test's duration and a grace.
	deadline(time.Duration(p.Time+p.Omit)*time.Second + 30*time.Second)
	for {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			stopStreams()
			return fmt.Errorf("waiting for TEST_END: %w", err)
		}
		st := int8(b[0])
		if st == ipTestEnd {
			break
		}
		if st == ipClientTerminate || st == ipIperfDone {
			stopStreams()
			return fmt.Errorf("the client ended the test (%d)", st)
		}
	}
	stopStreams()
	secs := time.Since(start).Seconds()

	deadline(10 * time.Second)
	if err := state(ipExchangeResults); err != nil {
		return err
	}
	var theirs json.RawMessage
	if err := readIperfJSON(c, &theirs, 4<<20); err != nil {
		return fmt.Errorf("client results: %w", err)
	}
	res := iperfResults{SenderHasRetransmits: -1}
	if p.Reverse {
		res.SenderHasRetransmits = 0
	}
	for i := range conns {
		res.Streams = append(res.Streams, iperfStreamResult{ID: iperfStreamID(i), Bytes: counts[i].Load(), Retransmits: -1, EndTime: secs})
	}
	if err := writeIperfJSON(c, res); err != nil {
		return err
	}
	if err := state(ipDisplayResults); err != nil {
		return err
	}
	var b [1]byte
	io.ReadFull(c, b[:]) // IPERF_DONE, or the client's close: either ends it
	return nil
}

// readIperfJSON reads a length-prefixed JSON message of at most limit
// bytes into v.
func readIperfJSON(r io.Reader, v any, limit int) error {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 || n > uint32(limit) {
		return fmt.Errorf("JSON message of %d bytes (limit %d)", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// writeIperfJSON writes v as a length-prefixed JSON message.
func writeIperfJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	_, err = w.Write(append(msg, b...))
	return err
}

// errStreamClosed ends a data loop whose stream was closed.
var errStreamClosed = errors.New("stream closed")

// ctxWithDeadline returns ctx bounded by t, unless t is zero.
func ctxWithDeadline(ctx context.Context, t time.Time) (context.Context, context.CancelFunc) {
	if t.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, t)
}
