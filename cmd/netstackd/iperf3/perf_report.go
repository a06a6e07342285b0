package iperf3

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// Reports: the progress lines, the summary and the JSON document of a perf
// test, the same on the client and the server. The JSON follows iperf3's
// --json layout (start, intervals, end with sum_sent and sum_received, and
// sum for UDP), so tools that read iperf3's output read ours; a "zcnet"
// object adds what iperf3 does not have.

// Report is a test's JSON report.
type Report struct {
	Start            ReportStart      `json:"start"`
	Intervals        []ReportInterval `json:"intervals"`
	End              ReportEnd        `json:"end"`
	Error            string           `json:"error,omitempty"`
	ServerOutputJSON json.RawMessage  `json:"server_output_json,omitempty"`
	ServerOutputText string           `json:"server_output_text,omitempty"`
	ZCNet            ReportZCNet      `json:"zcnet"`
}

type ReportStart struct {
	Connected          []ReportConnected `json:"connected"`
	Version            string            `json:"version"`
	SystemInfo         string            `json:"system_info"`
	Timestamp          ReportTimestamp   `json:"timestamp"`
	ConnectingTo       *ReportHostPort   `json:"connecting_to,omitempty"`
	AcceptedConnection *ReportHostPort   `json:"accepted_connection,omitempty"`
	Cookie             string            `json:"cookie"`
	TestStart          ReportTestStart   `json:"test_start"`
}

type ReportConnected struct {
	Socket     int    `json:"socket"`
	LocalHost  string `json:"local_host"`
	LocalPort  uint16 `json:"local_port"`
	RemoteHost string `json:"remote_host"`
	RemotePort uint16 `json:"remote_port"`
}

type ReportTimestamp struct {
	Time     string `json:"time"`
	Timesecs int64  `json:"timesecs"`
}

type ReportHostPort struct {
	Host string `json:"host"`
	Port uint16 `json:"port"`
}

type ReportTestStart struct {
	Protocol      string `json:"protocol"`
	NumStreams    int    `json:"num_streams"`
	Blksize       int    `json:"blksize"`
	Omit          int    `json:"omit"`
	Duration      int    `json:"duration"`
	Bytes         uint64 `json:"bytes"`
	Blocks        uint64 `json:"blocks"`
	Reverse       int    `json:"reverse"`
	TargetBitrate uint64 `json:"target_bitrate"`
}

type ReportInterval struct {
	Streams []ReportSum `json:"streams"`
	Sum     ReportSum   `json:"sum"`
}

// ReportSum is a stream's or a sum's counts over a span; the pointer
// fields appear only where they mean something.
type ReportSum struct {
	Socket        int      `json:"socket,omitempty"`
	Start         float64  `json:"start"`
	End           float64  `json:"end"`
	Seconds       float64  `json:"seconds"`
	Bytes         uint64   `json:"bytes"`
	BitsPerSecond float64  `json:"bits_per_second"`
	Retransmits   *int64   `json:"retransmits,omitempty"`
	JitterMs      *float64 `json:"jitter_ms,omitempty"`
	LostPackets   *int64   `json:"lost_packets,omitempty"`
	Packets       *uint64  `json:"packets,omitempty"`
	LostPercent   *float64 `json:"lost_percent,omitempty"`
	OutOfOrder    *int64   `json:"out_of_order,omitempty"`
	Omitted       *bool    `json:"omitted,omitempty"`
	Sender        bool     `json:"sender"`
}

type ReportEnd struct {
	Streams     []ReportEndStream `json:"streams"`
	SumSent     ReportSum         `json:"sum_sent"`
	SumReceived ReportSum         `json:"sum_received"`
	Sum         *ReportSum        `json:"sum,omitempty"`
	CPU         ReportCPU         `json:"cpu_utilization_percent"`
}

type ReportEndStream struct {
	Sender   *ReportSum `json:"sender,omitempty"`
	Receiver *ReportSum `json:"receiver,omitempty"`
	UDP      *ReportSum `json:"udp,omitempty"`
}

type ReportCPU struct {
	HostTotal    float64 `json:"host_total"`
	HostUser     float64 `json:"host_user"`
	HostSystem   float64 `json:"host_system"`
	RemoteTotal  float64 `json:"remote_total"`
	RemoteUser   float64 `json:"remote_user"`
	RemoteSystem float64 `json:"remote_system"`
}

// ReportZCNet is what zcnet adds: which sockets this side used, its role,
// and, on zcnet, the copy budget.
type ReportZCNet struct {
	Transport string                `json:"transport"`
	Role      string                `json:"role"`
	Copy      *transport.CopyBudget `json:"copy,omitempty"`
}

// Outcome is a finished test as one side saw it: its own counts and
// the peer's.
type Outcome struct {
	spec      Spec
	role      string // "client" or "server"
	transport string
	sender    bool // this side sent
	local     []streamResult
	peer      Results
	cpu       cpuUsage
	samples   []intervalSample
	start     time.Time
	cookie    string
	connected []ReportConnected
	peerAddr  ReportHostPort
	copy      *transport.CopyBudget
	// Err is the error the test ended with, if any; the reports print it.
	Err error
}

// Peer returns the results the other side sent at the end of the test,
// with the server's output if the client asked for it.
func (o *Outcome) Peer() Results { return o.peer }

// side is one direction's counts of a stream, or of the sum.
type side struct {
	bytes       uint64
	seconds     float64
	retransmits int64 // -1 unknown
	packets     uint64
	lost        int64
	outOfOrder  int64
	jitter      float64 // seconds
}

func (s side) bps() float64 {
	if s.seconds <= 0 {
		return 0
	}
	return float64(s.bytes) * 8 / s.seconds
}

// sides returns each stream's sender and receiver counts, in stream order,
// from this side's results and the peer's (matched by stream id).
func (o *Outcome) sides() (snd, rcv []side) {
	peer := map[int]StreamJSON{}
	for _, p := range o.peer.Streams {
		peer[int(p.ID)] = p
	}
	for _, l := range o.local {
		mine := side{bytes: l.bytes, seconds: l.seconds, retransmits: l.retransmits, packets: l.packets, lost: l.lost, outOfOrder: l.outOfOrder, jitter: l.jitter}
		p, ok := peer[l.id]
		theirs := side{retransmits: -1}
		if ok {
			theirs = side{bytes: uint64(p.Bytes), seconds: p.EndTime - p.StartTime, retransmits: int64(p.Retransmits),
				packets: uint64(p.Packets), lost: int64(p.Errors), jitter: p.Jitter}
			if o.peer.SenderHasRetransmits != 1 {
				theirs.retransmits = -1
			}
		}
		if l.sends {
			snd, rcv = append(snd, mine), append(rcv, theirs)
		} else {
			snd, rcv = append(snd, theirs), append(rcv, mine)
		}
	}
	return snd, rcv
}

// here returns the sums of what this side sent (as its sender counted it)
// and what it received (as it counted it): one of them is empty unless the
// test is bidirectional.
func (o *Outcome) here() (sent, received side) {
	snd, rcv := o.sides()
	var s, r []side
	for i, l := range o.local {
		if l.sends {
			s = append(s, snd[i])
		} else {
			r = append(r, rcv[i])
		}
	}
	return sum(s), sum(r)
}

// sum adds sides up: bytes, packets and losses add, the time is the
// longest, jitter is the mean.
// BytesReceived returns the bytes the receiving side of the test counted,
// over all its streams.
func (o *Outcome) BytesReceived() uint64 {
	_, rcv := o.sides()
	return sum(rcv).bytes
}

func sum(ss []side) side {
	t := side{}
	known := len(ss) > 0
	for _, s := range ss {
		t.bytes += s.bytes
		t.packets += s.packets
		t.lost += s.lost
		t.outOfOrder += s.outOfOrder
		t.jitter += s.jitter
		t.seconds = math.Max(t.seconds, s.seconds)
		if s.retransmits < 0 {
			known = false
		} else {
			t.retransmits += s.retransmits
		}
	}
	if !known {
		t.retransmits = -1
	}
	if len(ss) > 0 {
		t.jitter /= float64(len(ss))
	}
	return t
}

func ptr[T any](v T) *T { return &v }

// jsonSum renders a side for the JSON report.
func (o *Outcome) jsonSum(s side, sender bool, socket int) ReportSum {
	j := ReportSum{Socket: socket, Start: 0, End: s.seconds, Seconds: s.seconds, Bytes: s.bytes, BitsPerSecond: s.bps(), Sender: sender}
	if !o.spec.UDP {
		if sender && s.retransmits >= 0 {
			j.Retransmits = ptr(s.retransmits)
		}
		return j
	}
	j.Packets = ptr(s.packets)
	if !sender {
		j.JitterMs = ptr(s.jitter * 1000)
		j.LostPackets = ptr(s.lost)
		j.OutOfOrder = ptr(s.outOfOrder)
		if s.packets > 0 {
			j.LostPercent = ptr(100 * float64(s.lost) / float64(s.packets))
		} else {
			j.LostPercent = ptr(0.0)
		}
	}
	return j
}

// JSONReport builds the test's JSON document.
func (o *Outcome) JSONReport() Report {
	proto := "TCP"
	if o.spec.UDP {
		proto = "UDP"
	}
	rev := 0
	if o.spec.Reverse {
		rev = 1
	}
	j := Report{
		Start: ReportStart{
			Connected:  o.connected,
			Version:    "netstackd (zcnet), iperf3 protocol",
			SystemInfo: fmt.Sprintf("%s %s %s", runtime.GOOS, runtime.GOARCH, runtime.Version()),
			Timestamp:  ReportTimestamp{Time: o.start.UTC().Format(time.RFC1123), Timesecs: o.start.Unix()},
			Cookie:     o.cookie,
			TestStart: ReportTestStart{Protocol: proto, NumStreams: o.spec.Streams, Blksize: o.spec.BlockSize, Omit: o.spec.Omit,
				Duration: o.spec.Duration, Bytes: o.spec.Bytes, Blocks: o.spec.Blocks, Reverse: rev, TargetBitrate: o.spec.Rate},
		},
		Intervals: []ReportInterval{},
		ZCNet:     ReportZCNet{Transport: o.transport, Role: o.role, Copy: o.copy},
	}
	if j.Start.Connected == nil {
		j.Start.Connected = []ReportConnected{}
	}
	if o.role == "client" {
		j.Start.ConnectingTo = &o.peerAddr
	} else {
		j.Start.AcceptedConnection = &o.peerAddr
	}
	for _, s := range o.samples {
		iv := ReportInterval{}
		for i, b := range s.perStream {
			st := ReportSum{Socket: streamID(i), Start: s.start.Seconds(), End: s.end.Seconds(), Seconds: (s.end - s.start).Seconds(), Bytes: b, Omitted: ptr(s.omitted), Sender: o.sender}
			st.BitsPerSecond = float64(b) * 8 / math.Max(st.Seconds, 1e-9)
			iv.Streams = append(iv.Streams, st)
		}
		iv.Sum = ReportSum{Start: s.start.Seconds(), End: s.end.Seconds(), Seconds: (s.end - s.start).Seconds(), Bytes: s.bytes, Omitted: ptr(s.omitted), Sender: o.sender}
		iv.Sum.BitsPerSecond = float64(s.bytes) * 8 / math.Max(iv.Sum.Seconds, 1e-9)
		if s.retransmits >= 0 {
			iv.Sum.Retransmits = ptr(s.retransmits)
		}
		if o.spec.UDP {
			iv.Sum.Packets = ptr(s.packets)
			if !o.sender {
				iv.Sum.LostPackets = ptr(s.lost)
				iv.Sum.JitterMs = ptr(s.jitter * 1000)
			}
		}
		j.Intervals = append(j.Intervals, iv)
	}
	snd, rcv := o.sides()
	for i := range snd {
		id := streamID(i)
		if o.spec.UDP {
			u := o.jsonSum(rcv[i], false, id)
			u.Bytes, u.BitsPerSecond, u.Packets, u.Sender = snd[i].bytes, snd[i].bps(), ptr(snd[i].packets), o.sender
			if snd[i].packets > 0 {
				u.LostPercent = ptr(100 * float64(rcv[i].lost) / float64(snd[i].packets))
			}
			s, r := o.jsonSum(snd[i], true, id), o.jsonSum(rcv[i], false, id)
			j.End.Streams = append(j.End.Streams, ReportEndStream{UDP: &u, Sender: &s, Receiver: &r})
			continue
		}
		s, r := o.jsonSum(snd[i], true, id), o.jsonSum(rcv[i], false, id)
		j.End.Streams = append(j.End.Streams, ReportEndStream{Sender: &s, Receiver: &r})
	}
	ts, tr := sum(snd), sum(rcv)
	j.End.SumSent = o.jsonSum(ts, true, 0)
	j.End.SumReceived = o.jsonSum(tr, false, 0)
	if o.spec.UDP {
		// iperf3's UDP "sum": the sender's bytes and packets, the
		// receiver's jitter and losses.
		u := o.jsonSum(tr, false, 0)
		u.Bytes, u.BitsPerSecond, u.Seconds, u.End, u.Packets, u.Sender = ts.bytes, ts.bps(), ts.seconds, ts.seconds, ptr(ts.packets), o.sender
		if ts.packets > 0 {
			u.LostPercent = ptr(100 * float64(tr.lost) / float64(ts.packets))
		}
		j.End.Sum = &u
	}
	if j.End.Streams == nil {
		j.End.Streams = []ReportEndStream{}
	}
	j.End.CPU = ReportCPU{HostTotal: o.cpu.total, HostUser: o.cpu.user, HostSystem: o.cpu.system,
		RemoteTotal: o.peer.CPUUtilTotal, RemoteUser: o.peer.CPUUtilUser, RemoteSystem: o.peer.CPUUtilSystem}
	if o.Err != nil {
		j.Error = o.Err.Error()
	}
	return j
}

// Text output.

// formatRate prints bits/s with the unit that fits: Gbit/s, Mbit/s, Kbit/s.
func formatRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%6.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%6.2f Mbit/s", bps/1e6)
	default:
		return fmt.Sprintf("%6.2f Kbit/s", bps/1e3)
	}
}

// formatTransfer prints a byte count in MiB or GiB.
func formatTransfer(n uint64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%7.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%7.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%7.1f KiB", float64(n)/(1<<10))
	}
}

// headerLine is the column header of progress and summary lines.
func (o *Outcome) headerLine() string {
	if o.spec.UDP {
		return "[ ID] Interval          Transfer         Bitrate     Jitter    Lost/Total Datagrams"
	}
	return "[ ID] Interval          Transfer         Bitrate      Retr"
}

// intervalLine prints one progress line.
func intervalLine(spec Spec, sender bool, label string, s intervalSample) string {
	secs := (s.end - s.start).Seconds()
	line := fmt.Sprintf("[%3s] %6.2f-%-6.2f s %s  %s", label, s.start.Seconds(), s.end.Seconds(), formatTransfer(s.bytes), formatRate(float64(s.bytes)*8/math.Max(secs, 1e-9)))
	switch {
	case spec.UDP && sender:
		line += fmt.Sprintf("  %d datagrams", s.packets)
	case spec.UDP:
		line += fmt.Sprintf("  %6.3f ms  %d/%d", s.jitter*1000, s.lost, s.packets)
	case s.retransmits >= 0:
		line += fmt.Sprintf("  %4d", s.retransmits)
	}
	if s.omitted {
		line += "  (omitted)"
	}
	return line
}

// WriteSummary prints the per-stream and summed sender and receiver lines.
func (o *Outcome) WriteSummary(w io.Writer) {
	snd, rcv := o.sides()
	fmt.Fprintln(w, "- - - - - - - - - - - - - - - - - - - - - - - - -")
	fmt.Fprintln(w, o.headerLine())
	// line prints one side; total is the sender's datagram count, which a
	// UDP receiver's losses are out of.
	line := func(label string, s side, sender bool, total uint64) {
		role := "receiver"
		if sender {
			role = "sender"
		}
		l := fmt.Sprintf("[%3s] %6.2f-%-6.2f s %s  %s", label, 0.0, s.seconds, formatTransfer(s.bytes), formatRate(s.bps()))
		switch {
		case o.spec.UDP && sender:
			l += fmt.Sprintf("  %9s  %d datagrams", "", s.packets)
		case o.spec.UDP:
			pct := 0.0
			if total > 0 {
				pct = 100 * float64(s.lost) / float64(total)
			}
			l += fmt.Sprintf("  %6.3f ms  %d/%d (%.2g%%)", s.jitter*1000, s.lost, total, pct)
		case sender && s.retransmits >= 0:
			l += fmt.Sprintf("  %4d", s.retransmits)
		default:
			l += "      "
		}
		fmt.Fprintf(w, "%s  %s\n", l, role)
	}
	for i := range snd {
		id := fmt.Sprint(streamID(i))
		line(id, snd[i], true, 0)
		line(id, rcv[i], false, snd[i].packets)
	}
	if len(snd) > 1 {
		ts, tr := sum(snd), sum(rcv)
		line("SUM", ts, true, 0)
		line("SUM", tr, false, ts.packets)
	}
	if o.copy != nil {
		fmt.Fprintf(w, "zcnet copy budget: received %s handed over, %s copied; sent %s in place, %s copied\n",
			strings.TrimSpace(formatTransfer(o.copy.RxHandedOver)), strings.TrimSpace(formatTransfer(o.copy.RxCopied)),
			strings.TrimSpace(formatTransfer(o.copy.TxInPlace)), strings.TrimSpace(formatTransfer(o.copy.TxCopied)))
	}
	fmt.Fprintf(w, "CPU: %.1f%% here (%.1f%% user, %.1f%% system), %.1f%% at the peer\n",
		o.cpu.total, o.cpu.user, o.cpu.system, o.peer.CPUUtilTotal)
}

// WriteClientReport prints what RunClient returned as iperf3 -c does: the
// JSON report (asJSON; a report with only the error if the test never
// ran), or the summary and the server's text output; serverJSON adds the
// server's JSON output, where the client asked for it, to the summary.
func WriteClientReport(w io.Writer, o *Outcome, err error, asJSON, serverJSON bool) {
	if o == nil {
		if asJSON && err != nil {
			writeJSON(w, Report{Error: err.Error(), Intervals: []ReportInterval{}})
		}
		return
	}
	o.Err = err
	peer := o.Peer()
	if asJSON {
		j := o.JSONReport()
		j.ServerOutputJSON = peer.ServerOutputJSON
		j.ServerOutputText = peer.ServerOutputText
		writeJSON(w, j)
		return
	}
	o.WriteSummary(w)
	if peer.ServerOutputText != "" {
		fmt.Fprintf(w, "\nServer output:\n%s", peer.ServerOutputText)
	}
	if len(peer.ServerOutputJSON) > 0 && serverJSON {
		fmt.Fprintf(w, "\nServer output (JSON):\n%s\n", peer.ServerOutputJSON)
	}
}

// writeJSON prints v indented, as iperf3 -J does.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
