//go:build linux

package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestChartBarsMatchTheData(t *testing.T) {
	d := chartData{
		Title:  `ratios <to> the "kernel" & co`,
		Series: []string{"a", "b", "c"},
		Groups: []chartGroup{
			{Label: "UDP", Values: []float64{0.5, 2, 0}},             // c missing
			{Label: "RR <1 B>", Values: []float64{1, math.NaN(), 4}}, // b missing
			{Label: "none", Values: []float64{0, 0, 0}},
		},
		Ref: 1,
	}
	var b bytes.Buffer
	if err := writeChart(&b, d); err != nil {
		t.Fatal(err)
	}
	bars := svgBars(t, b.Bytes())
	want := []svgBar{{"UDP", "a", 0.5, 0}, {"UDP", "b", 2, 0}, {"RR <1 B>", "a", 1, 0}, {"RR <1 B>", "c", 4, 0}}
	if len(bars) != len(want) {
		t.Fatalf("bars %+v, want %+v", bars, want)
	}
	scale := chartBarsW / 4 // the largest value spans the bar area
	for i, w := range want {
		g := bars[i]
		if g.Group != w.Group || g.Series != w.Series || g.Value != w.Value {
			t.Errorf("bar %d: %+v, want %+v", i, g, w)
		}
		if math.Abs(g.Width-w.Value*scale) > 0.01 {
			t.Errorf("bar %d (%s/%s): width %v, want %v", i, g.Group, g.Series, g.Width, w.Value*scale)
		}
	}
	if !strings.Contains(b.String(), "&lt;to&gt;") || strings.Contains(b.String(), "<script") {
		t.Errorf("title not escaped, or a script:\n%s", b.String())
	}
}

func TestChartOfReport(t *testing.T) {
	rep := fakeReport(map[string]map[string]float64{
		keyStock:  {figUDP: 100, figUp1: 1},
		keyZC:     {figUDP: 50, figUp1: 8},
		keyKernel: {figUDP: 200, figUp1: 16},
	})
	rep.Contenders = nil
	for _, k := range []string{keyStock, keyZC, keyKernel} {
		rep.Contenders = append(rep.Contenders, ContenderInfo{Key: k, Title: "T-" + k})
	}
	d := chartOf(rep)
	if len(d.Series) != 2 || d.Series[0] != "T-stock" || d.Series[1] != "T-zcnet" {
		t.Fatalf("series %q: want the contenders but the kernel, in order", d.Series)
	}
	if len(d.Groups) != 2 {
		t.Fatalf("groups %+v, want UDP and upload", d.Groups)
	}
	for _, g := range d.Groups {
		var want []float64
		switch g.Label {
		case "UDP 64 B datagrams received":
			want = []float64{0.5, 0.25}
		case "TCP upload, 1 stream":
			want = []float64{1.0 / 16, 0.5}
		default:
			t.Fatalf("group %q", g.Label)
		}
		for i := range want {
			if math.Abs(g.Values[i]-want[i]) > 1e-12 {
				t.Errorf("%s: %v, want %v", g.Label, g.Values, want)
			}
		}
	}
}
