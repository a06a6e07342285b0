//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/integration/nstest"
)

// TestMain is also the entry point of the server and client processes
// the bench starts: in a test, its own executable is the test binary.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if code, ok := childMain(os.Args[1:]); ok {
			os.Exit(code)
		}
	}
	goleak.VerifyTestMain(m)
}

// skipOrFail skips t saying why, or, under CI (CI=true), fails it: there
// every test is expected to run.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so not skipping: %s", why)
	}
	t.Skip("skipping: " + why)
}

// requireRoot skips (or under CI fails) t unless it can make namespaces
// and TAP devices.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root for network namespaces, TAP devices and a veth pair")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		skipOrFail(t, "/dev/net/tun is not available")
	}
}

// requireBench skips (or under CI fails) t unless the bench can run here.
func requireBench(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"ip", "iperf3", "wrk", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" is not installed (apt-get install iproute2 iperf3 wrk ethtool)")
		}
	}
}

// TestQuick runs the whole bench in quick mode, with the stream-count
// figures, in namespaces from nstest and checks that the report is
// complete and sane: every contender has every figure it takes part in,
// each figure and its server CPU greater than zero, the stream-count
// figures their retransmissions and the server's peak RSS, no errors,
// every target computed, the table, the JSON and the SVG well-formed. A
// contender this machine cannot run (the AF_XDP one without AF_XDP) is
// logged with the reason, and fails the test under CI. It asserts nothing
// about performance.
func TestQuick(t *testing.T) {
	requireBench(t)
	cfg, _, err := parseFlags([]string{"-quick", "-streams"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	newNS := func(string) (netns, func() error, error) {
		return nstest.New(t), func() error { return nil }, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := run(ctx, cfg, &progress, newNS)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("errors: %q", rep.Errors)
	}
	if len(rep.Contenders)+len(rep.Unavailable) != len(contenderDefs) {
		t.Fatalf("contenders %+v, unavailable %+v; want %v", rep.Contenders, rep.Unavailable, contenderKeys())
	}
	for _, u := range rep.Unavailable {
		if u.Key != keyXDP || u.Reason == "" {
			t.Errorf("unavailable: %+v; only the AF_XDP contender may be, with a reason", u)
		}
		if os.Getenv("CI") == "true" {
			t.Errorf("CI=true, and the %s contender is unavailable: %s", u.Key, u.Reason)
		} else {
			t.Logf("the %s contender is unavailable here: %s", u.Key, u.Reason)
		}
	}
	cells := 0
	for _, d := range contenderDefs {
		_, gone := rep.unavailable(d.key)
		for _, f := range allFigures {
			res := rep.result(f.key, d.key)
			if gone {
				if res != nil {
					t.Errorf("%s on %s: measured, but the contender is unavailable", f.key, d.key)
				}
				continue
			}
			if !d.takesPart(f.key) {
				if res != nil {
					t.Errorf("%s on %s: measured, but the contender does not take part", f.key, d.key)
				}
				continue
			}
			cells++
			if res == nil {
				t.Errorf("%s on %s: missing", f.key, d.key)
				continue
			}
			if len(res.Runs) != cfg.runs || !res.ok() {
				t.Errorf("%s on %s: runs %+v, want %d without error", f.key, d.key, res.Runs, cfg.runs)
			}
			if !(res.Median > 0 && res.Min > 0 && res.Min <= res.Median && res.Median <= res.Max) {
				t.Errorf("%s on %s: median %v min %v max %v, want 0 < min <= median <= max", f.key, d.key, res.Median, res.Min, res.Max)
			}
			if !(res.CPU > 0) {
				t.Errorf("%s on %s: server CPU %v %s, want > 0", f.key, d.key, res.CPU, res.CPUUnit)
			}
			if f.kind == kindUDP && !(res.Offered >= res.Median*0.5) {
				t.Errorf("%s on %s: offered %v k/s for %v received", f.key, d.key, res.Offered, res.Median)
			}
			if (d.key == keyZC || d.key == keyXDP) && (f.kind == kindUDP || f.key == figUp1) {
				// The zero-copy sockets handed every received byte over
				// without a copy; the AF_XDP link counted its copy out of
				// the UMEM, every byte.
				for _, r := range res.Runs {
					if r.Extra["api_rx_zero_copy_share"] != 1 {
						t.Errorf("%s on %s: zero-copy share %v, want 1", f.key, d.key, r.Extra["api_rx_zero_copy_share"])
					}
					if x, ok := r.Extra["link_rx_copied_bytes_per_byte"]; ok != (d.key == keyXDP) || ok && x < 1 {
						t.Errorf("%s on %s: link copied %v bytes per byte received (%v)", f.key, d.key, x, ok)
					}
				}
			}
			if f.kind == kindTCP {
				// The server's memory was sampled; the retransmissions of
				// whoever sent were counted.
				for _, r := range res.Runs {
					if !(r.Extra[extraStartRSS] > 1 && r.Extra[extraPeakRSS] >= r.Extra[extraStartRSS]) {
						t.Errorf("%s on %s: peak RSS %v MiB (at start: %v)", f.key, d.key, r.Extra[extraPeakRSS], r.Extra[extraStartRSS])
					}
				}
				if x, ok := res.Extras[extraRetransPct]; !ok || x < 0 || !(res.Extras["segments"] > 0) {
					t.Errorf("%s on %s: retransmissions %v%% (%v) of %v segments", f.key, d.key, x, ok, res.Extras["segments"])
				}
			}
		}
	}
	if len(rep.Targets) != len(targetSpecs) {
		t.Errorf("%d targets, want %d", len(rep.Targets), len(targetSpecs))
	}
	for _, tg := range rep.Targets {
		switch {
		case tg.Note != "":
			if u, gone := rep.unavailable(keyXDP); !gone || tg.Note != u.Title+" unavailable" {
				t.Errorf("target %q: %s", tg.Name, tg.Note)
			}
		case tg.Den == "" && !(tg.Got >= 0): // a bound: retransmissions may be none
			t.Errorf("target %q: got %v", tg.Name, tg.Got)
		case tg.Den != "" && !(tg.Got > 0):
			t.Errorf("target %q: got %v", tg.Name, tg.Got)
		}
	}
	for _, c := range rep.Contenders {
		if (c.Key == keyXDP) != strings.Contains(c.Setup, "AF_XDP on ") {
			t.Errorf("%s: setup %q", c.Key, c.Setup)
		}
	}

	var table bytes.Buffer
	if err := writeTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stock gVisor", "zcnet zero-copy", "zcnet net.Conn", "zcnet 2q", "zcnet xdp", "kernel xdp veth", "kernel veth",
		"UDP 64 B datagrams received", "offered by the senders", "1-byte TCP round trips, one CPU", "net/http 1 KiB",
		"TCP download, 4 streams", "TCP upload, 32 streams", "TCP download, 128 streams", "retransmissions", "% of segments",
		"server peak RSS", "server RSS at start", "MiB", "s/GB", "µs/datagram", "needed", "#19"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if strings.Contains(table.String(), "error") {
		t.Errorf("table shows an error:\n%s", table.String())
	}

	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "bench.json")
	if err := writeJSON(jsonPath, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != cells || len(back.Targets) != len(rep.Targets) {
		t.Errorf("JSON round trip: %d results, %d targets; want %d, %d", len(back.Results), len(back.Targets), cells, len(rep.Targets))
	}

	svgPath := filepath.Join(dir, "bench.svg")
	if err := writeSVGFile(svgPath, rep); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	bars := svgBars(t, svg)
	// Every cell but the kernel's is a bar: the kernel is the unit.
	if want := len(rep.Results) - kernelCells(rep); len(bars) != want {
		t.Errorf("SVG has %d bars, want %d", len(bars), want)
	}
	t.Logf("quick run, %.1f s:\n%s", rep.Seconds, table.String())
}

func kernelCells(rep *Report) int {
	n := 0
	for _, r := range rep.Results {
		if r.Contender == keyKernel {
			n++
		}
	}
	return n
}

// svgBar is a bar of a chart as the SVG has it.
type svgBar struct {
	Group, Series string
	Value, Width  float64
}

// svgBars parses an SVG document strictly and returns its bars.
func svgBars(t *testing.T, doc []byte) []svgBar {
	t.Helper()
	var root struct {
		XMLName xml.Name `xml:"svg"`
		Rects   []struct {
			Class  string  `xml:"class,attr"`
			Group  string  `xml:"data-group,attr"`
			Series string  `xml:"data-series,attr"`
			Value  float64 `xml:"data-value,attr"`
			Width  float64 `xml:"width,attr"`
		} `xml:"rect"`
	}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	dec.Strict = true
	if err := dec.Decode(&root); err != nil {
		t.Fatalf("SVG does not parse: %v\n%s", err, doc)
	}
	var bars []svgBar
	for _, r := range root.Rects {
		if r.Class == "bar" {
			bars = append(bars, svgBar{r.Group, r.Series, r.Value, r.Width})
		}
	}
	return bars
}
