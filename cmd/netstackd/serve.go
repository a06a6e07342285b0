package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/zcnet/zcnet/evchan"
)

const serveHelp = `Usage: netstackd serve -tap NAME -addr PREFIX [flags]
       netstackd serve -config FILE [flags]

Attaches a zcnet stack to the TAP device NAME (one the process creates is
removed again on exit) and serves, on every address of the stack, the
services -services names:
  echo     TCP and UDP port 7  (RFC 862), on zero-copy sockets
  discard  TCP and UDP port 9  (RFC 863), on zero-copy sockets
  perf     TCP and UDP port 5201: an iperf3 server (stock iperf3 -c works)
  http     HTTP port 80: counters as text at /, as JSON at /status.json
It runs until SIGINT or SIGTERM, then closes every connection and exits.
Opening a TAP device needs CAP_NET_ADMIN (root).

Observability: -metrics ADDR serves, on a kernel socket of this process,
Prometheus metrics at /metrics, the status page at / and /status.json, and
Go's profiler at /debug/pprof/. -pcap FILE captures every packet of the
stack (tcpdump -r FILE reads it).

A config file (-config FILE, TOML) sets the same values: its keys are the
flag names below, e.g.
  tap = "zc0"
  addr = ["192.0.2.2/24"]
  mtu = 9000
  metrics = "127.0.0.1:9100"
Flags on the command line override the file.

Examples:
  # the kernel side at 192.0.2.1, the stack at 192.0.2.2
  sudo ip tuntap add dev zc0 mode tap
  sudo ip addr add 192.0.2.1/24 dev zc0 && sudo ip -6 addr add 2001:db8::1/64 dev zc0
  sudo ip link set zc0 up
  sudo netstackd serve -tap zc0 -addr 192.0.2.2/24 -addr6 2001:db8::2/64 -metrics 127.0.0.1:9100
  curl http://192.0.2.2/      socat - TCP:192.0.2.2:7      ping 192.0.2.2
  iperf3 -c 192.0.2.2 -t 5    iperf3 -c 192.0.2.2 -u -b 1G -R
  curl http://127.0.0.1:9100/metrics
`

// serveConfig is serve's configuration: the stack's flags and the daemon's.
type serveConfig struct {
	*stackFlags
	config       string
	services     string
	noServices   bool
	perfPort     int
	metrics      string
	stackMetrics bool
	logLevel     string
}

// servePoolSize is the daemon's default buffer pool: room for the copies
// of many sockets' received data that could not be handed over in place.
const servePoolSize = 64 << 20

// allServices lists the services serve knows, in start order: http comes
// last, so "listening service=http" means everything is up.
var allServices = []string{"echo", "discard", "perf", "http"}

func newServeConfig() *serveConfig {
	return &serveConfig{stackFlags: newStackFlags(servePoolSize), services: "echo,discard,perf,http", perfPort: iperfPort, logLevel: "info"}
}

// flags returns serve's flag set over cfg.
func (cfg *serveConfig) flags(stdout, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet("serve", serveHelp, stdout, stderr)
	fs.StringVar(&cfg.config, "config", "", "read settings from this TOML file (keys are these flags' names); flags override it")
	cfg.stackFlags.register(fs, "TAP device name (required; created if absent, at most 15 bytes)")
	fs.StringVar(&cfg.services, "services", cfg.services, "comma-separated services to run: "+strings.Join(allServices, ", ")+`, or "none"`)
	fs.BoolVar(&cfg.noServices, "no-services", false, "attach the stack but run no services (it still answers ping); same as -services none")
	fs.IntVar(&cfg.perfPort, "perf-port", cfg.perfPort, "port of the perf (iperf3) service, TCP and UDP")
	fs.StringVar(&cfg.metrics, "metrics", "", "serve /metrics, /debug/pprof/ and the status page on this kernel address, e.g. 127.0.0.1:9100 (off by default)")
	fs.BoolVar(&cfg.stackMetrics, "stack-metrics", false, "also serve /metrics on the stack's status page (port 80)")
	fs.StringVar(&cfg.logLevel, "log-level", cfg.logLevel, "debug, info, warn or error")
	return fs
}

// serveSetup is a checked serveConfig.
type serveSetup struct {
	stackSetup
	services     []string
	perfPort     uint16
	metrics      string
	stackMetrics bool
	level        slog.Level
}

func runServe(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServe(args, stdout, stderr)
	if err != nil {
		return err
	}
	s, err := cfg.resolve()
	if err != nil {
		fmt.Fprintf(stderr, "netstackd serve: %v\nRun 'netstackd serve -help' for usage.\n", err)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: s.level}))
	return serve(context.Background(), s, log)
}

// parseServe parses the command line and, with -config, the file under it:
// the file first, then the command line again so its flags win.
func parseServe(args []string, stdout, stderr io.Writer) (*serveConfig, error) {
	cli := newServeConfig()
	fs := cli.flags(stdout, stderr)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if cli.config == "" {
		return cli, nil
	}
	cfg := newServeConfig()
	ffs := cfg.flags(stdout, stderr)
	if err := loadConfig(ffs, cli.config, cfg.origin, "config"); err != nil {
		fmt.Fprintf(stderr, "netstackd serve: %v\n", err)
		return nil, errUsage
	}
	ffs.VisitAll(func(f *flag.Flag) {
		if s, ok := f.Value.(sealer); ok {
			s.seal()
		}
	})
	if err := parseFlags(ffs, args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { delete(cfg.origin.keys, f.Name) })
	return cfg, nil
}

// resolve checks every value; errors say what is wrong and what would be
// right.
func (cfg *serveConfig) resolve() (serveSetup, error) {
	var s serveSetup
	var err error
	if s.stackSetup, err = cfg.stackFlags.resolve(true); err != nil {
		return s, err
	}
	o := cfg.origin
	if err := s.level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return s, fmt.Errorf("%s: want debug, info, warn or error", o.val("log-level", cfg.logLevel))
	}
	if !cfg.noServices && cfg.services != "none" && cfg.services != "" {
		seen := map[string]bool{}
		for _, name := range strings.Split(cfg.services, ",") {
			name = strings.TrimSpace(name)
			if !contains(allServices, name) {
				return s, fmt.Errorf("%s: unknown service %q; want a comma-separated list of %s, or none", o.val("services", cfg.services), name, strings.Join(allServices, ", "))
			}
			seen[name] = true
		}
		for _, name := range allServices {
			if seen[name] {
				s.services = append(s.services, name)
			}
		}
	}
	if cfg.perfPort < 1 || cfg.perfPort > 65535 {
		return s, fmt.Errorf("%s: want a port, 1 to 65535 (iperf3's is %d)", o.val("perf-port", cfg.perfPort), iperfPort)
	}
	s.perfPort = uint16(cfg.perfPort)
	if cfg.metrics != "" {
		if err := checkListenAddr(cfg.metrics); err != nil {
			return s, fmt.Errorf("%s: %v", o.val("metrics", cfg.metrics), err)
		}
	}
	if cfg.stackMetrics && !contains(s.services, "http") {
		return s, fmt.Errorf("%s needs the http service (add http to %s)", o.name("stack-metrics"), o.name("services"))
	}
	s.metrics, s.stackMetrics = cfg.metrics, cfg.stackMetrics
	return s, nil
}

// checkListenAddr accepts HOST:PORT where HOST is empty, an IP address or
// localhost, and PORT a number (0: any free port).
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:9100 or [::1]:9100 or :9100")
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("host %q: want an IP address or localhost, e.g. 127.0.0.1:9100", host)
		}
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q: want 0 to 65535", port)
	}
	return nil
}

// serve runs the daemon until ctx ends or SIGINT/SIGTERM arrives.
//
// Its inner loop waits on one event channel (the paper's §7: one loop for
// everything a program waits on); today the channel carries the signals,
// and it is the channel the metrics report under channel="daemon".
func serve(ctx context.Context, s serveSetup, log *slog.Logger) error {
	z, err := openTAPStack(s.stackSetup, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := z.Close(); err != nil {
			log.Error("teardown", "err", err)
		}
	}()
	log.Info("attached", "tap", z.tap.Name(), "mac", z.tap.HardwareAddr().String(), "mtu", z.tap.MTU(), "offload", s.tap.Offload,
		"queues", z.tap.NumQueues(), "addrs", s.addrs, "routes", len(s.routes), "pool", formatBytes(int64(s.pool.Size)), "pinned", z.pool.Pinned())
	if s.pcap != "" {
		log.Info("capturing", "file", s.pcap, "snaplen", s.snap)
	}

	ec, err := evchan.New(evchan.Config{Capacity: 64})
	if err != nil {
		return err
	}
	defer ec.Close()
	sig, err := evchan.NotifySignal(ec, nil, os.Interrupt, syscall.SIGTERM)
	if err != nil {
		return err
	}
	defer sig.Stop()

	svc := newServices(z, log)
	defer svc.Close()
	obs := newObserver(z, svc, map[string]*evchan.Channel{"daemon": ec})
	if s.metrics != "" {
		addr, err := obs.listen(s.metrics, log)
		if err != nil {
			return err
		}
		defer obs.Close()
		log.Info("listening", "service", "metrics", "addr", addr)
	}
	if err := svc.start(s.services, s.perfPort, obs, s.stackMetrics); err != nil {
		return err
	}

	evs := make([]evchan.Event, 8)
	for {
		n, err := ec.Next(ctx, evs)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, evchan.ErrClosed) {
				break
			}
			return err
		}
		stop := false
		for _, ev := range evs[:n] {
			if ev.Source == evchan.SourceSignal {
				log.Info("signal", "signal", syscall.Signal(ev.Op))
				stop = true
			}
		}
		if stop {
			break
		}
	}
	log.Info("shutting down")
	return nil
}
