//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Errors of the harness; wrapped with context, test with errors.Is.
var (
	// errSetup reports a namespace, device, process or listener that
	// could not be made.
	errSetup = errors.New("bench: setup")
	// errMeasure reports a measurement that could not complete.
	errMeasure = errors.New("bench: measurement")
	// errUsage reports a bad flag value.
	errUsage = errors.New("bench: usage")
	// errPrivileges reports that the process cannot make namespaces and
	// TAP devices, or lacks a tool.
	errPrivileges = errors.New("bench: cannot run here")
	// errUnavailable reports a contender this machine cannot run (no
	// AF_XDP sockets, say): the run goes on without it and the report
	// says why. Its errors are unavailableErrors.
	errUnavailable = errors.New("bench: contender unavailable")
)

// unavailableError says why a contender cannot run here; it is
// errUnavailable for errors.Is.
type unavailableError struct{ reason string }

func (e unavailableError) Error() string        { return "unavailable: " + e.reason }
func (e unavailableError) Is(target error) bool { return target == errUnavailable }

// Figure keys, as used by -figures and in the JSON.
const (
	figUDP   = "udp_64"      // UDP 64-byte datagrams received per second
	figRRPin = "rr_1_pinned" // 1-byte TCP round trips, client and server on one CPU
	figRR    = "rr_1"        // the same, unpinned
	figHTTP  = "http_1k"     // net/http, 1 KiB body, wrk -t2 -c64
	figUp1   = "tcp_up_1"    // TCP, 1 stream, client (kernel) → server
	figDown1 = "tcp_down_1"  // TCP, 1 stream, server → client
	figUp4   = "tcp_up_4"    // TCP, 4 streams, client → server
	figDown4 = "tcp_down_4"  // TCP, 4 streams, server → client
	// The stream-count figures (-streams): many parallel streams.
	figUp32    = "tcp_up_32"
	figDown32  = "tcp_down_32"
	figUp128   = "tcp_up_128"
	figDown128 = "tcp_down_128"
)

// Keys of Run.Extra (and Result.Extras) that rows and targets read.
const (
	// extraRetransPct is the retransmitted share of the segments sent, in
	// percent (retransmissions / sent bytes per MSS): see addRetransShare.
	extraRetransPct = "retransmit_pct"
	// extraPeakRSS is the server process's peak resident memory during
	// the measurement, in MiB (VmRSS sampled: rssSampler).
	extraPeakRSS = "peak_rss_mib"
	// extraStartRSS is its resident memory at the start, after a bench
	// server returned the memory it no longer used (contender.releaseMem).
	extraStartRSS = "start_rss_mib"
)

// extraRow is a row under a figure that shows the median of one of its
// runs' Extra values.
type extraRow struct {
	key, title, unit string
}

// streamRows are the rows under the stream-count figures.
var streamRows = []extraRow{
	{extraRetransPct, "  retransmissions", "% of segments"},
	{extraPeakRSS, "  server peak RSS", "MiB"},
	{extraStartRSS, "  server RSS at start", "MiB"},
}

// streamContenders are the contenders measured on the stream-count
// figures: the zero-copy server, and the kernel for reference.
var streamContenders = []string{keyZC, keyKernel}

// figure is one row of the table: what is measured and how.
type figure struct {
	key, title, unit string
	cpuUnit          string // the unit of the server-CPU row under it
	kind             measureKind
	streams          int  // TCP: parallel streams (iperf3 -P)
	reverse          bool // TCP: server → client (iperf3 -R)
	pinned           bool // round trips: client and server on one CPU
	// optIn figures are measured only when asked for (-streams, or named
	// in -figures): they would make the default run too long.
	optIn bool
	// only, if not nil, lists the contenders measured on the figure
	// (besides each contender's own figure list).
	only []string
	// rows are shown under the figure's server-CPU row.
	rows []extraRow
}

// measureKind names the measurement a figure runs.
type measureKind uint8

const (
	kindUDP measureKind = iota
	kindRR
	kindHTTP
	kindTCP
)

var allFigures = []figure{
	{key: figUDP, title: "UDP 64 B datagrams received", unit: "k/s", cpuUnit: "µs/datagram", kind: kindUDP},
	{key: figRRPin, title: "1-byte TCP round trips, one CPU", unit: "k/s", cpuUnit: "µs/round trip", kind: kindRR, pinned: true},
	{key: figRR, title: "1-byte TCP round trips, unpinned", unit: "k/s", cpuUnit: "µs/round trip", kind: kindRR},
	{key: figHTTP, title: "net/http 1 KiB, wrk -t2 -c64", unit: "k req/s", cpuUnit: "µs/request", kind: kindHTTP},
	{key: figUp1, title: "TCP upload, 1 stream", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 1},
	{key: figDown1, title: "TCP download, 1 stream", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 1, reverse: true},
	{key: figUp4, title: "TCP upload, 4 streams", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 4},
	{key: figDown4, title: "TCP download, 4 streams", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 4, reverse: true},
	{key: figUp32, title: "TCP upload, 32 streams", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 32, optIn: true, only: streamContenders, rows: streamRows},
	{key: figDown32, title: "TCP download, 32 streams", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 32, reverse: true, optIn: true, only: streamContenders, rows: streamRows},
	{key: figUp128, title: "TCP upload, 128 streams", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 128, optIn: true, only: streamContenders, rows: streamRows},
	{key: figDown128, title: "TCP download, 128 streams", unit: "Gbit/s", cpuUnit: "s/GB", kind: kindTCP, streams: 128, reverse: true, optIn: true, only: streamContenders, rows: streamRows},
}

// figureKeys returns every figure's key, in table order.
func figureKeys() []string {
	keys := make([]string, len(allFigures))
	for i, f := range allFigures {
		keys[i] = f.key
	}
	return keys
}

// defaultFigureKeys returns the keys of the figures measured unless
// -figures says otherwise: all but the opt-in ones.
func defaultFigureKeys() []string {
	var keys []string
	for _, f := range allFigures {
		if !f.optIn {
			keys = append(keys, f.key)
		}
	}
	return keys
}

// streamFigureKeys returns the keys of the stream-count figures (-streams).
func streamFigureKeys() []string {
	var keys []string
	for _, f := range allFigures {
		if f.optIn && f.kind == kindTCP {
			keys = append(keys, f.key)
		}
	}
	return keys
}

func figureByKey(key string) (figure, bool) {
	for _, f := range allFigures {
		if f.key == key {
			return f, true
		}
	}
	return figure{}, false
}

// netns is a network namespace the harness can run commands in.
// *nstest.NS satisfies it (the tests use nstest's namespaces, which
// t.Cleanup deletes); the command uses ownNS, which needs no testing.TB.
type netns interface {
	// Name is the namespace's name as ip-netns(8) knows it.
	Name() string
	// Run runs a command inside the namespace, bounded by timeout.
	Run(timeout time.Duration, args ...string) (string, error)
}

// nsFactory makes a network namespace for a role ("cli", "srv") and returns
// what deletes it.
type nsFactory func(role string) (netns, func() error, error)

// config is what one run of the harness does; parseFlags makes it.
type config struct {
	duration       time.Duration // of each measurement
	runs           int           // measurements per figure and contender
	quick          bool          // a smoke run: 1 run, short windows
	pinCPU         int           // CPU for figRRPin; -1 drops that figure
	pinProcs       int           // GOMAXPROCS of pinned processes; 0 leaves it
	udpSenders     int           // sender processes of the UDP figure
	contenders     []string      // keys, in table order
	figures        []string      // keys, in table order
	stockDefaults  bool          // stock gVisor with gVisor's default TCP options
	serverProfiles string        // directory for the servers' CPU profiles, or ""
	id             string        // short and unique to this run: device names
}

// seconds is the duration in whole seconds, at least 1: iperf3 and wrk
// take nothing finer.
func (c config) seconds() int { return max(1, int((c.duration+time.Second/2)/time.Second)) }

// figures returns the figures this run measures.
func (c config) figureList() []figure {
	var out []figure
	for _, f := range allFigures {
		if slices.Contains(c.figures, f.key) && (!f.pinned || c.pinCPU >= 0) {
			out = append(out, f)
		}
	}
	return out
}

// measurements is how many measurements a run makes.
func (c config) measurements() int {
	n := 0
	for _, k := range c.contenders {
		d := contenderDefByKey(k)
		for _, f := range c.figureList() {
			if d.takesPart(f.key) {
				n++
			}
		}
	}
	return c.runs * n
}

// lifetime bounds every server process: the whole run, generously.
func (c config) lifetime() time.Duration {
	return time.Duration(c.measurements())*(time.Duration(c.seconds())*time.Second+time.Minute) + 5*time.Minute
}

// Run is one measurement of one figure on one contender.
type Run struct {
	Value float64 `json:"value"` // in the Result's unit
	// ServerCPU is the server process's CPU time (user + system, all
	// threads) over the measurement, per unit of work (the Result's
	// CPUUnit).
	ServerCPU float64 `json:"server_cpu"`
	// Offered is, for UDP, what the senders sent, in the Result's unit.
	Offered float64 `json:"offered,omitempty"`
	Seconds float64 `json:"seconds"`
	// Extra explains the figure: the link's bytes per frame and frames per
	// wake-up, the share of received bytes handed over without a copy,
	// UDP drops by place, TCP retransmissions, wrk's socket errors.
	Extra map[string]float64 `json:"extra,omitempty"`
	Err   string             `json:"error,omitempty"`
}

// Result is one cell of the table: a figure on a contender over all runs.
// Median, Min and Max are of the runs without error; so are the CPU,
// Offered and Extras medians.
type Result struct {
	Figure    string  `json:"figure"`
	Contender string  `json:"contender"`
	Unit      string  `json:"unit"`
	CPUUnit   string  `json:"cpu_unit"`
	Runs      []Run   `json:"runs"`
	Median    float64 `json:"median"`
	Min       float64 `json:"min"`
	Max       float64 `json:"max"`
	CPU       float64 `json:"server_cpu_median"`
	Offered   float64 `json:"offered_median,omitempty"`
	// Extras are the medians of the runs' Extra values, each over the
	// runs that have it.
	Extras map[string]float64 `json:"extra_medians,omitempty"`
}

// ok reports whether every run succeeded.
func (r *Result) ok() bool {
	for _, run := range r.Runs {
		if run.Err != "" {
			return false
		}
	}
	return len(r.Runs) > 0
}

// Host describes the machine the run was on.
type Host struct {
	CPU     string `json:"cpu"`
	CPUs    int    `json:"cpus"`
	Kernel  string `json:"kernel"`
	Go      string `json:"go"`
	LoadAvg string `json:"loadavg_at_start"`
	LoadEnd string `json:"loadavg_at_end"`
	IPerf3  string `json:"iperf3,omitempty"`
}

// ContenderInfo describes one column.
type ContenderInfo struct {
	Key   string `json:"key"`
	Title string `json:"title"`
	About string `json:"about"`
	// Setup is what the server said about how it attached (the AF_XDP
	// link: native or generic program, zero-copy or copy socket).
	Setup string `json:"setup,omitempty"`
}

// Unavailable is a contender this machine could not run, and why.
type Unavailable struct {
	Key    string `json:"key"`
	Title  string `json:"title"`
	Reason string `json:"reason"`
}

// Report is everything a run measured; the table, the JSON and the chart
// are made from it.
type Report struct {
	Started    time.Time       `json:"started"`
	Seconds    float64         `json:"seconds"`
	Command    string          `json:"command"`
	Host       Host            `json:"host"`
	Duration   string          `json:"duration_per_measurement"`
	Runs       int             `json:"runs"`
	Quick      bool            `json:"quick"`
	PinCPU     int             `json:"pin_cpu"`
	PinProcs   int             `json:"pin_gomaxprocs"`
	UDPSenders int             `json:"udp_sender_processes"`
	StockTCP   string          `json:"stock_tcp_options"`
	CPUMeasure string          `json:"cpu_measure"`
	Contenders []ContenderInfo `json:"contenders"`
	// Unavailable lists the contenders asked for that could not run here.
	Unavailable []Unavailable `json:"unavailable,omitempty"`
	Results     []*Result     `json:"results"`
	Targets     []Target      `json:"targets"`
	Errors      []string      `json:"errors,omitempty"`
}

// cpuMeasure says what the server-CPU rows count.
const cpuMeasure = "server process CPU (user+system of all its threads) over the measurement, per unit of work; it includes the kernel work done in the server's system calls (for a TAP stack: reading and writing frames) and in softirqs run in its context; kernel work done in the client's context (for the kernel contender most of the receive path of a veth transmit) is not the server's"

// result returns the cell for fig on contender c, or nil.
func (r *Report) result(fig, c string) *Result {
	for _, res := range r.Results {
		if res.Figure == fig && res.Contender == c {
			return res
		}
	}
	return nil
}

// run starts the contenders, measures every figure on each of them
// cfg.runs times, and tears everything down. Within a run the figures go
// in table order, and the contenders of a figure one after another,
// starting one further along each run, so that a burst of load from
// elsewhere on the machine is shared rather than falling on one contender.
// Progress goes to log. The report is returned even when some measurements
// failed (their errors are in it, and in the returned error).
func run(ctx context.Context, cfg config, log io.Writer, newNS nsFactory) (*Report, error) {
	rep := &Report{
		Started:    time.Now(),
		Host:       hostInfo(),
		Duration:   (time.Duration(cfg.seconds()) * time.Second).String(),
		Runs:       cfg.runs,
		Quick:      cfg.quick,
		PinCPU:     cfg.pinCPU,
		PinProcs:   cfg.pinProcs,
		UDPSenders: cfg.udpSenders,
		StockTCP:   "zcnet's",
		CPUMeasure: cpuMeasure,
	}
	if cfg.stockDefaults {
		rep.StockTCP = "gVisor's defaults"
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				rep.Errors = append(rep.Errors, "teardown: "+err.Error())
			}
		}
	}()
	fail := func(err error) (*Report, error) {
		rep.Errors = append(rep.Errors, err.Error())
		return rep, err
	}
	exe, err := selfExe()
	if err != nil {
		return fail(err)
	}
	cli, closeCli, err := newNS("cli")
	if err != nil {
		return fail(err)
	}
	closers = append(closers, closeCli)
	e := &env{cfg: cfg, exe: exe, cli: cli, newNS: newNS, lifetime: cfg.lifetime(), onClose: func(f func() error) { closers = append(closers, f) }}

	var cs []*contender
	for slot := range contenderDefs {
		d := &contenderDefs[slot]
		if !slices.Contains(cfg.contenders, d.key) {
			continue
		}
		c, err := d.start(e, d, slot)
		var ue unavailableError
		if errors.As(err, &ue) {
			fmt.Fprintf(log, "%s: %v; going on without it\n", d.key, ue)
			rep.Unavailable = append(rep.Unavailable, Unavailable{Key: d.key, Title: d.title, Reason: ue.reason})
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("starting %s: %w", d.key, err))
		}
		cs = append(cs, c)
		rep.Contenders = append(rep.Contenders, ContenderInfo{Key: d.key, Title: d.title, About: d.about, Setup: c.setup})
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
	}
	figs := cfg.figureList()
	for _, c := range cs {
		for _, f := range figs {
			if c.def.takesPart(f.key) {
				rep.Results = append(rep.Results, &Result{Figure: f.key, Contender: c.def.key, Unit: f.unit, CPUUnit: f.cpuUnit})
			}
		}
	}
	n := len(cs)
	for r := 0; r < cfg.runs && ctx.Err() == nil; r++ {
		for _, f := range figs {
			for i := 0; i < n && ctx.Err() == nil; i++ {
				c := cs[(i+r)%n]
				if !c.def.takesPart(f.key) {
					continue
				}
				res := rep.result(f.key, c.def.key)
				one := measure(ctx, e, c, f)
				res.Runs = append(res.Runs, one)
				if one.Err != "" {
					fmt.Fprintf(log, "run %d/%d %-12s %-14s error: %s\n", r+1, cfg.runs, f.key, c.def.key, one.Err)
				} else {
					fmt.Fprintf(log, "run %d/%d %-12s %-14s %9.3f %-8s server CPU %8.3f %s\n", r+1, cfg.runs, f.key, c.def.key, one.Value, f.unit, one.ServerCPU, f.cpuUnit)
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		rep.Errors = append(rep.Errors, "interrupted: "+err.Error())
	}
	for _, res := range rep.Results {
		summarize(res)
		for _, run := range res.Runs {
			if run.Err != "" {
				rep.Errors = append(rep.Errors, fmt.Sprintf("%s on %s: %s", res.Figure, res.Contender, run.Err))
			}
		}
	}
	rep.Targets = evalTargets(rep)
	rep.Seconds = time.Since(rep.Started).Seconds()
	rep.Host.LoadEnd = loadAvg()
	if len(rep.Errors) > 0 {
		return rep, fmt.Errorf("%w: %d errors, the first: %s", errMeasure, len(rep.Errors), rep.Errors[0])
	}
	return rep, nil
}

// summarize fills res's medians, min and max from its runs.
func summarize(res *Result) {
	var vals, cpu, offered []float64
	for _, r := range res.Runs {
		if r.Err != "" {
			continue
		}
		vals = append(vals, r.Value)
		cpu = append(cpu, r.ServerCPU)
		if r.Offered > 0 {
			offered = append(offered, r.Offered)
		}
	}
	res.Median, res.Min, res.Max = stats(vals)
	res.CPU, _, _ = stats(cpu)
	res.Offered, _, _ = stats(offered)
	extras := map[string][]float64{}
	for _, r := range res.Runs {
		if r.Err != "" {
			continue
		}
		for k, x := range r.Extra {
			extras[k] = append(extras[k], x)
		}
	}
	res.Extras = nil
	for k, xs := range extras {
		if res.Extras == nil {
			res.Extras = map[string]float64{}
		}
		res.Extras[k], _, _ = stats(xs)
	}
}

// stats returns the median, minimum and maximum of vals (zeros if empty).
// The median of an even count is the mean of the middle two.
func stats(vals []float64) (median, lo, hi float64) {
	if len(vals) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	m := len(s) / 2
	median = s[m]
	if len(s)%2 == 0 {
		median = (s[m-1] + s[m]) / 2
	}
	return median, s[0], s[len(s)-1]
}

// hostInfo describes this machine.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

func loadAvg() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			return strings.Join(f[:3], " ")
		}
	}
	return ""
}
