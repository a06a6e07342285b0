package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math"
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
		{Value: 2, Bytes: 1e9, CPUSeconds: 1},
		{Err: "boom"},
		{Value: 4, Bytes: 2e9, CPUSeconds: 1},
		{Value: 3, Bytes: 1e9, CPUSeconds: 2},
	}}
	summarize(res)
	if res.Median != 3 || res.Min != 2 || res.Max != 4 {
		t.Errorf("median %v min %v max %v, want 3 2 4", res.Median, res.Min, res.Max)
	}
	if res.CPUSecondsPerGB != 1 { // 1, 0.5, 2 s/GB
		t.Errorf("CPU s/GB %v, want 1", res.CPUSecondsPerGB)
	}
	if res.ok() {
		t.Error("ok() with a failed run")
	}
}

func TestParseFlags(t *testing.T) {
	cfg, opts, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.runs != 3 || cfg.duration != 2*time.Second || cfg.quick || cfg.queues != 2 || cfg.pinProcs != 1 || cfg.pinCPU < 0 {
		t.Errorf("defaults: %+v", cfg)
	}
	if !slices.Equal(cfg.contenders, allContenders) || !slices.Equal(cfg.figures, figureKeys()) {
		t.Errorf("defaults: contenders %v figures %v", cfg.contenders, cfg.figures)
	}
	if opts.jsonPath != "" || opts.cpuProfile != "" {
		t.Errorf("defaults: %+v", opts)
	}
	if len("zb"+cfg.id+"z") > 15 {
		t.Errorf("device name zb%sz is longer than IFNAMSIZ-1", cfg.id)
	}
	// The default run must fit in the 5 minutes issue 6 allows it, with
	// a second per measurement to spare for connecting and draining.
	if d := time.Duration(cfg.measurements()) * (cfg.duration + time.Second); d > 5*time.Minute {
		t.Errorf("default run takes up to %v", d)
	}

	cfg, _, err = parseFlags([]string{"-quick"}, io.Discard)
	if err != nil || cfg.runs != 1 || cfg.duration != 300*time.Millisecond || !cfg.quick {
		t.Errorf("-quick: %+v, %v", cfg, err)
	}
	cfg, _, err = parseFlags([]string{"-quick", "-runs", "2", "-duration", "1s"}, io.Discard)
	if err != nil || cfg.runs != 2 || cfg.duration != time.Second {
		t.Errorf("-quick with explicit -runs and -duration: %+v, %v", cfg, err)
	}
	cfg, opts, err = parseFlags([]string{"-contenders", "kernel, zcnet", "-figures", "udp_64", "-pin", "off", "-json", "x.json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.contenders, []string{keyZC, keyKernel}) || !slices.Equal(cfg.figures, []string{figUDP}) || cfg.pinCPU != -1 || opts.jsonPath != "x.json" {
		t.Errorf("filters: %+v %+v", cfg, opts)
	}
	if cfg, _, err = parseFlags([]string{"-pin", "1"}, io.Discard); err != nil || cfg.pinCPU != 1 {
		t.Errorf("-pin 1: %+v, %v", cfg, err)
	}

	for _, bad := range [][]string{
		{"-runs", "0"},
		{"-duration", "1ms"},
		{"-queues", "1"},
		{"-pin", "-2"},
		{"-pin", "first"},
		{"-contenders", "zcnet,quic"},
		{"-figures", ","},
		{"stray"},
	} {
		if _, _, err := parseFlags(bad, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("parseFlags(%q) = %v, want errUsage", bad, err)
		}
	}
	if _, _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestRealMainUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := realMain([]string{"-runs", "x"}, &out, &errOut); code != exitUsage {
		t.Errorf("bad flag: exit %d, want %d", code, exitUsage)
	}
	if code := realMain([]string{"-help"}, &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), "usage: go run ./integration/bench") {
		t.Errorf("-help: exit %d, output %q", code, errOut.String())
	}
}

// fakeReport has every cell of the given contenders with the given medians
// for every figure.
func fakeReport(medians map[string]map[string]float64) *Report {
	rep := &Report{Runs: 1, Duration: "2s"}
	for _, k := range allContenders {
		if _, ok := medians[k]; !ok {
			continue
		}
		rep.Contenders = append(rep.Contenders, ContenderInfo{Key: k, Title: "T-" + k, About: "about " + k})
		for fig, v := range medians[k] {
			rep.Results = append(rep.Results, &Result{Figure: fig, Contender: k, Runs: []Run{{Value: v}}, Median: v, Min: v, Max: v})
		}
	}
	return rep
}

func TestTargets(t *testing.T) {
	rep := fakeReport(map[string]map[string]float64{
		keyZC:      {figUp1: 10, figDown1: 30, figUDP: 0.5, figRRPin: 26, figRR: 20},
		keyNetConn: {figUp1: 8, figDown1: 20},
		keyZCMQ:    {figUp4: 9, figDown4: 31},
		keyStock:   {figUp1: 2, figDown1: 1, figUDP: 0.3, figRRPin: 20, figRR: 10},
		keyKernel:  {figUp1: 20, figDown1: 40},
	})
	got := map[string]Target{}
	for _, tg := range evalTargets(rep, 2) {
		got[tg.Name] = tg
	}
	if len(got) != len(targetSpecs(2)) {
		t.Fatalf("%d targets, want %d", len(got), len(targetSpecs(2)))
	}
	for _, tc := range []struct {
		name   string
		ratio  float64
		status string
	}{
		{"TCP kernel→stack 1 stream: zcnet vs stock gVisor", 5, "met"},
		{"TCP kernel→stack 1 stream: zcnet vs kernel veth", 0.5, "missed by 17%"},
		{"TCP stack→kernel 1 stream: zcnet vs stock gVisor", 30, "met"},
		{"TCP stack→kernel 1 stream: zcnet vs kernel veth", 0.75, "missed by 6%"},
		{"TCP kernel→stack 1 stream: net.Conn adapters vs stock", 4, "reported beside"},
		{"UDP 64-byte datagrams/s: zcnet vs stock gVisor", 0.5 / 0.3, "missed by 17%"},
		{"1-byte round trips/s, one CPU: zcnet vs stock gVisor", 1.3, "met"},
		{"multi-queue kernel→stack: 4 streams over 2 queues vs 1 stream over 1 queue", 0.9, "missed by 10%"},
		{"multi-queue stack→kernel: 4 streams over 2 queues vs 1 stream over 1 queue", 31.0 / 30, "met"},
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

	// A failed cell gives a note, not a ratio; a filtered-out one no target.
	rep = fakeReport(map[string]map[string]float64{keyZC: {figUp1: 10}, keyStock: {figUp1: 0}})
	ts := evalTargets(rep, 2)
	if len(ts) != 1 || ts[0].Got != 0 || ts[0].Met || ts[0].Note == "" {
		t.Errorf("with a missing figure: %+v", ts)
	}
}

func TestWriteTable(t *testing.T) {
	rep := fakeReport(map[string]map[string]float64{
		keyZC:    {figUp1: 12.345, figUDP: 0.4567},
		keyStock: {figUp1: 2.5},
	})
	rep.result(figUp1, keyZC).Runs = []Run{{Value: 11}, {Value: 12.345}, {Value: 130}}
	summarize(rep.result(figUp1, keyZC))
	rep.result(figUp1, keyStock).Runs = []Run{{Value: 2.5, Bytes: 1e9, CPUSeconds: 3}}
	summarize(rep.result(figUp1, keyStock))
	rep.Targets = evalTargets(rep, 2)
	rep.Errors = []string{"udp_64 on stock: boom"}
	var b bytes.Buffer
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"T-zcnet", "T-stock",
		"TCP kernel→stack, 1 stream", "12.3 (11.0–130)", "2.50",
		"UDP 64-byte datagrams received", "0.457", "—",
		"CPU, TCP kernel→stack, 1 stream", "3.00",
		"zcnet vs stock gVisor", "≥ 5×", "4.94×", "missed by 1%",
		"1 errors:", "boom",
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
