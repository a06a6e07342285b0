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
// medians (from one run of the harness), Want the least it should be. A
// Want of 0 marks a ratio reported beside the targets, without one.
type Target struct {
	Name string  `json:"name"`
	Num  string  `json:"numerator"`   // "figure/contender"
	Den  string  `json:"denominator"` // "figure/contender"
	Want float64 `json:"want,omitempty"`
	Got  float64 `json:"got"`
	Met  bool    `json:"met"`
	Note string  `json:"note,omitempty"` // why Got is missing
}

type targetSpec struct {
	name           string
	numFig, numKey string
	denFig, denKey string
	want           float64
}

// targetSpecs are issue 6's targets, in its order, with the net.Conn
// adapters' ratios beside them.
func targetSpecs(queues int) []targetSpec {
	mq := fmt.Sprintf("4 streams over %d queues vs 1 stream over 1 queue", queues)
	return []targetSpec{
		{"TCP kernel→stack 1 stream: zcnet vs stock gVisor", figUp1, keyZC, figUp1, keyStock, 5},
		{"TCP kernel→stack 1 stream: zcnet vs kernel veth", figUp1, keyZC, figUp1, keyKernel, 0.6},
		{"TCP stack→kernel 1 stream: zcnet vs stock gVisor", figDown1, keyZC, figDown1, keyStock, 20},
		{"TCP stack→kernel 1 stream: zcnet vs kernel veth", figDown1, keyZC, figDown1, keyKernel, 0.8},
		{"TCP kernel→stack 1 stream: net.Conn adapters vs stock", figUp1, keyNetConn, figUp1, keyStock, 0},
		{"TCP kernel→stack 1 stream: net.Conn adapters vs kernel", figUp1, keyNetConn, figUp1, keyKernel, 0},
		{"TCP stack→kernel 1 stream: net.Conn adapters vs stock", figDown1, keyNetConn, figDown1, keyStock, 0},
		{"TCP stack→kernel 1 stream: net.Conn adapters vs kernel", figDown1, keyNetConn, figDown1, keyKernel, 0},
		{"UDP 64-byte datagrams/s: zcnet vs stock gVisor", figUDP, keyZC, figUDP, keyStock, 2},
		{"1-byte round trips/s, one CPU: zcnet vs stock gVisor", figRRPin, keyZC, figRRPin, keyStock, 1.3},
		{"1-byte round trips/s, unpinned: zcnet vs stock gVisor", figRR, keyZC, figRR, keyStock, 0},
		{"multi-queue kernel→stack: " + mq, figUp4, keyZCMQ, figUp1, keyZC, 1},
		{"multi-queue stack→kernel: " + mq, figDown4, keyZCMQ, figDown1, keyZC, 1},
	}
}

// evalTargets computes every target whose cells the report has.
func evalTargets(rep *Report, queues int) []Target {
	var out []Target
	for _, s := range targetSpecs(queues) {
		num, den := rep.result(s.numFig, s.numKey), rep.result(s.denFig, s.denKey)
		if num == nil || den == nil {
			continue // not measured in this run (filtered out)
		}
		t := Target{Name: s.name, Num: s.numFig + "/" + s.numKey, Den: s.denFig + "/" + s.denKey, Want: s.want}
		switch {
		case num.Median <= 0 || den.Median <= 0:
			t.Note = "a figure is missing (see errors)"
		default:
			t.Got = num.Median / den.Median
			t.Met = s.want > 0 && t.Got >= s.want
		}
		out = append(out, t)
	}
	return out
}

// status says whether a target is met, or by how much it is missed.
func (t Target) status() string {
	switch {
	case t.Note != "":
		return t.Note
	case t.Want == 0:
		return "reported beside"
	case t.Met:
		return "met"
	default:
		return fmt.Sprintf("missed by %.0f%%", (1-t.Got/t.Want)*100)
	}
}

// cell formats a result as "median (min–max)", or just the median for a
// single run.
func cell(res *Result) string {
	if res == nil {
		return "—"
	}
	if !res.ok() && res.Median == 0 {
		return "error"
	}
	f := func(v float64) string { return formatValue(v) }
	var s string
	if len(res.Runs) > 1 {
		s = fmt.Sprintf("%s (%s–%s)", f(res.Median), f(res.Min), f(res.Max))
	} else {
		s = f(res.Median)
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
// contender, CPU per GB, and the targets.
func writeTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "host: %s, %d CPUs, Linux %s, %s; load average at start %s\n", rep.Host.CPU, rep.Host.CPUs, rep.Host.Kernel, rep.Host.Go, rep.Host.LoadAvg)
	fmt.Fprintf(w, "each figure: median (min–max) of %d runs of %s; MTU 1500; %.0f s in all\n\n", rep.Runs, rep.Duration, rep.Seconds)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"figure", "unit"}
	for _, c := range rep.Contenders {
		head = append(head, c.Title)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, f := range allFigures {
		var row []string
		any := false
		for _, c := range rep.Contenders {
			res := rep.result(f.key, c.Key)
			any = any || res != nil
			row = append(row, cell(res))
		}
		if !any {
			continue
		}
		fmt.Fprintln(tw, strings.Join(append([]string{f.title, f.unit}, row...), "\t"))
	}
	for _, f := range allFigures {
		if !f.bulk() {
			continue
		}
		var row []string
		any := false
		for _, c := range rep.Contenders {
			res := rep.result(f.key, c.Key)
			if res == nil || res.CPUSecondsPerGB == 0 {
				row = append(row, "—")
				continue
			}
			any = true
			row = append(row, fmt.Sprintf("%.2f", res.CPUSecondsPerGB))
		}
		if any {
			fmt.Fprintln(tw, strings.Join(append([]string{"CPU, " + f.title, "s/GB"}, row...), "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, c := range rep.Contenders {
		fmt.Fprintf(w, "%-15s %s\n", c.Title+":", c.About)
	}
	fmt.Fprintf(w, "CPU s/GB: %s\n", rep.CPUMeasure)

	if len(rep.Targets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target (ratio of medians)\twant\tgot\tstatus")
		for _, t := range rep.Targets {
			want := "—"
			if t.Want > 0 {
				want = fmt.Sprintf("≥ %.2g×", t.Want)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.2f×\t%s\n", t.Name, want, t.Got, t.status())
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
