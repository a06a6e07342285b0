//go:build linux

package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
)

// A horizontal grouped bar chart as a self-contained SVG (no script, no
// external resource), written with fmt and xml.EscapeText: one group of
// bars per figure, one bar per contender, each bar its ratio to the
// kernel's median, with a line at 1. Small enough that our own code does
// it better than a plotting dependency.

// chartData is what a chart shows, independent of the report.
type chartData struct {
	Title    string
	Series   []string     // bar names, in legend order
	Groups   []chartGroup // in drawing order, top to bottom
	Ref      float64      // a vertical reference line at this value (0: none)
	RefLabel string       // what the line stands for
}

// chartGroup is one group of bars: Values[i] belongs to Series[i]; a value
// that is not positive (or NaN) draws no bar.
type chartGroup struct {
	Label  string
	Values []float64
}

// Chart geometry, in SVG user units (px).
const (
	chartLabelW  = 250.0 // the group labels' column
	chartBarsW   = 520.0 // the longest bar
	chartRightW  = 60.0  // room for the longest bar's value
	chartBarH    = 13.0
	chartBarGap  = 2.0
	chartGroupGp = 14.0
	chartTop     = 56.0 // title and legend
	chartBottom  = 24.0
)

// chartPalette colours the series in order (Okabe–Ito, colour-blind safe).
var chartPalette = []string{"#E69F00", "#0072B2", "#56B4E9", "#009E73", "#666666", "#D55E00", "#CC79A7", "#F0E442"}

// chartScale is the px per unit of value of a chart: the largest value
// (or the reference) spans chartBarsW.
func chartScale(d chartData) float64 {
	top := d.Ref
	for _, g := range d.Groups {
		for _, v := range g.Values {
			if v > top && !math.IsInf(v, 0) {
				top = v
			}
		}
	}
	if top <= 0 {
		top = 1
	}
	return chartBarsW / top
}

func usable(v float64) bool { return v > 0 && !math.IsNaN(v) && !math.IsInf(v, 0) }

// writeChart writes d as an SVG document.
func writeChart(w io.Writer, d chartData) error {
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		xml.EscapeText(&e, []byte(s))
		return e.String()
	}
	scale := chartScale(d)
	height := chartTop + chartBottom
	for _, g := range d.Groups {
		n := 0
		for _, v := range g.Values {
			if usable(v) {
				n++
			}
		}
		height += float64(max(n, 1))*(chartBarH+chartBarGap) + chartGroupGp
	}
	width := chartLabelW + chartBarsW + chartRightW
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="8" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", esc(d.Title))
	x := 8.0
	for i, s := range d.Series {
		fmt.Fprintf(&b, `<rect class="legend" x="%.1f" y="30" width="10" height="10" fill="%s"/>`, x, chartPalette[i%len(chartPalette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="39">%s</text>`+"\n", x+14, esc(s))
		x += 24 + 6.5*float64(len([]rune(s)))
	}
	y := chartTop
	for _, g := range d.Groups {
		y0 := y
		for i, v := range g.Values {
			if !usable(v) || i >= len(d.Series) {
				continue
			}
			wd := v * scale
			fmt.Fprintf(&b, `<rect class="bar" data-group="%s" data-series="%s" data-value="%g" x="%.1f" y="%.1f" width="%.3f" height="%.0f" fill="%s"><title>%s, %s: %.2f×</title></rect>`,
				esc(g.Label), esc(d.Series[i]), v, chartLabelW, y, wd, chartBarH, chartPalette[i%len(chartPalette)], esc(g.Label), esc(d.Series[i]), v)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%.2f</text>`+"\n", chartLabelW+wd+3, y+chartBarH-3, v)
			y += chartBarH + chartBarGap
		}
		if y == y0 {
			y += chartBarH + chartBarGap
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", chartLabelW-6, (y0+y)/2+4, esc(g.Label))
		y += chartGroupGp
	}
	if d.Ref > 0 {
		rx := chartLabelW + d.Ref*scale
		fmt.Fprintf(&b, `<line class="ref" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000" stroke-dasharray="4 3"/>`+"\n", rx, chartTop-6, rx, y-chartGroupGp+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", rx, y-chartGroupGp+16, esc(d.RefLabel))
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// chartOf is the report's chart: every figure's medians as ratios to the
// kernel's, one bar per contender other than the kernel. Without the
// kernel there is nothing to divide by: the chart has no groups.
func chartOf(rep *Report) chartData {
	d := chartData{
		Title:    fmt.Sprintf("zcnet benchmark: median / Linux kernel over veth (higher is better; %d × %s)", rep.Runs, rep.Duration),
		Ref:      1,
		RefLabel: "1 = kernel veth",
	}
	var keys []string
	for _, c := range rep.Contenders {
		if c.Key != keyKernel {
			keys = append(keys, c.Key)
			d.Series = append(d.Series, c.Title)
		}
	}
	for _, f := range allFigures {
		k := rep.result(f.key, keyKernel)
		if k == nil || k.Median <= 0 {
			continue
		}
		g := chartGroup{Label: f.title}
		any := false
		for _, key := range keys {
			r := rep.result(f.key, key)
			if r == nil || r.Median <= 0 {
				g.Values = append(g.Values, 0)
				continue
			}
			any = true
			g.Values = append(g.Values, r.Median/k.Median)
		}
		if any {
			d.Groups = append(d.Groups, g)
		}
	}
	return d
}

// writeSVGFile writes the report's chart to path.
func writeSVGFile(path string, rep *Report) error {
	var b bytes.Buffer
	if err := writeChart(&b, chartOf(rep)); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
