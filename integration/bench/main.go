//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if code, ok := childMain(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// childMain runs the hidden subcommands the bench starts itself with
// (server, client); ok is false for any other command line.
func childMain(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "server":
		return runServer(args[1:], os.Stdin, os.Stdout, os.Stderr), true
	case "client":
		return runClient(args[1:], os.Stdin, os.Stdout, os.Stderr), true
	}
	return 0, false
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // setup or a measurement failed; the table shows what there is
	exitUsage   = 2
	exitNoPriv  = 3 // not root, or a tool missing
	exitSignal  = 130
	forceCleanT = 15 * time.Second // after a signal, how long a graceful stop may take
)

// cmdOptions are the flags that do not change what is measured.
type cmdOptions struct {
	jsonPath string
	svgPath  string
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if err := checkPrivileges(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return exitNoPriv
	}
	if gone := sweepStale(); len(gone) > 0 {
		fmt.Fprintf(stderr, "bench: deleted namespaces left by killed runs: %s\n", strings.Join(gone, " "))
	}

	// 1. SIGINT/SIGTERM cancel the run and kill every server and client
	//    process; the run then tears down as usual (namespaces deleted);
	// 2. a second signal, or a teardown that takes longer than
	//    forceCleanT, deletes the namespaces and exits.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-sigc:
		case <-finished:
			return
		}
		fmt.Fprintln(stderr, "bench: interrupted; tearing down (again to force)")
		cancel()
		killAllProcs()
		select {
		case <-sigc:
		case <-time.After(forceCleanT):
		case <-finished:
			return
		}
		cleanupAll()
		os.Exit(exitSignal)
	}()
	defer cleanupAll() // whatever a failed teardown left

	rep, runErr := run(ctx, cfg, stderr, ownNSFactory)
	rep.Command = "go run ./integration/bench " + strings.Join(args, " ")
	fmt.Fprintln(stderr)
	if err := writeTable(stdout, rep); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
	}
	status := exitOK
	if opts.jsonPath != "" {
		if err := writeJSON(opts.jsonPath, rep); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			status = exitFailed
		}
	}
	if opts.svgPath != "" {
		if err := writeSVGFile(opts.svgPath, rep); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			status = exitFailed
		}
	}
	switch {
	case ctx.Err() != nil:
		return exitSignal
	case runErr != nil:
		fmt.Fprintln(stderr, "bench:", runErr)
		return exitFailed
	}
	return status
}

// runSeq numbers the runs of this process, for device names.
var runSeq atomic.Uint32

// parseFlags parses the command line into a config.
func parseFlags(args []string, stderr io.Writer) (config, cmdOptions, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: go run ./integration/bench [flags]   (as root)

Runs stock gVisor, zcnet and the Linux kernel side by side, each server in
a process of its own, driven by client processes (UDP senders, a round-trip
client, wrk, iperf3), and prints a table (see go doc).

`)
		fs.PrintDefaults()
	}
	var (
		opts       cmdOptions
		cfg        config
		pin        string
		contenders string
		figures    string
		streams    bool
	)
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each measurement, whole seconds (iperf3 -t, wrk -d)")
	fs.IntVar(&cfg.runs, "runs", 3, "measurements of each figure on each contender; the table shows their median and range")
	fs.BoolVar(&cfg.quick, "quick", false, "smoke run: -runs 1 -duration 1s unless given")
	fs.StringVar(&pin, "pin", "auto", "CPU for the pinned round-trip figure (client and server on it): a CPU number, auto (the first allowed) or off")
	fs.IntVar(&cfg.pinProcs, "pin-procs", 1, "GOMAXPROCS of the pinned client and server (what a Go program started under taskset -c N gets); 0 leaves it")
	fs.IntVar(&cfg.udpSenders, "udp-senders", 2, "sender processes of the UDP figure")
	fs.StringVar(&contenders, "contenders", strings.Join(contenderKeys(), ","), "contenders to run, comma-separated")
	fs.StringVar(&figures, "figures", strings.Join(defaultFigureKeys(), ","), "figures to measure, comma-separated; known: "+strings.Join(figureKeys(), ","))
	fs.BoolVar(&streams, "streams", false, "also measure the stream-count figures: TCP up and down with 32 and 128 streams (iperf3 -P) on "+strings.Join(streamContenders, " and ")+", with retransmissions and the server's peak RSS")
	fs.BoolVar(&cfg.stockDefaults, "stock-defaults", false, "run stock gVisor with gVisor's default TCP options instead of zcnet's")
	fs.StringVar(&cfg.serverProfiles, "server-profiles", "", "write each bench server's CPU profile to `DIR`/<contender>.pprof")
	fs.StringVar(&opts.jsonPath, "json", "", "also write the report as JSON to `FILE`")
	fs.StringVar(&opts.svgPath, "svg", "", "also write a bar chart of the ratios to the kernel as SVG to `FILE`")
	if err := fs.Parse(args); err != nil {
		return config{}, cmdOptions{}, err
	}
	if fs.NArg() > 0 {
		return config{}, cmdOptions{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["runs"] {
			cfg.runs = 1
		}
		if !set["duration"] {
			cfg.duration = time.Second
		}
	}
	if cfg.duration < time.Second || cfg.duration > 10*time.Minute {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -duration %v: want 1s to 10m", errUsage, cfg.duration)
	}
	if cfg.runs < 1 || cfg.runs > 100 {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -runs %d: want 1 to 100", errUsage, cfg.runs)
	}
	if cfg.pinProcs < 0 || cfg.pinProcs > 64 {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -pin-procs %d: want 0 to 64", errUsage, cfg.pinProcs)
	}
	if cfg.udpSenders < 1 || cfg.udpSenders > 16 {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -udp-senders %d: want 1 to 16", errUsage, cfg.udpSenders)
	}
	switch pin {
	case "auto":
		cfg.pinCPU = firstCPU()
	case "off":
		cfg.pinCPU = -1
	default:
		n, err := strconv.Atoi(pin)
		if err != nil || n < 0 {
			return config{}, cmdOptions{}, fmt.Errorf("%w: -pin %q: want a CPU number, auto or off", errUsage, pin)
		}
		cfg.pinCPU = n
	}
	var err error
	if cfg.contenders, err = pickKeys("contenders", contenders, contenderKeys()); err != nil {
		return config{}, cmdOptions{}, err
	}
	if streams {
		figures += "," + strings.Join(streamFigureKeys(), ",")
	}
	if cfg.figures, err = pickKeys("figures", figures, figureKeys()); err != nil {
		return config{}, cmdOptions{}, err
	}
	cfg.id = strconv.FormatInt(int64(os.Getpid()%(36*36*36)), 36) + strconv.FormatInt(int64(runSeq.Add(1)%36), 36)
	return cfg, opts, nil
}

// pickKeys parses a comma-separated list of keys from known, and returns
// them in known's order.
func pickKeys(flagName, list string, known []string) ([]string, error) {
	want := map[string]bool{}
	for k := range strings.SplitSeq(list, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("%w: -%s: unknown %q; known: %s", errUsage, flagName, k, strings.Join(known, ","))
		}
		want[k] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: -%s: none given", errUsage, flagName)
	}
	return out, nil
}

// neededTools lists the programs cfg's figures and contenders run besides
// ip(8).
func neededTools(cfg config) []string {
	var tools []string
	if slices.Contains(cfg.contenders, keyXDP) || slices.Contains(cfg.contenders, keyXDPKern) {
		tools = append(tools, "ethtool") // the AF_XDP veth's peer: checksum offload off
	}
	for _, f := range cfg.figureList() {
		switch f.kind {
		case kindTCP:
			tools = append(tools, "iperf3")
		case kindHTTP:
			tools = append(tools, "wrk")
		}
	}
	slices.Sort(tools)
	return slices.Compact(tools)
}

// checkPrivileges says, in a way a person can act on, why the bench cannot
// run here, or returns nil.
func checkPrivileges(cfg config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: it makes network namespaces, TAP devices and a veth pair; run it as root (sudo -E go run ./integration/bench)", errPrivileges)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("%w: /dev/net/tun is not available: %v", errPrivileges, err)
	}
	for _, tool := range append([]string{"ip"}, neededTools(cfg)...) {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s is not installed (apt-get install iproute2 iperf3 wrk ethtool)", errPrivileges, tool)
		}
	}
	return nil
}
