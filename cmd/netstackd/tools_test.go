package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// runJSON runs a tool with -json and decodes its report into v.
// inprocEnv builds the two in-process stacks the tools' -inproc mode uses.
func inprocEnv(t *testing.T) *toolEnv {
	t.Helper()
	n := newToolNet()
	n.inproc = true
	mode, setup, err := n.resolve()
	if err != nil {
		t.Fatal(err)
	}
	env, err := openToolEnv(mode, setup, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("closing the stacks: %v", err)
		}
	})
	return env
}

func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("run(%q) = %d\nstdout:\n%s\nstderr:\n%s", args, code, &out, &errb)
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		t.Fatalf("run(%q): %v\n%s", args, err, &out)
	}
}

// perfReport is the part of the perf tool's JSON report (iperf3's layout)
// the tests read.
type perfReport struct {
	Start struct {
		Connected []struct {
			LocalPort  int `json:"local_port"`
			RemotePort int `json:"remote_port"`
		} `json:"connected"`
		TestStart struct {
			Protocol   string `json:"protocol"`
			NumStreams int    `json:"num_streams"`
			Reverse    int    `json:"reverse"`
		} `json:"test_start"`
	} `json:"start"`
	Intervals []struct {
		Sum struct {
			Bytes uint64 `json:"bytes"`
		} `json:"sum"`
	} `json:"intervals"`
	End struct {
		Streams     []json.RawMessage `json:"streams"`
		SumSent     perfSumJSON       `json:"sum_sent"`
		SumReceived perfSumJSON       `json:"sum_received"`
		Sum         *perfSumJSON      `json:"sum"`
	} `json:"end"`
	Error            string          `json:"error"`
	ServerOutputJSON json.RawMessage `json:"server_output_json"`
	ZCNet            struct {
		Transport string                `json:"transport"`
		Role      string                `json:"role"`
		Copy      *transport.CopyBudget `json:"copy"`
	} `json:"zcnet"`
}

type perfSumJSON struct {
	Seconds       float64 `json:"seconds"`
	Bytes         uint64  `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   *int64  `json:"retransmits"`
	Packets       *uint64 `json:"packets"`
	LostPackets   *int64  `json:"lost_packets"`
	JitterMs      *float64
}

// within reports whether a and b differ by at most frac of the larger.
func within(a, b float64, frac float64) bool {
	return math.Abs(a-b) <= frac*math.Max(math.Abs(a), math.Abs(b))
}

// TestPerfInproc runs the perf tool's client and server on two in-process
// stacks, as a user without root would, in each direction and protocol,
// and checks that both sides' reports are there and agree.
func TestPerfInproc(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		udp     bool
		reverse bool
		streams int
	}{
		// TCP paced (-b) so that what sits in the buffers at TEST_END, which
		// the receiver does not count, is small even under -race.
		{"tcp", []string{"-b", "10M"}, false, false, 1},
		{"tcp reverse parallel", []string{"-R", "-P", "4", "-b", "2M"}, false, true, 4},
		{"udp", []string{"-u", "-b", "5M"}, true, false, 1},
		{"udp reverse parallel", []string{"-u", "-b", "10M", "-R", "-P", "2", "-l", "1200"}, true, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r perfReport
			began := time.Now()
			runJSON(t, &r, append([]string{"perf", "-inproc", "-t", "1", "-json", "-get-server-output"}, tc.args...)...)
			wall := time.Since(began).Seconds()
			if r.Error != "" {
				t.Fatalf("report has an error: %s", r.Error)
			}
			proto := map[bool]string{false: "TCP", true: "UDP"}[tc.udp]
			if r.Start.TestStart.Protocol != proto || r.Start.TestStart.NumStreams != tc.streams || (r.Start.TestStart.Reverse == 1) != tc.reverse {
				t.Errorf("test_start = %+v", r.Start.TestStart)
			}
			if len(r.Start.Connected) != tc.streams || len(r.End.Streams) != tc.streams {
				t.Errorf("%d connected, %d end streams; want %d", len(r.Start.Connected), len(r.End.Streams), tc.streams)
			}
			if r.ZCNet.Transport != "zcnet" || r.ZCNet.Role != "client" || r.ZCNet.Copy == nil {
				t.Fatalf("zcnet = %+v", r.ZCNet)
			}
			// The test lasts its 1 s, and no longer than the run took;
			// how much longer a loaded machine stretches it is not the
			// report's to say. Its rate is its bytes over its seconds.
			sent, rcvd := r.End.SumSent, r.End.SumReceived
			if sent.Bytes == 0 || rcvd.Bytes == 0 || sent.Seconds < 0.9 || sent.Seconds > wall {
				t.Fatalf("sum_sent %+v, sum_received %+v; the run took %.2f s", sent, rcvd, wall)
			}
			if !within(sent.BitsPerSecond, float64(sent.Bytes)*8/sent.Seconds, 0.01) {
				t.Errorf("sum_sent: %d bytes in %.3f s at %.0f bit/s", sent.Bytes, sent.Seconds, sent.BitsPerSecond)
			}
			// The receiver stops counting at TEST_END, with what is in
			// flight still uncounted (how much depends on scheduling), and
			// over UDP a datagram may be lost, which it counts (below).
			if rcvd.Bytes > sent.Bytes {
				t.Errorf("sent %d bytes, received %d", sent.Bytes, rcvd.Bytes)
			}
			var iv uint64
			for _, i := range r.Intervals {
				iv += i.Sum.Bytes
			}
			mine := sent.Bytes
			if tc.reverse {
				mine = rcvd.Bytes
			}
			if len(r.Intervals) == 0 || !within(float64(iv), float64(mine), 0.01) {
				t.Errorf("%d intervals add up to %d bytes, the summary says %d", len(r.Intervals), iv, mine)
			}
			// This side's copy budget: a sender writes in place, a
			// receiver is handed the stack's memory.
			c := r.ZCNet.Copy
			if tc.reverse {
				if c.RxHandedOver < rcvd.Bytes*9/10 || c.RxCopied > rcvd.Bytes/10 {
					t.Errorf("receiving %d bytes: copy budget %+v", rcvd.Bytes, *c)
				}
			} else if c.TxInPlace < sent.Bytes {
				t.Errorf("sending %d bytes: copy budget %+v", sent.Bytes, *c)
			}
			if tc.udp {
				if r.End.Sum == nil || r.End.Sum.Packets == nil || *r.End.Sum.Packets == 0 || r.End.Sum.LostPackets == nil {
					t.Fatalf("UDP sum = %+v", r.End.Sum)
				}
				// The receiver counts, as iperf3's does, the highest
				// sequence number it saw (the datagrams lost before it
				// included) and the gaps below it as lost: no more than
				// were sent (the rest was in flight at TEST_END), and
				// no more lost than counted.
				lost, pk := *r.End.Sum.LostPackets, *r.End.Sum.Packets
				if rcvd.Packets == nil || *rcvd.Packets == 0 || *rcvd.Packets > pk || lost < 0 || uint64(lost) > *rcvd.Packets {
					got := "none"
					if rcvd.Packets != nil {
						got = fmt.Sprint(*rcvd.Packets)
					}
					t.Errorf("sent %d datagrams: received up to %s, lost %d", pk, got, lost)
				}
				// A paced sender may fall behind on a loaded machine, never
				// ahead of its target.
				if tc.name == "udp" && sent.BitsPerSecond > 5e6*1.15 {
					t.Errorf("target 5 Mbit/s, sent at %.1f Mbit/s", sent.BitsPerSecond/1e6)
				}
			} else if tc.name == "tcp" && sent.BitsPerSecond > 10e6*1.15 {
				t.Errorf("target 10 Mbit/s, sent at %.1f Mbit/s", sent.BitsPerSecond/1e6)
			} else if tc.reverse == false && (sent.Retransmits == nil || *sent.Retransmits < 0) {
				t.Errorf("a zcnet TCP sender knows its retransmits: %v", sent.Retransmits)
			}
			// The server's own report (get_server_output) counts the same
			// bytes the client was told.
			var srv perfReport
			if err := json.Unmarshal(r.ServerOutputJSON, &srv); err != nil {
				t.Fatalf("server_output_json: %v", err)
			}
			if srv.ZCNet.Role != "server" || srv.End.SumReceived.Bytes != rcvd.Bytes && !tc.reverse || srv.End.SumSent.Bytes != sent.Bytes && tc.reverse {
				t.Errorf("server's report: sent %d received %d role %q; client's: sent %d received %d",
					srv.End.SumSent.Bytes, srv.End.SumReceived.Bytes, srv.ZCNet.Role, sent.Bytes, rcvd.Bytes)
			}
		})
	}
}

// TestPerfInprocText checks the human-readable output: progress lines each
// interval and a sender and receiver summary.
func TestPerfInprocText(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"perf", "-inproc", "-t", "2", "-i", "500ms"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, &out, &errb)
	}
	o := out.String()
	lines := 0
	for _, l := range strings.Split(o, "\n") {
		if strings.HasPrefix(l, "[  1]") && strings.Contains(l, "bit/s") && !strings.Contains(l, "sender") && !strings.Contains(l, "receiver") {
			lines++
		}
	}
	if lines < 3 || lines > 5 {
		t.Errorf("%d progress lines for 2 s at 500 ms, want 4:\n%s", lines, o)
	}
	for _, want := range []string{"Connecting to host 192.0.2.2, port 5201 over zcnet sockets", "sender", "receiver", "zcnet copy budget:", "perf done."} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
}

// TestPerfInprocBidir: -bidir runs -P streams each way; the summary has
// a sender and a receiver line for each of the four streams.
func TestPerfInprocBidir(t *testing.T) {
	for _, args := range [][]string{{"-b", "5M"}, {"-u", "-b", "2M"}} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"perf", "-inproc", "-bidir", "-P", "2", "-t", "1", "-i", "0"}, args...), &out, &errb); code != 0 {
			t.Fatalf("%q: exit %d\n%s\n%s", args, code, &out, &errb)
		}
		o := out.String()
		for _, id := range []string{"[  1]", "[  3]", "[  4]", "[  5]"} {
			snd, rcv := false, false
			for _, l := range strings.Split(o, "\n") {
				snd = snd || (strings.HasPrefix(l, id) && strings.Contains(l, "sender"))
				rcv = rcv || (strings.HasPrefix(l, id) && strings.Contains(l, "receiver"))
			}
			if !snd || !rcv {
				t.Errorf("%q: stream %s lacks its sender or receiver line:\n%s", args, id, o)
			}
		}
		if !strings.Contains(o, "perf done.") {
			t.Errorf("%q: output lacks perf done:\n%s", args, o)
		}
	}
}

// echoReport is the echo tool's JSON summary.
type echoReport struct {
	Protocol      string             `json:"protocol"`
	Size          int                `json:"size"`
	Sent          int                `json:"sent"`
	RoundTrips    int                `json:"round_trips"`
	Lost          int                `json:"lost"`
	VerifiedBytes uint64             `json:"verified_bytes"`
	RoundTripsPS  float64            `json:"round_trips_per_second"`
	LatencyUs     map[string]float64 `json:"latency_us"`
	Histogram     []struct {
		Count uint64 `json:"count"`
	} `json:"histogram"`
	Error string `json:"error"`
}

// TestEchoInproc runs the echo tool on two in-process stacks over TCP and
// UDP and checks that every round trip was verified and timed.
func TestEchoInproc(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		proto   string
		n, size int
	}{
		{[]string{"-n", "300", "-size", "1000"}, "TCP", 300, 1000},
		{[]string{"-n", "20", "-size", "100000"}, "TCP", 20, 100000}, // several segments per message
		{[]string{"-u", "-n", "300", "-size", "512"}, "UDP", 300, 512},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var r echoReport
			runJSON(t, &r, append([]string{"echo", "-inproc", "-json"}, tc.args...)...)
			if r.Error != "" || r.Protocol != tc.proto || r.Size != tc.size {
				t.Fatalf("report %+v", r)
			}
			// UDP round trips on an in-process link are not lost; a lost
			// one would show here as a missing round trip.
			if r.Sent != tc.n || r.RoundTrips+r.Lost != tc.n || r.RoundTrips < tc.n*95/100 || r.VerifiedBytes != uint64(r.RoundTrips*tc.size) {
				t.Fatalf("sent %d, %d round trips, %d lost, %d bytes verified; want %d of %d bytes", r.Sent, r.RoundTrips, r.Lost, r.VerifiedBytes, tc.n, tc.size)
			}
			var hist uint64
			for _, b := range r.Histogram {
				hist += b.Count
			}
			l := r.LatencyUs
			if hist != uint64(r.RoundTrips) || l["min"] <= 0 || l["min"] > l["p50"] || l["p50"] > l["p90"] || l["p90"] > l["p99"] || l["p99"] > l["max"] || r.RoundTripsPS <= 0 {
				t.Errorf("histogram holds %d, latency %v, %f round trips/s", hist, l, r.RoundTripsPS)
			}
		})
	}
}

// TestEchoText checks the text report: the histogram lines and the rate.
func TestEchoText(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"echo", "-inproc", "-n", "200"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, &out, &errb)
	}
	o := out.String()
	for _, want := range []string{"echo: 200 round trips of 64 bytes over TCP to 192.0.2.2:7 (zcnet sockets), every byte verified (12800 bytes)", "latency: min ", " p99 ", "round trips/s: "} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	if strings.Count(o, "#") == 0 {
		t.Errorf("no histogram bars:\n%s", o)
	}
}

// TestEchoDuration: -t ends a long run on time, and the round it cut short
// is not counted.
func TestEchoDuration(t *testing.T) {
	for _, proto := range [][]string{nil, {"-u"}} {
		var r echoReport
		start := time.Now()
		runJSON(t, &r, append([]string{"echo", "-inproc", "-json", "-n", "100000000", "-t", "300ms"}, proto...)...)
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%v: a 300 ms run took %v", proto, took)
		}
		if r.Error != "" || r.RoundTrips == 0 || r.Sent != r.RoundTrips+r.Lost || r.RoundTrips >= 100000000 {
			t.Errorf("%v: %+v", proto, r)
		}
	}
}

// TestEchoDetectsCorruption: the client checks every byte, so a server that
