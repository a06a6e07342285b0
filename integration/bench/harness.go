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
	// errSetup reports a namespace, device, stack or listener that could
	// not be made.
	errSetup = errors.New("bench: setup")
	// errMeasure reports a measurement that could not complete.
	errMeasure = errors.New("bench: measurement")
	// errUsage reports a bad flag value.
	errUsage = errors.New("bench: usage")
	// errPrivileges reports that the process cannot make namespaces and
	// TAP devices.
	errPrivileges = errors.New("bench: needs root")
)

// Figure keys, as used by -figures and in the JSON.
const (
	figUp1   = "tcp_up_1"    // TCP, 1 stream, client (kernel) → server (stack)
	figDown1 = "tcp_down_1"  // TCP, 1 stream, server (stack) → client (kernel)
	figUp4   = "tcp_up_4"    // TCP, 4 streams, kernel → stack
	figDown4 = "tcp_down_4"  // TCP, 4 streams, stack → kernel
	figUDP   = "udp_64"      // UDP, 64-byte datagrams received per second
	figRR    = "rr_1"        // 1-byte TCP request/response round trips per second
	figRRPin = "rr_1_pinned" // the same, the whole process pinned to one CPU
)

// figure is one row of the table: what is measured and how.
type figure struct {
	key, title, unit string
	kind             measureKind
	streams          int  // TCP bulk figures: parallel streams
	pinned           bool // measured with the process pinned to one CPU
}

// measureKind names the client's measurement a figure runs.
type measureKind uint8

const (
	kindUpload     measureKind = iota // client.upload
	kindDownload                      // client.download
	kindUDP                           // client.udpFlood
	kindRoundTrips                    // client.roundTrips
)

// bulk reports whether f is a TCP bulk transfer, for which CPU s/GB applies.
func (f figure) bulk() bool { return f.kind == kindUpload || f.kind == kindDownload }

// measure runs f's measurement once against srv for d.
func (f figure) measure(ctx context.Context, c *client, srv *server, d time.Duration) (sample, error) {
	switch f.kind {
	case kindUpload:
		return c.upload(ctx, srv, f.streams, d)
	case kindDownload:
		return c.download(ctx, srv, f.streams, d)
	case kindUDP:
		return c.udpFlood(ctx, srv, d)
	default:
		return c.roundTrips(ctx, srv, d)
	}
}

var allFigures = []figure{
	{key: figUp1, title: "TCP kernel→stack, 1 stream", unit: "Gbit/s", kind: kindUpload, streams: 1},
	{key: figDown1, title: "TCP stack→kernel, 1 stream", unit: "Gbit/s", kind: kindDownload, streams: 1},
	{key: figUp4, title: "TCP kernel→stack, 4 streams", unit: "Gbit/s", kind: kindUpload, streams: 4},
	{key: figDown4, title: "TCP stack→kernel, 4 streams", unit: "Gbit/s", kind: kindDownload, streams: 4},
	{key: figUDP, title: "UDP 64-byte datagrams received", unit: "M/s", kind: kindUDP},
	{key: figRR, title: "1-byte TCP round trips", unit: "k/s", kind: kindRoundTrips},
	{key: figRRPin, title: "1-byte TCP round trips, one CPU", unit: "k/s", kind: kindRoundTrips, pinned: true},
}

// netns is a network namespace the harness can run code and commands in.
// *nstest.NS satisfies it (the tests use nstest's namespaces, which
// t.Cleanup deletes); the command uses ownNS, which needs no testing.TB.
type netns interface {
	// Name is the namespace's name as ip-netns(8) knows it.
	Name() string
	// Do runs fn on an OS thread switched into the namespace. Sockets and
	// TAP devices fn creates belong to the namespace and work from any
	// goroutine afterwards.
	Do(fn func() error) error
	// Run runs a command inside the namespace, bounded by timeout.
	Run(timeout time.Duration, args ...string) (string, error)
}

// nsFactory makes a network namespace for a role ("cli", "srv") and returns
// what deletes it.
type nsFactory func(role string) (netns, func() error, error)

// config is what one run of the harness does; parseFlags makes it.
type config struct {
	duration      time.Duration // of each measurement
	runs          int           // measurements per figure and contender
	quick         bool          // a smoke run: 1 run, short windows
	pinCPU        int           // CPU for figRRPin; -1 drops that figure
	pinProcs      int           // GOMAXPROCS for figRRPin; 0 leaves it
	contenders    []string      // keys, in table order
	figures       []string      // keys, in table order
	queues        int           // queues of the multi-queue contender
	stockDefaults bool          // stock gVisor with gVisor's default TCP options
	id            string        // short and unique to this run: device names
}

// grace is how long a measurement may take past its window to drain.
func (c config) grace() time.Duration { return 10 * time.Second }

// maxStream bounds one connection's life on the server.
func (c config) maxStream() time.Duration { return c.duration + 3*c.grace() }

// measurements is how many measurements a run makes.
func (c config) measurements() int {
	n := 0
	for _, k := range c.contenders {
		for _, f := range allFigures {
			if slices.Contains(c.figures, f.key) && takesPart(k, f) && (!f.pinned || c.pinCPU >= 0) {
				n++
			}
		}
	}
	return c.runs * n
}

// takesPart says whether the contender key is measured on f: the
// multi-queue contender only on the TCP bulk figures.
func takesPart(key string, f figure) bool { return key != keyZCMQ || f.bulk() }

// lifetime bounds every server loop: the whole run, generously.
func (c config) lifetime() time.Duration {
	return time.Duration(c.measurements())*(c.duration+c.grace()) + 5*time.Minute
}

// Run is one measurement of one figure on one contender.
type Run struct {
	Value      float64 `json:"value"`           // in the Result's unit
	Bytes      int64   `json:"bytes,omitempty"` // TCP payload bytes moved
	Seconds    float64 `json:"seconds"`         // the measurement's elapsed time
	CPUSeconds float64 `json:"cpu_seconds"`     // process CPU over Seconds
	// Extra explains the figure where the contender has counters:
	// link_rx_bytes_per_frame and link_tx_bytes_per_frame (GSO super-frames
	// show as tens of KB), link_rx_frames_per_wakeup (read batching),
	// api_rx_zero_copy_share (received bytes handed over without a copy);
	// for UDP sent_mpps, received_ratio and send_errors, and per second
	// link_rx_frames, udp_received and udp_rcvbuf_drops, which say whether
	// lost datagrams never left the TAP's queue or were dropped by the
	// socket; for TCP the stack's tcp_retransmits and tcp_timeouts, and
	// link_tx_errors, frames the TAP refused.
	Extra map[string]float64 `json:"extra,omitempty"`
	Err   string             `json:"error,omitempty"`
}

// Result is one cell of the table: a figure on a contender over all runs.
// Median, Min and Max are of the runs without error.
type Result struct {
	Figure    string  `json:"figure"`
	Contender string  `json:"contender"`
	Unit      string  `json:"unit"`
	Runs      []Run   `json:"runs"`
	Median    float64 `json:"median"`
	Min       float64 `json:"min"`
	Max       float64 `json:"max"`
	// CPUSecondsPerGB is the median over runs of process CPU seconds per
	// 10^9 payload bytes moved; TCP bulk figures only.
	CPUSecondsPerGB float64 `json:"cpu_seconds_per_gb,omitempty"`
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
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	LoadAvg    string `json:"loadavg_at_start"`
}

// ContenderInfo describes one column.
type ContenderInfo struct {
	Key   string `json:"key"`
	Title string `json:"title"`
	About string `json:"about"`
}

// Report is everything a run measured; the table and the JSON are made
// from it.
type Report struct {
	Started    time.Time       `json:"started"`
	Seconds    float64         `json:"seconds"`
	Host       Host            `json:"host"`
	Duration   string          `json:"duration_per_measurement"`
	Runs       int             `json:"runs"`
	Quick      bool            `json:"quick"`
	PinCPU     int             `json:"pin_cpu"`
	PinProcs   int             `json:"pin_gomaxprocs"`
	Queues     int             `json:"multi_queue_queues"`
	StockTCP   string          `json:"stock_tcp_options"`
	CPUMeasure string          `json:"cpu_measure"`
	Contenders []ContenderInfo `json:"contenders"`
	Results    []*Result       `json:"results"`
	Targets    []Target        `json:"targets"`
	Errors     []string        `json:"errors,omitempty"`
}

// cpuMeasure says what CPU s/GB counts.
const cpuMeasure = "process CPU (user+system of all threads, getrusage RUSAGE_SELF) over the measurement, client and server together, per 10^9 TCP payload bytes; includes kernel work in the process's system calls and the softirqs run in their context, not work deferred to ksoftirqd"

// result returns the cell for fig on contender c, or nil.
func (r *Report) result(fig, c string) *Result {
	for _, res := range r.Results {
		if res.Figure == fig && res.Contender == c {
			return res
		}
	}
	return nil
}

// run builds the contenders, measures every figure on each of them
// cfg.runs times, and tears everything down. Within a run the figures go in
// table order, and the contenders of a figure one after another, starting
// one further along each run, so that a burst of load from elsewhere on the
// machine is shared rather than falling on one contender. Progress goes to
// log. The report is returned even when some measurements failed (their
// errors are in it, and in the returned error).
func run(ctx context.Context, cfg config, log io.Writer, newNS nsFactory) (*Report, error) {
	rep := &Report{
		Started:    time.Now(),
		Host:       hostInfo(),
		Duration:   cfg.duration.String(),
		Runs:       cfg.runs,
		Quick:      cfg.quick,
		PinCPU:     cfg.pinCPU,
		PinProcs:   cfg.pinProcs,
		Queues:     cfg.queues,
		StockTCP:   "zcnet's",
		CPUMeasure: cpuMeasure,
	}
	if cfg.stockDefaults {
		rep.StockTCP = "gVisor's defaults"
	}
	t := &topology{}
	defer func() {
		if err := t.close(); err != nil {
			rep.Errors = append(rep.Errors, "teardown: "+err.Error())
		}
	}()
	cl, err := build(ctx, t, cfg, newNS, log)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep, err
	}
	var figs []figure
	for _, f := range allFigures {
		if slices.Contains(cfg.figures, f.key) && (!f.pinned || cfg.pinCPU >= 0) {
			figs = append(figs, f)
		}
	}
	for _, c := range t.contenders {
		rep.Contenders = append(rep.Contenders, ContenderInfo{Key: c.key, Title: c.title, About: c.about})
		for _, f := range figs {
			if c.runs(f) {
				rep.Results = append(rep.Results, &Result{Figure: f.key, Contender: c.key, Unit: f.unit})
			}
		}
	}
	n := len(t.contenders)
	for r := 0; r < cfg.runs && ctx.Err() == nil; r++ {
		for _, f := range figs {
			for i := 0; i < n && ctx.Err() == nil; i++ {
				c := t.contenders[(i+r)%n]
				if !c.runs(f) {
					continue
				}
				res := rep.result(f.key, c.key)
				one := measure(ctx, cl, c, f, cfg)
				res.Runs = append(res.Runs, one)
				if one.Err != "" {
					fmt.Fprintf(log, "run %d/%d %-12s %-14s error: %s\n", r+1, cfg.runs, f.key, c.key, one.Err)
				} else {
					fmt.Fprintf(log, "run %d/%d %-12s %-14s %8.3f %s\n", r+1, cfg.runs, f.key, c.key, one.Value, f.unit)
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
	rep.Targets = evalTargets(rep, cfg.queues)
	rep.Seconds = time.Since(rep.Started).Seconds()
	if len(rep.Errors) > 0 {
		return rep, fmt.Errorf("%w: %d errors, the first: %s", errMeasure, len(rep.Errors), rep.Errors[0])
	}
	return rep, nil
}

// measure runs one figure on one contender once, with the contender's
// counters read around it and, for pinned figures, the process pinned.
func measure(ctx context.Context, cl *client, c *contender, f figure, cfg config) Run {
	if f.pinned {
		restore, err := pinProcess(cfg.pinCPU, cfg.pinProcs)
		if err != nil {
			return Run{Err: err.Error()}
		}
		defer restore()
	}
	var before map[string]uint64
	if c.counters != nil {
		before = c.counters()
	}
	s, err := f.measure(ctx, cl, c.srv, cfg.duration)
	if err != nil {
		return Run{Err: err.Error()}
	}
	run := Run{Value: s.value, Bytes: s.bytes, Seconds: s.elapsed.Seconds(), CPUSeconds: s.cpu.Seconds(), Extra: s.extra}
	if before != nil {
		after := c.counters()
		d := func(k string) float64 { return float64(after[k] - before[k]) }
		if run.Extra == nil {
			run.Extra = map[string]float64{}
		}
		for _, x := range []struct {
			name     string
			num, den float64
		}{
			{"link_rx_bytes_per_frame", d("link_rx_bytes"), d("link_rx_frames")},
			{"link_rx_frames_per_wakeup", d("link_rx_frames"), d("link_rx_wakeups")},
			{"link_tx_bytes_per_frame", d("link_tx_bytes"), d("link_tx_frames")},
			{"api_rx_zero_copy_share", d("api_rx_handed_over"), d("api_rx_handed_over") + d("api_rx_copied")},
		} {
			if x.den > 0 {
				run.Extra[x.name] = x.num / x.den
			}
		}
		if f.bulk() {
			// Losses on the way out of the stack show as retransmissions,
			// and as timeouts when the window was too small to recover.
			for _, k := range []string{"tcp_retransmits", "tcp_timeouts", "link_tx_errors"} {
				if _, ok := after[k]; ok {
					run.Extra[k] = d(k)
				}
			}
		}
		if f.kind == kindUDP {
			// Where datagrams the client sent were lost: before the stack
			// (the TAP's queue), or at the socket's receive buffer.
			for _, k := range []string{"link_rx_frames", "udp_received", "udp_rcvbuf_drops"} {
				if _, ok := after[k]; ok {
					run.Extra[k+"_per_s"] = d(k) / s.elapsed.Seconds()
				}
			}
		}
	}
	return run
}

// summarize fills res's median, min, max and CPU per GB from its runs.
func summarize(res *Result) {
	var vals, cpg []float64
	for _, r := range res.Runs {
		if r.Err != "" {
			continue
		}
		vals = append(vals, r.Value)
		if r.Bytes > 0 {
			cpg = append(cpg, r.CPUSeconds/(float64(r.Bytes)/1e9))
		}
	}
	res.Median, res.Min, res.Max = stats(vals)
	res.CPUSecondsPerGB, _, _ = stats(cpg)
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
	h := Host{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()}
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
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			h.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return h
}
