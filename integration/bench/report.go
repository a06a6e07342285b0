//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// Target compares two cells of the table: Got is the ratio of their
// medians (from one run of the bench), Want what it should be: at least
// Want, or at most Want when AtMost (CPU per unit of work, where less is
// better). A Want of 0 marks a ratio reported beside the targets. A target
// with no Den is a bound on one median itself, in Unit (retransmissions
// in % of segments), not a ratio.
type Target struct {
	Issue  int     `json:"issue"`
	Name   string  `json:"name"`
	Num    string  `json:"numerator"`             // "figure/contender[/cpu|/extra]"
	Den    string  `json:"denominator,omitempty"` // the same, or "" for a bound
	Unit   string  `json:"unit,omitempty"`        // a bound's unit
	Want   float64 `json:"want,omitempty"`
	AtMost bool    `json:"at_most,omitempty"`
	Got    float64 `json:"got"`
	Met    bool    `json:"met"`
	Note   string  `json:"note,omitempty"` // why Got is missing
}

// cellRef names a cell and which of its medians: the figure's value, the
// server CPU per unit of work, or one of its Extras.
type cellRef struct {
	fig, key string
	cpu      bool
	extra    string
}

func (c cellRef) String() string {
	s := c.fig + "/" + c.key
	switch {
	case c.cpu:
		s += "/cpu"
	case c.extra != "":
		s += "/" + c.extra
	}
	return s
}

type targetSpec struct {
	issue    int
	name     string
	num, den cellRef // den's zero value: a bound on num, in unit
	unit     string
	want     float64
	atMost   bool
}

func v(fig, key string) cellRef   { return cellRef{fig: fig, key: key} }
func cpu(fig, key string) cellRef { return cellRef{fig: fig, key: key, cpu: true} }
func extra(fig, key, x string) cellRef {
	return cellRef{fig: fig, key: key, extra: x}
}

// retransBound is the bulk-TCP target's bound on retransmissions, in % of
// segments.
const retransBound = 0.01

// targetSpecs are the targets the report checks, each under the number the
// table prints for it: small packets (14), bulk TCP with the stream-count
// figures (15) and the AF_XDP link (19), with a few figures reported
// beside.
var targetSpecs = []targetSpec{
	{14, "UDP 64 B received/s: zero-copy vs stock", v(figUDP, keyZC), v(figUDP, keyStock), "", 1.5, false},
	{14, "UDP 64 B received/s: net.Conn vs stock", v(figUDP, keyNetConn), v(figUDP, keyStock), "", 1.5, false},
	{14, "UDP server CPU per datagram: zero-copy vs stock", cpu(figUDP, keyZC), cpu(figUDP, keyStock), "", 0.67, true},
	{14, "UDP server CPU per datagram: net.Conn vs stock", cpu(figUDP, keyNetConn), cpu(figUDP, keyStock), "", 0.67, true},
	{14, "round trips, one CPU: zero-copy vs stock", v(figRRPin, keyZC), v(figRRPin, keyStock), "", 1.3, false},
	{14, "round trips, unpinned: zero-copy vs stock", v(figRR, keyZC), v(figRR, keyStock), "", 1.5, false},
	{14, "round trips, one CPU: net.Conn vs stock", v(figRRPin, keyNetConn), v(figRRPin, keyStock), "", 0, false},
	{14, "round trips, unpinned: net.Conn vs stock", v(figRR, keyNetConn), v(figRR, keyStock), "", 0, false},
	{14, "wrk net/http: net.Conn vs stock", v(figHTTP, keyNetConn), v(figHTTP, keyStock), "", 1.5, false},
	{14, "wrk net/http: net.Conn vs kernel", v(figHTTP, keyNetConn), v(figHTTP, keyKernel), "", 0.75, false},
	{14, "TCP upload 1 stream: zero-copy vs net.Conn", v(figUp1, keyZC), v(figUp1, keyNetConn), "", 1.1, false},
	{14, "UDP 64 B received/s: zero-copy vs net.Conn", v(figUDP, keyZC), v(figUDP, keyNetConn), "", 1.1, false},
	{15, "TCP upload 1 stream: zero-copy vs kernel", v(figUp1, keyZC), v(figUp1, keyKernel), "", 0.6, false},
	{15, "TCP download 1 stream: zero-copy vs kernel", v(figDown1, keyZC), v(figDown1, keyKernel), "", 0.8, false},
	{15, "TCP upload server CPU/GB: zero-copy vs kernel", cpu(figUp1, keyZC), cpu(figUp1, keyKernel), "", 1, true},
	{15, "TCP download server CPU/GB: zero-copy vs kernel", cpu(figDown1, keyZC), cpu(figDown1, keyKernel), "", 1, true},
	{15, "TCP download 1 stream: zero-copy vs net.Conn", v(figDown1, keyZC), v(figDown1, keyNetConn), "", 1, false},
	{15, "TCP upload: 4 streams over 2 queues vs 1 stream over 1 queue", v(figUp4, keyZC2Q), v(figUp1, keyZC), "", 1.5, false},
	{15, "TCP download: 4 streams over 2 queues vs 1 stream over 1 queue", v(figDown4, keyZC2Q), v(figDown1, keyZC), "", 1.5, false},
	{15, "TCP upload 1 stream: zero-copy vs stock", v(figUp1, keyZC), v(figUp1, keyStock), "", 0, false},
	{15, "TCP download 1 stream: zero-copy vs stock", v(figDown1, keyZC), v(figDown1, keyStock), "", 0, false},
	// The stream-count figures (-streams).
	{15, "TCP upload: 128 streams vs 32 (zero-copy)", v(figUp128, keyZC), v(figUp32, keyZC), "", 1, false},
	{15, "TCP download: 128 streams vs 32 (zero-copy)", v(figDown128, keyZC), v(figDown32, keyZC), "", 1, false},
	{15, "TCP upload 128 streams to zero-copy: retransmitted segments", extra(figUp128, keyZC, extraRetransPct), cellRef{}, "%", retransBound, true},
	{15, "TCP download 128 streams from zero-copy: retransmitted segments", extra(figDown128, keyZC, extraRetransPct), cellRef{}, "%", retransBound, true},
	{15, "TCP upload: 128 streams vs 32 (kernel)", v(figUp128, keyKernel), v(figUp32, keyKernel), "", 0, false},
	{15, "TCP download: 128 streams vs 32 (kernel)", v(figDown128, keyKernel), v(figDown32, keyKernel), "", 0, false},
	{15, "TCP upload 128 streams to kernel: retransmitted segments", extra(figUp128, keyKernel, extraRetransPct), cellRef{}, "%", 0, false},
	{15, "TCP download 128 streams from kernel: retransmitted segments", extra(figDown128, keyKernel, extraRetransPct), cellRef{}, "%", 0, false},
	// The AF_XDP link, against the zero-copy server on a TAP
	// and the kernel's socket on the same veth.
	{19, "UDP 64 B received/s: xdp vs TAP (zero-copy)", v(figUDP, keyXDP), v(figUDP, keyZC), "", 2, false},
	{19, "UDP 64 B received/s: xdp vs kernel on the same veth", v(figUDP, keyXDP), v(figUDP, keyXDPKern), "", 0.9, false},
	{19, "round trips, one CPU: xdp vs TAP", v(figRRPin, keyXDP), v(figRRPin, keyZC), "", 1.5, false},
	{19, "round trips, unpinned: xdp vs TAP", v(figRR, keyXDP), v(figRR, keyZC), "", 1.5, false},
	{19, "UDP server CPU per datagram: xdp vs TAP", cpu(figUDP, keyXDP), cpu(figUDP, keyZC), "", 0.5, true},
	{19, "TCP upload 1 stream: xdp vs TAP", v(figUp1, keyXDP), v(figUp1, keyZC), "", 0, false},
	{19, "TCP download 1 stream: xdp vs TAP", v(figDown1, keyXDP), v(figDown1, keyZC), "", 0, false},
}

// median returns the referenced median; ok is false if the cell is
// missing, present is false if the cell is there but its median is not (an
// Extra no run had).
func (r *Report) median(c cellRef) (m float64, ok, present bool) {
	res := r.result(c.fig, c.key)
	if res == nil {
		return 0, false, false
	}
	switch {
	case c.cpu:
		return res.CPU, true, true
	case c.extra != "":
		m, present = res.Extras[c.extra]
		return m, true, present
	}
	return res.Median, true, true
}

// unavailable returns the Unavailable entry of contender key, if any.
func (r *Report) unavailable(key string) (Unavailable, bool) {
	for _, u := range r.Unavailable {
		if u.Key == key {
			return u, true
		}
	}
	return Unavailable{}, false
}

// evalTargets computes every target whose cells the report has; one that
// needs a contender that could not run here is listed with a note saying
// so.
func evalTargets(rep *Report) []Target {
	var out []Target
	for _, s := range targetSpecs {
		bound := s.den == cellRef{}
		t := Target{Issue: s.issue, Name: s.name, Num: s.num.String(), Want: s.want, AtMost: s.atMost, Unit: s.unit}
		num, ok1, in1 := rep.median(s.num)
		den, ok2, in2 := 1.0, true, true
		if !bound {
			t.Den = s.den.String()
			den, ok2, in2 = rep.median(s.den)
		}
		if !ok1 || !ok2 {
			u, gone := rep.unavailable(s.num.key)
			if !gone && !bound {
				u, gone = rep.unavailable(s.den.key)
			}
			if gone {
				t.Note = u.Title + " unavailable"
				out = append(out, t)
			}
			continue // else: not measured in this run (filtered out)
		}
		switch {
		case !in1 || !in2:
			t.Note = "not measured (see the runs)"
		case bound && num < 0, !bound && (num <= 0 || den <= 0):
			t.Note = "a figure is missing (see errors)"
		case bound:
			t.Got = num
			switch {
			case s.want == 0:
			case s.atMost:
				t.Met = t.Got <= s.want
			default:
				t.Met = t.Got >= s.want
			}
		default:
			t.Got = num / den
			switch {
			case s.want == 0:
			case s.atMost:
				t.Met = t.Got <= s.want
			default:
				t.Met = t.Got >= s.want
			}
		}
		out = append(out, t)
	}
	return out
}

// status says whether a target is met, or not.
func (t Target) status() string {
	switch {
	case t.Note != "":
		return t.Note
	case t.Want == 0:
		return "(beside)"
	case t.Met:
		return "met"
	default:
		return "not met"
	}
}

func (t Target) needed() string {
	switch {
	case t.Want == 0:
		return "—"
	case t.AtMost:
		return "≤ " + t.format(t.Want)
	default:
		return "≥ " + t.format(t.Want)
	}
}

// format writes a ratio (×) or a bound's value in its unit.
func (t Target) format(x float64) string {
	if t.Den == "" && t.Unit != "" {
		return fmt.Sprintf("%.4f%s", x, t.Unit)
	}
	return fmt.Sprintf("%.2f×", x)
}

// cell formats a result as "median [min–max]", or just the median for a
// single run; "—" where the contender does not take part.
func cell(res *Result) string {
	if res == nil {
		return "—"
	}
	if !res.ok() && res.Median == 0 {
		return "error"
	}
	var s string
	if len(res.Runs) > 1 {
		s = fmt.Sprintf("%s [%s–%s]", formatValue(res.Median), formatValue(res.Min), formatValue(res.Max))
	} else {
		s = formatValue(res.Median)
	}
	if !res.ok() {
		s += " !"
	}
	return s
}

// formatValue keeps three significant digits without going scientific.
func formatValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// writeTable prints the report for people: the host, the figures by
// contender, each with the server's CPU under it, and the targets.
func writeTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "host: %s, %d CPUs, Linux %s, %s; load average %s at start, %s at end\n",
		rep.Host.CPU, rep.Host.CPUs, rep.Host.Kernel, rep.Host.Go, rep.Host.LoadAvg, rep.Host.LoadEnd)
	fmt.Fprintf(w, "each figure: median [min–max] of %d runs of %s, contenders alternated; MTU 1500; %.0f s in all\n", rep.Runs, rep.Duration, rep.Seconds)
	if rep.Command != "" {
		fmt.Fprintf(w, "command: %s\n", rep.Command)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"figure", "unit"}
	for _, c := range rep.Contenders {
		head = append(head, c.Title)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, f := range allFigures {
		var row, cpuRow, offRow []string
		any, anyOff := false, false
		for _, c := range rep.Contenders {
			res := rep.result(f.key, c.Key)
			any = any || res != nil
			row = append(row, cell(res))
			if res == nil || res.CPU == 0 {
				cpuRow = append(cpuRow, "—")
			} else {
				cpuRow = append(cpuRow, formatValue(res.CPU))
			}
			if res == nil || res.Offered == 0 {
				offRow = append(offRow, "—")
			} else {
				anyOff = true
				offRow = append(offRow, formatValue(res.Offered))
			}
		}
		if !any {
			continue
		}
		fmt.Fprintln(tw, strings.Join(append([]string{f.title, f.unit}, row...), "\t"))
		if anyOff {
			fmt.Fprintln(tw, strings.Join(append([]string{"  offered by the senders", f.unit}, offRow...), "\t"))
		}
		fmt.Fprintln(tw, strings.Join(append([]string{"  server CPU", f.cpuUnit}, cpuRow...), "\t"))
		for _, er := range f.rows {
			row := []string{er.title, er.unit}
			for _, c := range rep.Contenders {
				res := rep.result(f.key, c.Key)
				x, ok := 0.0, false
				if res != nil {
					x, ok = res.Extras[er.key]
				}
				switch {
				case !ok:
					row = append(row, "—")
				case er.key == extraRetransPct:
					row = append(row, fmt.Sprintf("%.4f", x))
				default:
					row = append(row, formatValue(x))
				}
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, c := range rep.Contenders {
		fmt.Fprintf(w, "%-16s %s\n", c.Title+":", c.About)
		if c.Setup != "" {
			fmt.Fprintf(w, "%-16s %s\n", "", c.Setup)
		}
	}
	for _, u := range rep.Unavailable {
		fmt.Fprintf(w, "%-16s UNAVAILABLE here: %s\n", u.Title+":", u.Reason)
	}
	fmt.Fprintf(w, "server CPU: %s\n", rep.CPUMeasure)

	if len(rep.Targets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "issue\ttarget (ratio of medians, or a median's bound; this run)\tgot\tneeded\tmet")
		for _, t := range rep.Targets {
			got := "—"
			if t.Note == "" {
				got = t.format(t.Got)
			}
			fmt.Fprintf(tw, "#%d\t%s\t%s\t%s\t%s\n", t.Issue, t.Name, got, t.needed(), t.status())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.Errors) > 0 {
		fmt.Fprintf(w, "\n%d errors:\n", len(rep.Errors))
		for _, e := range rep.Errors {
			fmt.Fprintln(w, "  "+e)
		}
	}
	return nil
}

// writeJSON writes the report to path, indented.
func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
