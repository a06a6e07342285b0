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
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() { os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // setup or a measurement failed; the table shows what there is
	exitUsage   = 2
	exitNoPriv  = 3 // not root, or no ip(8) or /dev/net/tun
	exitSignal  = 130
	forceCleanT = 15 * time.Second // after a signal, how long a graceful stop may take
)

// cmdOptions are the flags that do not change what is measured.
type cmdOptions struct {
	jsonPath   string
	cpuProfile string
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
	if err := checkPrivileges(); err != nil {
		fmt.Fprintln(stderr, err)
		return exitNoPriv
	}
	if gone := sweepStale(); len(gone) > 0 {
		fmt.Fprintf(stderr, "bench: deleted namespaces left by killed runs: %s\n", strings.Join(gone, " "))
	}

	// 1. SIGINT/SIGTERM cancel the run, which then tears down as usual;
	// 2. a second signal, or a teardown that takes longer than
	//    forceCleanT, deletes the namespaces (and with them every device)
	//    and exits.
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

	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitFailed
		}
		defer pprof.StopCPUProfile()
	}

	rep, runErr := run(ctx, cfg, stderr, ownNSFactory)
	fmt.Fprintln(stderr)
	if err := writeTable(stdout, rep); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
	}
	if opts.jsonPath != "" {
		if err := writeJSON(opts.jsonPath, rep); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return exitFailed
		}
	}
	switch {
	case ctx.Err() != nil:
		return exitSignal
	case runErr != nil:
		fmt.Fprintln(stderr, "bench:", runErr)
		return exitFailed
	}
	return exitOK
}

// runSeq numbers the runs of this process, for device names.
var runSeq atomic.Uint32

// parseFlags parses the command line into a config.
func parseFlags(args []string, stderr io.Writer) (config, cmdOptions, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: go run ./integration/bench [flags]   (as root)

Runs zcnet, stock gVisor and the Linux kernel side by side with the same
client and prints a table of TCP, UDP and round-trip figures (see go doc).

`)
		fs.PrintDefaults()
	}
	var (
		opts       cmdOptions
		cfg        config
		pin        string
		contenders string
		figures    string
	)
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "length of each measurement")
	fs.IntVar(&cfg.runs, "runs", 3, "measurements of each figure on each contender; the table shows their median and range")
	fs.BoolVar(&cfg.quick, "quick", false, "smoke run: -runs 1 -duration 300ms unless given")
	fs.StringVar(&pin, "pin", "auto", "CPU for the pinned round-trip figure (whole process on it, GOMAXPROCS 1): a CPU number, auto (the first allowed) or off")
	fs.IntVar(&cfg.pinProcs, "pin-procs", 1, "GOMAXPROCS during the pinned round-trip figure; 0 leaves it as it is")
	fs.StringVar(&contenders, "contenders", strings.Join(allContenders, ","), "contenders to run, comma-separated")
	fs.StringVar(&figures, "figures", strings.Join(figureKeys(), ","), "figures to measure, comma-separated")
	fs.IntVar(&cfg.queues, "queues", 2, "TAP queues of the multi-queue contender (zcnet-mq)")
	fs.BoolVar(&cfg.stockDefaults, "stock-defaults", false, "run stock gVisor with gVisor's default TCP options instead of zcnet's")
	fs.StringVar(&opts.jsonPath, "json", "", "also write the report as JSON to `FILE`")
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `FILE` (narrow it with -contenders and -figures)")
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
			cfg.duration = 300 * time.Millisecond
		}
	}
	if cfg.duration < 100*time.Millisecond || cfg.duration > 10*time.Minute {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -duration %v: want 100ms to 10m", errUsage, cfg.duration)
	}
	if cfg.runs < 1 || cfg.runs > 100 {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -runs %d: want 1 to 100", errUsage, cfg.runs)
	}
	if cfg.queues < 2 || cfg.queues > 16 {
		return config{}, cmdOptions{}, fmt.Errorf("%w: -queues %d: want 2 to 16", errUsage, cfg.queues)
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
	if cfg.contenders, err = pickKeys("contenders", contenders, allContenders); err != nil {
		return config{}, cmdOptions{}, err
	}
	if cfg.figures, err = pickKeys("figures", figures, figureKeys()); err != nil {
		return config{}, cmdOptions{}, err
	}
	cfg.id = strconv.FormatInt(int64(os.Getpid()), 36) + strconv.FormatInt(int64(runSeq.Add(1)), 36)
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

func figureKeys() []string {
	keys := make([]string, len(allFigures))
	for i, f := range allFigures {
		keys[i] = f.key
	}
	return keys
}

// checkPrivileges says, in a way a person can act on, why the harness
// cannot run here, or returns nil.
func checkPrivileges() error {
	if err := platformSupported(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: it makes network namespaces, TAP devices and a veth pair; run it as root (sudo -E go run ./integration/bench)", errPrivileges)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: ip(8) from iproute2 is not installed", errPrivileges)
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("%w: /dev/net/tun is not available: %v", errPrivileges, err)
	}
	return nil
}
