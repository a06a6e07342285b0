package iperf3

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// The iperf3 control protocol, as esnet/iperf speaks it (iperf_api.c,
// iperf_client_api.c, iperf_server_api.c, iperf_tcp.c, iperf_udp.c; stable
// since 3.1, checked against 3.12 and 3.19), so that a stock iperf3 can be
// the client or the server of a zcnet perf test.
//
// 1. The client opens the control connection (TCP, port 5201) and sends a
//    cookie: 36 random characters of [a-z2-7] and a NUL (cookieLen bytes).
// 2. Every step is a state byte (a signed char) on the control connection.
//    The server sends PARAM_EXCHANGE; the client answers with its
//    parameters as JSON.
// 3. JSON messages are a 4-byte big-endian length and that many bytes of
//    JSON, no terminator.
// 4. The server sends CREATE_STREAMS. TCP: the client opens one connection
//    per stream to the same port, each starting with the cookie. UDP: the
//    client sends each stream's first datagram, udpConnectMsg, from its own
//    socket to the same port; the server answers udpConnectReply.
// 5. The server sends TEST_START, then TEST_RUNNING; data flows. The client
//    times the test and sends TEST_END.
// 6. The server stops its streams and sends EXCHANGE_RESULTS; the client
//    sends its results (JSON), the server its own.
// 7. The server sends DISPLAY_RESULTS; the client answers IPERF_DONE and
//    both close.
// A server that is busy answers a new control connection with
// ACCESS_DENIED; one that fails sends SERVER_ERROR and two 4-byte
// big-endian numbers, iperf3's error code and errno.
//
// UDP datagrams start with a header (big-endian): seconds and microseconds
// of the send time (4 bytes each), then the sequence number, from 1: 4 bytes,
// or 8 with the udp_counters_64bit parameter. The rest is payload.

// Port is iperf3's port.
const Port = 5201

// cookieLen is the cookie's size on the wire, NUL included (COOKIE_SIZE).
const cookieLen = 37

// iperfState is a control-connection state byte.
type iperfState int8

// State bytes (iperf_api.h).
const (
	stTestStart       iperfState = 1
	stTestRunning     iperfState = 2
	stTestEnd         iperfState = 4
	stParamExchange   iperfState = 9
	stCreateStreams   iperfState = 10
	stServerTerminate iperfState = 11
	stClientTerminate iperfState = 12
	stExchangeResults iperfState = 13
	stDisplayResults  iperfState = 14
	stIperfStart      iperfState = 15
	stIperfDone       iperfState = 16
	stAccessDenied    iperfState = -1
	stServerError     iperfState = -2
)

// wire is the state's byte on the wire (a signed char).
func (s iperfState) wire() byte { return byte(s) }

func (s iperfState) String() string {
	names := map[iperfState]string{
		stTestStart: "TEST_START", stTestRunning: "TEST_RUNNING", stTestEnd: "TEST_END",
		stParamExchange: "PARAM_EXCHANGE", stCreateStreams: "CREATE_STREAMS",
		stServerTerminate: "SERVER_TERMINATE", stClientTerminate: "CLIENT_TERMINATE",
		stExchangeResults: "EXCHANGE_RESULTS", stDisplayResults: "DISPLAY_RESULTS",
		stIperfStart: "IPERF_START", stIperfDone: "IPERF_DONE",
		stAccessDenied: "ACCESS_DENIED", stServerError: "SERVER_ERROR",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", int8(s))
}

// iperf3's error codes (i_errno) that cross the wire in SERVER_ERROR.
const (
	ieUnimp       = 13  // IEUNIMP: not implemented
	ieNumStreams  = 6   // IENUMSTREAMS
	ieBlockSize   = 7   // IEBLOCKSIZE
	ieDuration    = 5   // IEDURATION
	ieUDPBlock    = 20  // IEUDPBLOCKSIZE
	ieRecvParams  = 114 // IERECVPARAMS
	ieProtocol    = 131 // IEPROTOCOL
	ieStreamAcc   = 204 // IESTREAMACCEPT
	ieStreamListn = 202 // IESTREAMLISTEN
	ieInitTest    = 101 // IEINITTEST
)

// UDP stream set-up datagrams, as bytes on the wire. iperf3 writes
// UDP_CONNECT_MSG and UDP_CONNECT_REPLY as host-order integers, defined per
// byte order so the bytes are "9876" and "6789" everywhere; before 3.11 the
// reply was 987654321 in host order, which x86 sends as b1 68 de 3a.
var (
	udpConnectMsg   = [4]byte{'9', '8', '7', '6'}
	udpConnectReply = [4]byte{'6', '7', '8', '9'}
	udpLegacyReply  = [4]byte{0xb1, 0x68, 0xde, 0x3a}
)

// Limits (iperf.h).
const (
	DefaultTCPBlock = 128 << 10 // DEFAULT_TCP_BLKSIZE
	DefaultUDPBlock = 1460      // DEFAULT_UDP_BLKSIZE
	MaxTCPBlock     = 1 << 20   // MAX_BLOCKSIZE
	MaxUDPBlock     = 65535 - 8 - 20
	MaxStreams      = 128     // MAX_STREAMS
	MaxTime         = 86400   // MAX_TIME, seconds
	maxOmit         = 600     // MAX_OMIT_TIME
	DefaultUDPRate  = 1 << 20 // UDP_RATE, bits/s
	// maxParamsJSON bounds the parameters a client may send
	// (MAX_PARAMS_JSON_STRING is 8 KiB; newer clients send a little more).
	maxParamsJSON = 64 << 10
	// maxResultsJSON bounds results, which may carry the peer's whole
	// output (get_server_output).
	maxResultsJSON = 16 << 20
	udpHeader32    = 12
	UDPHeader64    = 16
)

// Errors of the protocol.
var (
	errIperfProtocol = errors.New("iperf3 protocol error")
	errBusy          = errors.New("the server is busy running a test; try again later")
)

// newCookie returns a fresh cookie: 36 characters of [a-z2-7] and a NUL,
// as make_cookie does.
func newCookie() [cookieLen]byte {
	const chars = "abcdefghijklmnopqrstuvwxyz234567"
	var c [cookieLen]byte
	rand.Read(c[:])
	for i := 0; i < cookieLen-1; i++ {
		c[i] = chars[int(c[i])%len(chars)]
	}
	c[cookieLen-1] = 0
	return c
}

// ctrlConn is a control connection: a transport.Conn read as a byte stream
// (the protocol reads a byte, a length, a document) and written whole. One
// goroutine reads at a time; writes come from the test's goroutine.
type ctrlConn struct {
	c transport.Conn
	// rctx bounds reads; the reading goroutine may change it between
	// reads. wctx bounds writes; the writing goroutine may change it.
	rctx, wctx context.Context
	pending    []byte // received, not yet read; a copy: control messages are small
	buf        []byte // pending's backing store
}

func newCtrlConn(ctx context.Context, c transport.Conn) *ctrlConn {
	return &ctrlConn{c: c, rctx: ctx, wctx: ctx}
}

// Read implements io.Reader over the connection's chunks.
func (cc *ctrlConn) Read(p []byte) (int, error) {
	if len(cc.pending) == 0 {
		ch, err := cc.c.Recv(cc.rctx)
		if err != nil {
			return 0, err
		}
		cc.buf = append(cc.buf[:0], ch.Bytes()...)
		ch.Release()
		cc.pending = cc.buf
	}
	n := copy(p, cc.pending)
	cc.pending = cc.pending[n:]
	return n, nil
}

func (cc *ctrlConn) write(p []byte) error {
	_, err := transport.SendBytes(cc.wctx, cc.c, p)
	return err
}

// writeState sends one state byte.
func (cc *ctrlConn) writeState(s iperfState) error {
	return cc.write([]byte{s.wire()})
}

// readState reads one state byte.
func (cc *ctrlConn) readState() (iperfState, error) {
	var b [1]byte
	if _, err := io.ReadFull(cc, b[:]); err != nil {
		return 0, err
	}
	return iperfState(int8(b[0])), nil
}

// writeJSON sends v as a length-prefixed JSON document.
func (cc *ctrlConn) writeJSON(v any) error {
	doc, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := make([]byte, 4+len(doc))
	binary.BigEndian.PutUint32(msg, uint32(len(doc)))
	copy(msg[4:], doc)
	return cc.write(msg)
}

// readJSON reads a length-prefixed JSON document of at most limit bytes
// into v.
func (cc *ctrlConn) readJSON(v any, limit int) error {
	var hdr [4]byte
	if _, err := io.ReadFull(cc, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(limit) {
		return fmt.Errorf("%w: JSON message of %d bytes (limit %d)", errIperfProtocol, n, limit)
	}
	doc := make([]byte, n)
	if _, err := io.ReadFull(cc, doc); err != nil {
		return err
	}
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("%w: bad JSON message: %v", errIperfProtocol, err)
	}
	return nil
}

// readCookie reads a cookie.
func (cc *ctrlConn) readCookie() ([cookieLen]byte, error) {
	var c [cookieLen]byte
	_, err := io.ReadFull(cc, c[:])
	return c, err
}

// writeServerError sends SERVER_ERROR with iperf3's error code and an errno.
func (cc *ctrlConn) writeServerError(code, errno int32) error {
	var msg [9]byte
	msg[0] = stServerError.wire()
	binary.BigEndian.PutUint32(msg[1:], uint32(code))
	binary.BigEndian.PutUint32(msg[5:], uint32(errno))
	return cc.write(msg[:])
}

// readServerError reads the two numbers after SERVER_ERROR.
func (cc *ctrlConn) readServerError() error {
	var msg [8]byte
	if _, err := io.ReadFull(cc, msg[:]); err != nil {
		return fmt.Errorf("the server reported an error and closed: %w", err)
	}
	code := int32(binary.BigEndian.Uint32(msg[:4]))
	errno := int32(binary.BigEndian.Uint32(msg[4:]))
	return fmt.Errorf("the server reported an error: %s (iperf3 error %d, errno %d)", iperfErrorText(code), code, errno)
}

// iperfErrorText describes the iperf3 error codes a server sends.
func iperfErrorText(code int32) string {
	switch code {
	case ieUnimp:
		return "not implemented"
	case ieNumStreams:
		return "too many parallel streams"
	case ieBlockSize:
		return "block size too large"
	case ieUDPBlock:
		return "invalid UDP block size"
	case ieDuration:
		return "test too long"
	case ieProtocol:
		return "protocol not supported"
	case ieRecvParams:
		return "bad parameters"
	case ieStreamAcc, ieStreamListn:
		return "cannot accept the streams"
	case 27:
		return "total bitrate above the server's limit"
	case 142:
		return "authentication failed"
	}
	return "see iperf3's iperf_api.h"
}

// iperfParams are the test parameters a client sends (send_parameters).
// Numbers are float64 because cJSON prints large ones with an exponent.
// Unknown keys are ignored, as iperf3 does.
type iperfParams struct {
	TCP              bool    `json:"tcp,omitempty"`
	UDP              bool    `json:"udp,omitempty"`
	SCTP             bool    `json:"sctp,omitempty"`
	MPTCP            bool    `json:"mptcp,omitempty"`
	Omit             float64 `json:"omit"`
	Time             float64 `json:"time"`
	Num              float64 `json:"num"`
	Blockcount       float64 `json:"blockcount"`
	MSS              float64 `json:"MSS,omitempty"`
	Nodelay          bool    `json:"nodelay,omitempty"`
	Parallel         float64 `json:"parallel"`
	Reverse          bool    `json:"reverse,omitempty"`
	Bidirectional    bool    `json:"bidirectional,omitempty"`
	Window           float64 `json:"window,omitempty"`
	Len              float64 `json:"len,omitempty"`
	Bandwidth        float64 `json:"bandwidth,omitempty"`
	PacingTimer      float64 `json:"pacing_timer,omitempty"`
	Burst            float64 `json:"burst,omitempty"`
	Title            string  `json:"title,omitempty"`
	Congestion       string  `json:"congestion,omitempty"`
	GetServerOutput  float64 `json:"get_server_output,omitempty"`
	UDPCounters64Bit float64 `json:"udp_counters_64bit,omitempty"`
	ClientVersion    string  `json:"client_version,omitempty"`
}

// Spec is a checked set of parameters: what both sides run.
type Spec struct {
	UDP     bool
	Reverse bool
	// Bidir is iperf3's --bidir: Streams streams each way, the client's
	// sending ones first.
	Bidir        bool
	Streams      int // per direction
	BlockSize    int
	Duration     int // seconds; 0 with bytes or blocks
	Omit         int
	Bytes        uint64
	Blocks       uint64
	Rate         uint64 // bits/s per stream; 0: unlimited
	Counters64   bool
	ServerOutput bool // the client asked for the server's output
	Title        string
}

// spec checks p as a server must (a client may be anything on the
// network) and returns the test, or iperf3's error code and a message.
func (p *iperfParams) spec() (Spec, int32, error) {
	var s Spec
	whole := func(f float64, max float64) (int64, bool) {
		if f < 0 || f > max || f != math.Trunc(f) {
			return 0, false
		}
		return int64(f), true
	}
	switch {
	case p.SCTP, p.MPTCP:
		return s, ieProtocol, errors.New("only TCP and UDP tests are supported")
	case p.UDP && p.TCP:
		return s, ieRecvParams, errors.New("both tcp and udp set")
	case !p.UDP && !p.TCP:
		return s, ieProtocol, errors.New("neither tcp nor udp set")
	}
	// iperf3 sends reverse or bidirectional, never both; its server
	// takes the latter when both come, and so does this one.
	s.UDP, s.Reverse, s.Bidir = p.UDP, p.Reverse && !p.Bidirectional, p.Bidirectional
	n, ok := whole(p.Parallel, MaxStreams)
	if !ok || n < 1 {
		return s, ieNumStreams, fmt.Errorf("parallel %v: want 1 to %d", p.Parallel, MaxStreams)
	}
	s.Streams = int(n)
	d, ok := whole(p.Time, MaxTime)
	if !ok {
		return s, ieDuration, fmt.Errorf("time %v: want 0 to %d seconds", p.Time, MaxTime)
	}
	s.Duration = int(d)
	o, ok := whole(p.Omit, maxOmit)
	if !ok {
		return s, ieRecvParams, fmt.Errorf("omit %v: want 0 to %d seconds", p.Omit, maxOmit)
	}
	s.Omit = int(o)
	nb, ok1 := whole(p.Num, 1<<62)
	nk, ok2 := whole(p.Blockcount, 1<<62)
	if !ok1 || !ok2 {
		return s, ieRecvParams, fmt.Errorf("num %v, blockcount %v: want whole numbers", p.Num, p.Blockcount)
	}
	s.Bytes, s.Blocks = uint64(nb), uint64(nk)
	if s.Duration == 0 && s.Bytes == 0 && s.Blocks == 0 {
		return s, ieDuration, errors.New("no end condition: time, num and blockcount are all 0")
	}
	l, ok := whole(p.Len, MaxUDPBlock)
	switch {
	case s.UDP && (!ok || (l != 0 && l < UDPHeader64)):
		return s, ieUDPBlock, fmt.Errorf("len %v: want %d to %d bytes for UDP", p.Len, UDPHeader64, MaxUDPBlock)
	case !s.UDP && (p.Len < 0 || p.Len > MaxTCPBlock || p.Len != math.Trunc(p.Len)):
		return s, ieBlockSize, fmt.Errorf("len %v: want 1 to %d bytes", p.Len, MaxTCPBlock)
	}
	s.BlockSize = int(p.Len)
	if s.BlockSize == 0 {
		s.BlockSize = DefaultTCPBlock
		if s.UDP {
			s.BlockSize = DefaultUDPBlock
		}
	}
	r, ok := whole(p.Bandwidth, 1<<62)
	if !ok {
		return s, ieRecvParams, fmt.Errorf("bandwidth %v: want a whole number of bits/s", p.Bandwidth)
	}
	s.Rate = uint64(r)
	s.Counters64 = p.UDPCounters64Bit != 0
	s.ServerOutput = p.GetServerOutput != 0
	s.Title = p.Title
	return s, 0, nil
}

// total is the number of stream connections the test has: Streams, or
// twice that with Bidir.
func (s Spec) total() int {
	if s.Bidir {
		return 2 * s.Streams
	}
	return s.Streams
}

// params is the inverse of spec: what a client sends for s.
func (s Spec) params() iperfParams {
	p := iperfParams{
		TCP: !s.UDP, UDP: s.UDP, Omit: float64(s.Omit), Time: float64(s.Duration),
		Num: float64(s.Bytes), Blockcount: float64(s.Blocks), Parallel: float64(s.Streams),
		Reverse: s.Reverse, Bidirectional: s.Bidir, Len: float64(s.BlockSize), Bandwidth: float64(s.Rate),
		Title: s.Title, ClientVersion: "3.12",
	}
	if s.Counters64 {
		p.UDPCounters64Bit = 1
	}
	if s.ServerOutput {
		p.GetServerOutput = 1
	}
	return p
}

// udpHeaderLen is the size of the UDP datagram header for s.
func (s Spec) udpHeaderLen() int {
	if s.Counters64 {
		return UDPHeader64
	}
	return udpHeader32
}

// Results is what each side sends in EXCHANGE_RESULTS
// (send_results / get_results).
type Results struct {
	CPUUtilTotal         float64         `json:"cpu_util_total"`
	CPUUtilUser          float64         `json:"cpu_util_user"`
	CPUUtilSystem        float64         `json:"cpu_util_system"`
	SenderHasRetransmits float64         `json:"sender_has_retransmits"`
	CongestionUsed       string          `json:"congestion_used,omitempty"`
	Streams              []StreamJSON    `json:"streams"`
	ServerOutputJSON     json.RawMessage `json:"server_output_json,omitempty"`
	ServerOutputText     string          `json:"server_output_text,omitempty"`
}

// StreamJSON is one stream's results.
type StreamJSON struct {
	ID          float64 `json:"id"`
	Bytes       float64 `json:"bytes"`
	Retransmits float64 `json:"retransmits"`
	Jitter      float64 `json:"jitter"` // seconds
	Errors      float64 `json:"errors"`
	Packets     float64 `json:"packets"`
	StartTime   float64 `json:"start_time"`
	EndTime     float64 `json:"end_time"`
}

// streamID is iperf3's id of the i-th stream (from 0): 1, 3, 4, 5, ...
// (iperf_add_stream numbers the first 1 and the rest from 3).
func streamID(i int) int {
	if i == 0 {
		return 1
	}
	return i + 2
}

// putUDPHeader writes the header of datagram seq, sent at sec.usec.
func putUDPHeader(p []byte, sec, usec uint32, seq uint64, counters64 bool) {
	binary.BigEndian.PutUint32(p[0:4], sec)
	binary.BigEndian.PutUint32(p[4:8], usec)
	if counters64 {
		binary.BigEndian.PutUint64(p[8:16], seq)
	} else {
		binary.BigEndian.PutUint32(p[8:12], uint32(seq))
	}
}

// parseUDPHeader reads a datagram's header; ok is false if p is too short.
func parseUDPHeader(p []byte, counters64 bool) (sec, usec uint32, seq uint64, ok bool) {
	need := udpHeader32
	if counters64 {
		need = UDPHeader64
	}
	if len(p) < need {
		return 0, 0, 0, false
	}
	sec = binary.BigEndian.Uint32(p[0:4])
	usec = binary.BigEndian.Uint32(p[4:8])
	if counters64 {
		seq = binary.BigEndian.Uint64(p[8:16])
	} else {
		seq = uint64(binary.BigEndian.Uint32(p[8:12]))
	}
	return sec, usec, seq, true
}
