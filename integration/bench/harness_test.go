//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		in               []float64
		median, min, max float64
	}{
		{nil, 0, 0, 0},
		{[]float64{4}, 4, 4, 4},
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{10, 1, 4, 2}, 3, 1, 10},
		{[]float64{5, 5, 9, 1, 7}, 5, 1, 9},
	} {
		in := slices.Clone(tc.in)
		m, lo, hi := stats(in)
		if m != tc.median || lo != tc.min || hi != tc.max {
			t.Errorf("stats(%v) = %v, %v, %v; want %v, %v, %v", tc.in, m, lo, hi, tc.median, tc.min, tc.max)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("stats(%v) reordered its input to %v", tc.in, in)
		}
	}
}

func TestSummarizeSkipsFailedRuns(t *testing.T) {
	res := &Result{Runs: []Run{
		{Value: 2, ServerCPU: 1, Offered: 5},
		{Err: "boom", Value: 100, ServerCPU: 100},
		{Value: 4, ServerCPU: 0.5, Offered: 6},
		{Value: 3, ServerCPU: 2, Offered: 7},
	}}
	summarize(res)
	if res.Median != 3 || res.Min != 2 || res.Max != 4 || res.CPU != 1 || res.Offered != 6 {
		t.Errorf("median %v min %v max %v cpu %v offered %v, want 3 2 4 1 6", res.Median, res.Min, res.Max, res.CPU, res.Offered)
	}
	if res.ok() {
		t.Error("ok() with a failed run")
	}
}

func TestParseFlags(t *testing.T) {
	cfg, _, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.runs != 3 || cfg.duration != 5*time.Second || cfg.udpSenders != 2 || cfg.pinProcs != 1 || len(cfg.contenders) != len(contenderDefs) || !slices.Equal(cfg.figures, defaultFigureKeys()) {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, k := range cfg.figures {
		if f, _ := figureByKey(k); f.optIn || f.streams > 4 {
			t.Errorf("default figures include the opt-in %s", k)
		}
	}
	if got := neededTools(cfg); !slices.Equal(got, []string{"ethtool", "iperf3", "wrk"}) {
		t.Errorf("tools by default: %q", got)
	}
	// -streams adds the stream-count figures, on the zero-copy server and
	// the kernel only; they can also be named.
	cfg, _, err = parseFlags([]string{"-streams", "-figures", "udp_64"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{figUDP, figUp32, figDown32, figUp128, figDown128}; !slices.Equal(cfg.figures, want) {
		t.Errorf("-streams -figures udp_64: figures %q, want %q", cfg.figures, want)
	}
	for _, d := range contenderDefs {
		want := d.key == keyZC || d.key == keyKernel
		for _, k := range streamFigureKeys() {
			if d.takesPart(k) != want {
				t.Errorf("%s takes part in %s: %v, want %v", d.key, k, d.takesPart(k), want)
			}
		}
	}
	if f, _ := figureByKey(figDown128); f.streams != 128 || !f.reverse || len(f.rows) != 3 {
		t.Errorf("%s: %+v", figDown128, f)
	}
	cfg, _, err = parseFlags([]string{"-figures", "tcp_up_128", "-contenders", "zcnet-xdp,kernel-xdp,zcnet,kernel"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.measurements() != 3*2 || !slices.Equal(neededTools(cfg), []string{"ethtool", "iperf3"}) {
		t.Errorf("tcp_up_128 on four contenders: %d measurements (want 6), tools %q", cfg.measurements(), neededTools(cfg))
	}
	cfg, opts, err := parseFlags([]string{"-quick", "-contenders", "kernel,zcnet", "-figures", "tcp_up_1", "-pin", "off", "-svg", "x.svg"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.runs != 1 || cfg.duration != time.Second || cfg.pinCPU != -1 || opts.svgPath != "x.svg" ||
		!slices.Equal(cfg.contenders, []string{keyZC, keyKernel}) || !slices.Equal(cfg.figures, []string{figUp1}) {
		t.Errorf("-quick and lists: %+v %+v", cfg, opts)
	}
	if got := neededTools(cfg); !slices.Equal(got, []string{"iperf3"}) {
		t.Errorf("tools for tcp_up_1: %q", got)
	}
	if cfg.measurements() != 2 {
		t.Errorf("measurements %d, want 2", cfg.measurements())
	}
	for _, bad := range [][]string{
		{"-duration", "10ms"}, {"-runs", "0"}, {"-contenders", "nope"}, {"-figures", ""},
		{"-pin", "x"}, {"-pin-procs", "-1"}, {"-udp-senders", "0"}, {"extra"},
	} {
		if _, _, err := parseFlags(bad, io.Discard); !errors.Is(err, errUsage) && !strings.Contains(err.Error(), "invalid") {
			t.Errorf("parseFlags(%q) = %v, want a usage error", bad, err)
		}
	}
	if _, _, err := parseFlags([]string{"-help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v", err)
	}
}

func TestRealMainUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := realMain([]string{"-runs", "x"}, &out, &errOut); code != exitUsage {
		t.Errorf("bad flag: exit %d, want %d", code, exitUsage)
	}
	errOut.Reset()
	if code := realMain([]string{"-help"}, &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), "usage: go run ./integration/bench") {
		t.Errorf("-help: exit %d, output %q", code, errOut.String())
	}
	if os.Geteuid() != 0 {
		errOut.Reset()
		if code := realMain([]string{"-quick"}, &out, &errOut); code != exitNoPriv || !strings.Contains(errOut.String(), "root") {
			t.Errorf("not root: exit %d, output %q", code, errOut.String())
		}
	}
}

// fakeReport has a cell with the given median (and server CPU a tenth of
// it) for each contender and figure given.
func fakeReport(medians map[string]map[string]float64) *Report {
	rep := &Report{Runs: 1, Duration: "5s"}
	for _, k := range contenderKeys() {
		if _, ok := medians[k]; !ok {
			continue
		}
		rep.Contenders = append(rep.Contenders, ContenderInfo{Key: k, Title: "T-" + k, About: "about " + k})
		for _, f := range allFigures {
			v, ok := medians[k][f.key]
			if !ok {
				continue
			}
			rep.Results = append(rep.Results, &Result{Figure: f.key, Contender: k, Unit: f.unit, CPUUnit: f.cpuUnit,
				Runs: []Run{{Value: v, ServerCPU: v / 10}}, Median: v, Min: v, Max: v, CPU: v / 10})
		}
	}
	return rep
}

func TestTargets(t *testing.T) {
	rep := fakeReport(map[string]map[string]float64{
		keyStock:   {figUDP: 100, figRRPin: 10, figRR: 10, figHTTP: 20, figUp1: 1, figDown1: 1},
		keyZC:      {figUDP: 160, figRRPin: 12, figRR: 15, figUp1: 10, figDown1: 16, figUp32: 12, figDown32: 20, figUp128: 11, figDown128: 20},
		keyNetConn: {figUDP: 140, figRRPin: 11, figRR: 12, figHTTP: 30, figUp1: 9, figDown1: 17},
		keyZC2Q:    {figUp4: 15, figDown4: 20},
		keyXDP:     {figUDP: 320, figRRPin: 18, figRR: 15, figUp1: 1, figDown1: 2},
		keyXDPKern: {figUDP: 400},
		keyKernel:  {figUDP: 300, figRRPin: 30, figRR: 30, figHTTP: 40, figUp1: 20, figDown1: 20, figUp32: 20, figDown32: 20, figUp128: 22, figDown128: 18},
	})
	// Retransmitted shares, in %: 100 of a million segments is the bound.
	rep.result(figUp128, keyZC).Extras = map[string]float64{extraRetransPct: 0.01}
	rep.result(figDown128, keyZC).Extras = map[string]float64{extraRetransPct: 0.0125}
	rep.result(figUp128, keyKernel).Extras = map[string]float64{extraRetransPct: 0}
	rep.result(figDown128, keyKernel).Extras = map[string]float64{extraRetransPct: 0.5}
	got := map[string]Target{}
	for _, tg := range evalTargets(rep) {
		got[tg.Name] = tg
	}
	if len(got) != len(targetSpecs) {
		t.Fatalf("%d targets, want %d", len(got), len(targetSpecs))
	}
	for _, tc := range []struct {
		name   string
		ratio  float64
		status string
	}{
		{"UDP 64 B received/s: zero-copy vs stock", 1.6, "met"},
		{"UDP 64 B received/s: net.Conn vs stock", 1.4, "not met"},
		{"UDP server CPU per datagram: zero-copy vs stock", 1.6, "not met"}, // CPU: less is better
		{"round trips, one CPU: zero-copy vs stock", 1.2, "not met"},
		{"round trips, unpinned: zero-copy vs stock", 1.5, "met"},
		{"round trips, one CPU: net.Conn vs stock", 1.1, "(beside)"},
		{"wrk net/http: net.Conn vs stock", 1.5, "met"},
		{"wrk net/http: net.Conn vs kernel", 0.75, "met"},
		{"TCP upload 1 stream: zero-copy vs net.Conn", 10.0 / 9, "met"},
		{"TCP upload 1 stream: zero-copy vs kernel", 0.5, "not met"},
		{"TCP download 1 stream: zero-copy vs kernel", 0.8, "met"},
		{"TCP upload server CPU/GB: zero-copy vs kernel", 0.5, "met"},
		{"TCP download 1 stream: zero-copy vs net.Conn", 16.0 / 17, "not met"},
		{"TCP upload: 4 streams over 2 queues vs 1 stream over 1 queue", 1.5, "met"},
		{"TCP download: 4 streams over 2 queues vs 1 stream over 1 queue", 1.25, "not met"},
		{"TCP upload: 128 streams vs 32 (zero-copy)", 11.0 / 12, "not met"},
		{"TCP download: 128 streams vs 32 (zero-copy)", 1, "met"},
		{"TCP upload 128 streams to zero-copy: retransmitted segments", 0.01, "met"},
		{"TCP download 128 streams from zero-copy: retransmitted segments", 0.0125, "not met"},
		{"TCP upload: 128 streams vs 32 (kernel)", 1.1, "(beside)"},
		{"TCP upload 128 streams to kernel: retransmitted segments", 0, "(beside)"},
		{"TCP download 128 streams from kernel: retransmitted segments", 0.5, "(beside)"},
		{"UDP 64 B received/s: xdp vs TAP (zero-copy)", 2, "met"},
		{"UDP 64 B received/s: xdp vs kernel on the same veth", 0.8, "not met"},
		{"round trips, one CPU: xdp vs TAP", 1.5, "met"},
		{"round trips, unpinned: xdp vs TAP", 1, "not met"},
		{"UDP server CPU per datagram: xdp vs TAP", 2, "not met"}, // CPU: less is better
		{"TCP download 1 stream: xdp vs TAP", 0.125, "(beside)"},
	} {
		tg, ok := got[tc.name]
		if !ok {
			t.Errorf("no target %q", tc.name)
			continue
		}
		if math.Abs(tg.Got-tc.ratio) > 1e-9 || tg.status() != tc.status {
			t.Errorf("%s: got %v (%s), want %v (%s)", tc.name, tg.Got, tg.status(), tc.ratio, tc.status)
		}
	}

	if tg := got["TCP upload 128 streams to zero-copy: retransmitted segments"]; tg.Den != "" || tg.Num != "tcp_up_128/zcnet/retransmit_pct" ||
		tg.needed() != "≤ 0.0100%" || tg.format(tg.Got) != "0.0100%" {
		t.Errorf("a bound: %+v, needed %q", tg, tg.needed())
	}
	if tg := got["UDP server CPU per datagram: xdp vs TAP"]; tg.Num != "udp_64/zcnet-xdp/cpu" || tg.needed() != "≤ 0.50×" {
		t.Errorf("a CPU ratio: %+v, needed %q", tg, tg.needed())
	}

	// A failed cell gives a note, not a ratio; a filtered-out one no target.
	rep = fakeReport(map[string]map[string]float64{keyZC: {figUp1: 10}, keyKernel: {figUp1: 0}})
	ts := evalTargets(rep)
	if len(ts) != 2 || ts[0].Got != 0 || ts[0].Met || ts[0].Note == "" {
		t.Errorf("with a missing figure: %+v", ts)
	}

	// A bound on an Extra no run had is noted, not met.
	rep = fakeReport(map[string]map[string]float64{keyZC: {figUp128: 10}})
	ts = evalTargets(rep)
	if len(ts) != 1 || ts[0].Met || ts[0].Note == "" || !strings.Contains(ts[0].Name, "retransmitted") {
		t.Errorf("a bound without its extra: %+v", ts)
	}

	// The targets of a contender that could not run are listed, with why.
	rep = fakeReport(map[string]map[string]float64{keyZC: {figUDP: 100, figRR: 10}, keyXDPKern: {figUDP: 90}})
	rep.Unavailable = []Unavailable{{Key: keyXDP, Title: "zcnet xdp", Reason: "no AF_XDP"}}
	ts = evalTargets(rep)
	notes := 0
	for _, tg := range ts {
		if strings.Contains(tg.Num, "/"+keyXDP) {
			if tg.Note != "zcnet xdp unavailable" || tg.Met || tg.status() != tg.Note {
				t.Errorf("%s: %+v", tg.Name, tg)
			}
			notes++
		}
	}
	// UDP ×2, pinned round trips (zcnet has no pinned figure here: the
	// xdp cell is missing as much as zcnet's, and the xdp is the reason),
	// unpinned round trips, CPU, TCP up and down.
	if notes != 7 {
		t.Errorf("%d targets noted unavailable, want 7: %+v", notes, ts)
	}
}

func TestWriteTable(t *testing.T) {
	rep := fakeReport(map[string]map[string]float64{
		keyZC:     {figUp1: 12.345, figUDP: 100},
		keyKernel: {figUp1: 2.5},
	})
	zc := rep.result(figUp1, keyZC)
	zc.Runs = []Run{{Value: 11, ServerCPU: 0.3}, {Value: 12.345, ServerCPU: 0.25}, {Value: 130, ServerCPU: 0.2}}
	summarize(zc)
	udp := rep.result(figUDP, keyZC)
	udp.Runs = []Run{{Value: 100, Offered: 420, ServerCPU: 7.2}}
	summarize(udp)
	up := &Result{Figure: figUp128, Contender: keyZC, Runs: []Run{
		{Value: 9, ServerCPU: 0.5, Extra: map[string]float64{extraRetransPct: 0.5, extraPeakRSS: 300}},
		{Value: 10, ServerCPU: 0.6, Extra: map[string]float64{extraRetransPct: 0.00125, extraPeakRSS: 350}},
		{Value: 11, ServerCPU: 0.7, Extra: map[string]float64{extraRetransPct: 0.25, extraPeakRSS: 640}},
	}}
	summarize(up)
	rep.Results = append(rep.Results, up)
	rep.Contenders[0].Setup = "AF_XDP on zb1y queue 0: program native, socket copy"
	rep.Unavailable = []Unavailable{{Key: keyXDP, Title: "zcnet xdp", Reason: "no AF_XDP sockets here"}}
	rep.Targets = evalTargets(rep)
	rep.Errors = []string{"udp_64 on stock: boom"}
	var b bytes.Buffer
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"T-zcnet", "T-kernel",
		"TCP upload, 1 stream", "12.3 [11.0–130]", "2.50", "0.250",
		"UDP 64 B datagrams received", "offered by the senders", "420", "7.20", "µs/datagram", "—",
		"TCP upload 1 stream: zero-copy vs kernel", "4.94×", "≥ 0.60×", "met",
		"1 errors:", "boom",
		"TCP upload, 128 streams", "10.0 [9.00–11.0]", "retransmissions", "% of segments", "0.2500", "server peak RSS", "MiB", "350",
		"TCP upload 128 streams to zero-copy: retransmitted segments", "0.2500%", "≤ 0.0100%",
		"program native, socket copy", "zcnet xdp:", "UNAVAILABLE here: no AF_XDP sockets here",
		"UDP 64 B received/s: xdp vs TAP (zero-copy)", "zcnet xdp unavailable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "4 streams") {
		t.Errorf("table shows rows nobody measured:\n%s", out)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{0.0456: "0.046", 1.234: "1.23", 12.34: "12.3", 123.4: "123"} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMaxOpsNeverEndsALoopEarly(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 2 * time.Second, time.Hour} {
		if n := maxOps(d); n < 1 || time.Duration(n)*10*time.Nanosecond < d {
			t.Errorf("maxOps(%v) = %d", d, n)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://192.0.2.2:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    1.02ms  22.32ms   85.12%
    Req/Sec    12.31k     1.08k   14.48k    71.00%
  122487 requests in 5.00s, 139.17MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
Requests/sec:  24489.21
Transfer/sec:     27.83MB
`
	run, err := parseWrk(out, 2_000_000_000, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(run.Value-24.48921) > 1e-9 || run.Seconds != 5 || run.Extra["socket_errors"] != 3 || run.ServerCPU != 20 {
		t.Errorf("parsed %+v", run)
	}
	if _, err := parseWrk(out+"  Non-2xx or 3xx responses: 7\n", 1, 1); err == nil {
		t.Error("non-2xx responses: no error")
	}
	if _, err := parseWrk("unable to connect", 1, 1); err == nil {
		t.Error("no rate: no error")
	}
}

func TestPidCPU(t *testing.T) {
	// Burn a little CPU so that the count has something to show.
	until := time.Now().Add(50 * time.Millisecond)
	for n := 0; time.Now().Before(until); n++ {
		_ = n * n
	}
	d, err := pidCPU(os.Getpid())
	if err != nil || d <= 0 {
		t.Errorf("pidCPU(self) = %v, %v; want > 0", d, err)
	}
	if _, err := pidCPU(-1); err == nil {
		t.Error("pidCPU(-1): no error")
	}
}

func TestTapSubnetsAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for slot := range contenderDefs {
		k, s := tapSubnet(slot)
		if k.Masked() != s.Masked() || k.Addr() == s.Addr() || seen[k.Masked().String()] {
			t.Errorf("slot %d: %v %v", slot, k, s)
		}
		if !strings.HasPrefix(k.String(), "192.0.2.") {
			t.Errorf("slot %d: %v outside 192.0.2.0/24", slot, k)
		}
		seen[k.Masked().String()] = true
	}
}

func TestSubcommandsReportBadUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runServer([]string{"-mode", "nope", "-addr", "192.0.2.2"}, strings.NewReader(""), &out, &errOut); code != exitFailed ||
		!strings.Contains(out.String(), `"error"`) || !strings.Contains(out.String(), "-mode") {
		t.Errorf("server -mode nope: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := runServer([]string{"-mode", modeStock}, strings.NewReader(""), &out, &errOut); code != exitFailed || !strings.Contains(out.String(), "-dev") {
		t.Errorf("server without -dev: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := runServer([]string{"-mode", modeXDP, "-addr", "192.0.2.66/28"}, strings.NewReader(""), &out, &errOut); code != exitFailed ||
		!strings.Contains(out.String(), "-dev") || strings.Contains(out.String(), "unavailable") {
		t.Errorf("server xdp without -dev: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := runClient([]string{"tcp", "-to", "192.0.2.2:1"}, strings.NewReader(""), &out, &errOut); code != exitFailed || !strings.Contains(out.String(), "unknown client") {
		t.Errorf("client tcp: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := runClient([]string{"udp", "-d", "0s"}, strings.NewReader(""), &out, &errOut); code != exitFailed || !strings.Contains(out.String(), "-d") {
		t.Errorf("client -d 0: exit %d, stdout %q", code, out.String())
	}
	if code, ok := childMain([]string{"-quick"}); ok {
		t.Errorf("childMain took the bench's own flags (exit %d)", code)
	}
}

func TestErrorAnswers(t *testing.T) {
	for _, tc := range []struct {
		err         error
		unavailable bool
	}{
		{unavailableError{reason: "xdp: AF_XDP or BPF unavailable: address family not supported"}, true},
		{fmt.Errorf("%w: xdp.Open zb1y: busy", errSetup), false},
	} {
		b, err := json.Marshal(errorAnswer(tc.err))
		if err != nil {
			t.Fatal(err)
		}
		var ready struct{ Ready bool }
		got := decodeAnswer("xdp server", b, &ready)
		var ue unavailableError
		switch {
		case got == nil:
			t.Errorf("%v: decoded as no error", tc.err)
		case errors.Is(got, errUnavailable) != tc.unavailable:
			t.Errorf("%v came back as %v: unavailable %v, want %v", tc.err, got, errors.Is(got, errUnavailable), tc.unavailable)
		case tc.unavailable && (!errors.As(got, &ue) || ue.reason != tc.err.(unavailableError).reason):
			t.Errorf("%v came back as %#v: the reason changed", tc.err, got)
		case !tc.unavailable && (!errors.Is(got, errMeasure) || !strings.Contains(got.Error(), "busy")):
			t.Errorf("%v came back as %v", tc.err, got)
		}
	}
	// Through startServer's wrapping, the reason is still there to find.
	wrapped := fmt.Errorf("%w: %w", errSetup, unavailableError{reason: "no BPF"})
	var ue unavailableError
	if !errors.As(wrapped, &ue) || ue.reason != "no BPF" || !errors.Is(wrapped, errUnavailable) {
		t.Errorf("wrapped: %v", wrapped)
	}
	var v struct{ Ready bool }
	if err := decodeAnswer("x", []byte(`{"ready":true}`), &v); err != nil || !v.Ready {
		t.Errorf("ready line: %v %+v", err, v)
	}
	if err := decodeAnswer("x", []byte(`not json`), &v); !errors.Is(err, errMeasure) {
		t.Errorf("bad line: %v", err)
	}
}

func TestRetransShare(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]float64
		want  float64 // retransmits; -1: none added
		pct   float64
	}{
		// An upload: iperf3 counted its kernel client's retransmissions,
		// and they come first even where the server's counter is there.
		{"iperf3's", map[string]float64{"sent_bytes": tcpMSS * 1e6, "iperf3_retransmits": 100, "tcp_retransmits": 7}, 100, 0.01},
		// A gVisor server's download: its own counter.
		{"server's", map[string]float64{"sent_bytes": tcpMSS * 2e5, "tcp_retransmits": 50}, 50, 0.025},
		{"none at all", map[string]float64{"sent_bytes": tcpMSS * 1e6, "iperf3_retransmits": 0}, 0, 0},
		{"no count", map[string]float64{"sent_bytes": 1e9}, -1, 0},
		{"nothing sent", map[string]float64{"sent_bytes": 0, "tcp_retransmits": 3}, -1, 0},
	} {
		run := Run{Extra: tc.extra}
		addRetransShare(&run)
		got, ok := run.Extra["retransmits"]
		pct, okPct := run.Extra[extraRetransPct]
		if tc.want < 0 {
			if ok || okPct {
				t.Errorf("%s: added %v retransmits, %v%%", tc.name, got, pct)
			}
			continue
		}
		if got != tc.want || math.Abs(pct-tc.pct) > 1e-12 || run.Extra["segments"] != tc.extra["sent_bytes"]/tcpMSS {
			t.Errorf("%s: %v retransmits, %v%% of %v segments; want %v, %v%%", tc.name, got, pct, run.Extra["segments"], tc.want, tc.pct)
		}
	}
}

func TestCounterExtras(t *testing.T) {
	f, _ := figureByKey(figUDP)
	// A TAP link has no copy counter: no copy share is made up for it.
	run := Run{Seconds: 2}
	addCounterExtras(&run, f,
		map[string]uint64{"link_rx_bytes": 0, "link_rx_frames": 0, "api_rx_handed_over": 0, "api_rx_copied": 0},
		map[string]uint64{"link_rx_bytes": 1000, "link_rx_frames": 10, "api_rx_handed_over": 640, "api_rx_copied": 0})
	if _, ok := run.Extra["link_rx_copied_bytes_per_byte"]; ok || run.Extra["api_rx_zero_copy_share"] != 1 || run.Extra["link_rx_frames_per_s"] != 5 {
		t.Errorf("TAP: %v", run.Extra)
	}
	// The AF_XDP link's copy out of the UMEM, and the kernel's drops.
	run = Run{Seconds: 2}
	addCounterExtras(&run, f,
		map[string]uint64{"link_rx_bytes": 0, "link_rx_copied_bytes": 0, "xdp_kernel_fill_ring_empty": 10},
		map[string]uint64{"link_rx_bytes": 1000, "link_rx_copied_bytes": 1100, "xdp_kernel_fill_ring_empty": 30})
	if run.Extra["link_rx_copied_bytes_per_byte"] != 1.1 || run.Extra["xdp_kernel_fill_ring_empty_per_s"] != 10 {
		t.Errorf("AF_XDP: %v", run.Extra)
	}
}

// fakeNS is a namespace for runs that start no process.
type fakeNS struct{}

func (fakeNS) Name() string { return "zcbench-fake" }
func (fakeNS) Run(time.Duration, ...string) (string, error) {
	return "", errors.New("fakeNS runs nothing")
}

func TestRunGoesOnWithoutAnUnavailableContender(t *testing.T) {
	saved := contenderDefs
	defer func() { contenderDefs = saved }()
	started := false
	contenderDefs = []contenderDef{
		{key: keyXDP, title: "zcnet xdp", start: func(*env, *contenderDef, int) (*contender, error) {
			return nil, fmt.Errorf("%w: %w", errSetup, unavailableError{reason: "no AF_XDP sockets here"})
		}},
		{key: keyXDPKern, title: "kernel xdp veth", figures: []string{figUDP}, start: func(*env, *contenderDef, int) (*contender, error) {
			started = true // the next contender is still started
			return nil, fmt.Errorf("%w: ip link add: boom", errSetup)
		}},
	}
	newNS := func(string) (netns, func() error, error) { return fakeNS{}, func() error { return nil }, nil }
	cfg := config{runs: 1, duration: time.Second, pinCPU: -1, contenders: []string{keyXDP}, figures: []string{figUDP, figRR}}
	var log bytes.Buffer
	rep, err := run(context.Background(), cfg, &log, newNS)
	if err != nil || len(rep.Errors) > 0 {
		t.Fatalf("run: %v %q", err, rep.Errors)
	}
	if len(rep.Contenders) != 0 || len(rep.Results) != 0 || len(rep.Unavailable) != 1 ||
		rep.Unavailable[0] != (Unavailable{Key: keyXDP, Title: "zcnet xdp", Reason: "no AF_XDP sockets here"}) {
		t.Errorf("contenders %+v, results %d, unavailable %+v", rep.Contenders, len(rep.Results), rep.Unavailable)
	}
	if !strings.Contains(log.String(), "zcnet-xdp: unavailable: no AF_XDP sockets here; going on without it") {
		t.Errorf("progress: %q", log.String())
	}
	// The targets on it say why they have no figure.
	noted := 0
	for _, tg := range rep.Targets {
		if tg.Note == "zcnet xdp unavailable" {
			noted++
		}
	}
	if noted == 0 || noted != len(rep.Targets) {
		t.Errorf("targets %+v: want every one noted unavailable", rep.Targets)
	}
	var table bytes.Buffer
	if err := writeTable(&table, rep); err != nil || !strings.Contains(table.String(), "zcnet xdp:       UNAVAILABLE here: no AF_XDP sockets here") {
		t.Errorf("table (%v):\n%s", err, table.String())
	}

	// Any other failure to start still fails the run.
	cfg.contenders = []string{keyXDP, keyXDPKern}
	rep, err = run(context.Background(), cfg, &log, newNS)
	if !started || !errors.Is(err, errSetup) || len(rep.Unavailable) != 1 || len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0], "boom") {
		t.Errorf("a failed start: %v, report errors %q, unavailable %+v", err, rep.Errors, rep.Unavailable)
	}
}
