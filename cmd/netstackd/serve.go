package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zcnet/zcnet/evchan"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"

	"github.com/zcnet/zcnet/cmd/netstackd/idlemem"
)

const serveHelp = `Usage: netstackd serve -tap NAME -addr PREFIX [flags]
       netstackd serve -ring PATH -addr PREFIX [flags]
       netstackd serve -xdp DEV -addr PREFIX [flags]
       netstackd serve -config FILE [flags]

Attaches a zcnet stack to the TAP device NAME (one the process creates is
removed again on exit), or with -ring to a shared-memory ring whose peer
process connects on the unix socket PATH (see package stack/link/ring: the frames
live in memory both processes map; no privileges needed), and serves, on
every address of the stack, the services -services names:
  echo     TCP and UDP port 7  (RFC 862), on zero-copy sockets
  discard  TCP and UDP port 9  (RFC 863), on zero-copy sockets
  perf     TCP and UDP port 5201: an iperf3 server (stock iperf3 -c works)
  http     HTTP port 80: counters as text at /, as JSON at /status.json,
           the live dashboard at /dashboard
It runs until SIGINT, SIGTERM or SIGHUP, then closes every connection,
logs a summary and exits with status 0; a second signal during that
teardown exits at once (status 128+signal). If the device link fails (the
TAP device is deleted under it) it stops with an error, status 1.
Opening a TAP device needs CAP_NET_ADMIN (root). A ring serves one peer
at a time; when it goes (closes or dies) the next may connect, each with a
fresh shared segment. Another stack attaches as the peer with the hidden
command "netstackd ring-peer -ring PATH -addr PREFIX" (the demo does).
With -xdp the stack shares the existing interface DEV with the host
through an AF_XDP socket on its queue 0 (package stack/link/xdp): frames for the
stack's addresses come to it, all others still go to the host. It takes
DEV's MAC address and MTU, and needs root and a kernel with AF_XDP and BPF.

Observability: -metrics ADDR serves, on a kernel socket of this process,
Prometheus metrics at /metrics, the status page at / and /status.json, a
live dashboard at /dashboard (throughput per NIC, connections, pool, event
channels, copy budget, drops; updated each second from /dashboard.json),
and Go's profiler at /debug/pprof/. The http service serves the status
page and the dashboard on the stack's port 80 too. -pcap FILE captures every
frame of the stack, Ethernet header included (tcpdump -r FILE reads it).

TCP echo and discard run on event channels: a fixed set of loops (one per
CPU, at most 4) serves every connection, so idle connections cost no
goroutine.

A config file (-config FILE, TOML) sets the same values: its keys are the
flag names below, e.g.
  tap = "zc0"            # or: ring = "/run/zcnet/ring.sock"
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
  open http://192.0.2.2/dashboard (or http://127.0.0.1:9100/dashboard) in a browser
  iperf3 -c 192.0.2.2 -t 5    iperf3 -c 192.0.2.2 -u -b 1G -R
  curl http://127.0.0.1:9100/metrics
  # no root: a stack on a ring, and a second stack in another process on its peer side
  netstackd serve -ring /tmp/zc.sock -addr 192.0.2.2/24 &
  netstackd ring-peer -ring /tmp/zc.sock -addr 192.0.2.1/24 -services none
`

const ringPeerHelp = `Usage: netstackd ring-peer -ring PATH -addr PREFIX [flags]

Connects to the shared-memory ring that "netstackd serve -ring PATH" (or
the demo) listens on, as its peer, puts a second zcnet stack on it and
serves the services -services names there, until the ring's stack side
goes or SIGINT/SIGTERM. It prints "ready" on stdout when the services are
up and, when it ends, one line of the services' byte counts. The demo runs
it as its child process; it takes serve's flags, -tap excepted.

Examples:
  netstackd ring-peer -ring /tmp/zc.sock -addr 192.0.2.1/24 -services echo,discard
`

// serveConfig is serve's configuration: the stack's flags and the daemon's.
type serveConfig struct {
	*stackFlags
	cmd          string // "serve", or "ring-peer" (dials -ring instead of listening)
	config       string
	ring         string
	xdp          xdpFlags // -xdp DEV: an AF_XDP link (xdp_link.go)
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
	return &serveConfig{stackFlags: newStackFlags(servePoolSize), cmd: "serve", services: "echo,discard,perf,http", perfPort: iperf3.Port, logLevel: "info"}
}

// maxSocketPath is the longest unix socket path (sun_path less its NUL).
const maxSocketPath = 107

// flags returns serve's flag set over cfg.
func (cfg *serveConfig) flags(stdout, stderr io.Writer) *flag.FlagSet {
	help, ringHelp := serveHelp, "serve a shared-memory ring peer on this unix socket path instead of a TAP device"
	if cfg.cmd == "ring-peer" {
		help, ringHelp = ringPeerHelp, "connect as the peer to the ring listening on this unix socket path (required)"
	}
	fs := newFlagSet(cfg.cmd, help, stdout, stderr)
	fs.StringVar(&cfg.config, "config", "", "read settings from this TOML file (keys are these flags' names); flags override it")
	cfg.stackFlags.register(fs, "TAP device name (required unless -ring; created if absent, at most 15 bytes)")
	fs.StringVar(&cfg.ring, "ring", "", ringHelp)
	registerXDPFlag(fs, cfg)
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
	ring         string    // unix socket of a ring, or "" for the TAP
	xdp          xdpFlags  // an AF_XDP link's interface (or "") and options
	ringDial     bool      // ring-peer: dial ring rather than listen on it
	report       io.Writer // ring-peer: gets "ready" and the final counts; nil for serve
	services     []string
	perfPort     uint16
	metrics      string
	stackMetrics bool
	level        slog.Level
}

func runServe(args []string, stdout, stderr io.Writer) error {
	return runServeCmd("serve", args, stdout, stderr)
}

// runRingPeer is the hidden command ring-peer: serve on the peer side of
// a ring another process listens on.
func runRingPeer(args []string, stdout, stderr io.Writer) error {
	return runServeCmd("ring-peer", args, stdout, stderr)
}

func runServeCmd(cmd string, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServeCmd(cmd, args, stdout, stderr)
	if err != nil {
		return err
	}
	s, err := cfg.resolve()
	if err != nil {
		fmt.Fprintf(stderr, "netstackd %s: %v\nRun 'netstackd %s -help' for usage.\n", cmd, err, cmd)
		return errUsage
	}
	if s.ringDial {
		s.report = stdout
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: s.level}))
	return serve(context.Background(), s, log)
}

// parseServe parses the command line and, with -config, the file under it:
// the file first, then the command line again so its flags win.
func parseServe(args []string, stdout, stderr io.Writer) (*serveConfig, error) {
	return parseServeCmd("serve", args, stdout, stderr)
}

func parseServeCmd(cmd string, args []string, stdout, stderr io.Writer) (*serveConfig, error) {
	cli := newServeConfig()
	cli.cmd = cmd
	fs := cli.flags(stdout, stderr)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if cli.config == "" {
		return cli, nil
	}
	cfg := newServeConfig()
	cfg.cmd = cmd
	ffs := cfg.flags(stdout, stderr)
	if err := loadConfig(ffs, cli.config, cfg.origin, "config"); err != nil {
		fmt.Fprintf(stderr, "netstackd %s: %v\n", cmd, err)
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
	o := cfg.origin
	switch {
	case cfg.cmd == "ring-peer" && cfg.ring == "":
		return s, fmt.Errorf("%s is required: the unix socket of the ring to connect to, e.g. %s", o.name("ring"), o.example("ring", "/tmp/zc.sock"))
	case cfg.cmd == "ring-peer" && cfg.tap != "":
		return s, fmt.Errorf("%s: ring-peer attaches to a ring only; leave -tap out", o.val("tap", cfg.tap))
	case cfg.xdp.dev != "":
		if err := cfg.checkXDP(); err != nil {
			return s, err
		}
	case cfg.tap == "" && cfg.ring == "":
		return s, fmt.Errorf("%s or %s is required: name the TAP device to attach to, e.g. %s, or the unix socket to serve a ring on, e.g. %s",
			o.name("tap"), o.name("ring"), o.example("tap", "zc0"), o.example("ring", "/run/zcnet/ring.sock"))
	case cfg.tap != "" && cfg.ring != "":
		return s, fmt.Errorf("%s and %s: give one, the stack attaches to a TAP device or to a ring", o.name("tap"), o.name("ring"))
	case len(cfg.ring) > maxSocketPath || strings.ContainsRune(cfg.ring, 0):
		return s, fmt.Errorf("%s: a unix socket path is at most %d bytes without NUL", o.val("ring", cfg.ring), maxSocketPath)
	}
	if s.stackSetup, err = cfg.stackFlags.resolve(cfg.ring == "" && cfg.xdp.dev == ""); err != nil {
		return s, err
	}
	s.xdp = cfg.xdp
	if (cfg.ring != "" || cfg.xdp.dev != "") && len(s.addrs) == 0 {
		return s, fmt.Errorf("no address: give the stack one with %s (e.g. 192.0.2.2/24) and/or %s (e.g. 2001:db8::2/64)", o.name("addr"), o.name("addr6"))
	}
	s.ring, s.ringDial = cfg.ring, cfg.cmd == "ring-peer"
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
		return s, fmt.Errorf("%s: want a port, 1 to 65535 (iperf3's is %d)", o.val("perf-port", cfg.perfPort), iperf3.Port)
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

// shutdownSignals stop serve cleanly: every connection closed, the capture
// flushed, a device the daemon made removed, a summary logged, exit status
// 0. SIGHUP is among them because a daemon started from a terminal gets it
// when the terminal goes, and dying of it would lose the capture's tail.
// SIGQUIT keeps Go's meaning (dump every goroutine, exit status 2).
var shutdownSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// linkPoll is how often serve checks that its device link still runs.
const linkPoll = 200 * time.Millisecond

// serve runs the daemon until ctx ends, a signal of shutdownSignals
// arrives, or the device link fails (the TAP device was deleted, say),
// which is an error. A second signal during the teardown ends the process
// at once (armForceExit).
//
// Its inner loop waits on one event channel (the paper's §7: one loop for
// everything a program waits on); today the channel carries the signals,
// and it is the channel the metrics report under channel="daemon".
func serve(ctx context.Context, s serveSetup, log *slog.Logger) (err error) {
	// Signals are caught from the start: one that comes while the link
	// and services are being set up stops the daemon as cleanly as a
	// later one, instead of killing it half set up.
	early := make(chan os.Signal, 1)
	signal.Notify(early, shutdownSignals...)
	defer signal.Stop(early)
	z, err := openServeStack(s, log)
	if err != nil {
		return err
	}
	started := time.Now()
	var sum *serveSummary
	disarm := func() {}
	defer func() {
		if cerr := z.Close(); cerr != nil {
			log.Error("teardown", "err", cerr)
		}
		disarm()
		if sum != nil {
			sum.log(log, time.Since(started), err)
		}
	}()
	switch {
	case z.XDP != nil:
		logXDPAttached(z, s, log)
	case z.TAP != nil:
		log.Info("attached", "tap", z.TAP.Name(), "mac", z.TAP.HardwareAddr().String(), "mtu", z.TAP.MTU(), "offload", s.tap.Offload,
			"queues", z.TAP.NumQueues(), "addrs", s.addrs, "routes", len(s.routes), "pool", formatBytes(int64(s.pool.Size)), "pinned", z.Pool.Pinned(), "device", z.TAP.Info().String())
	case z.Ring != nil:
		log.Info("attached", "ring", z.Ring.Addr(), "side", "stack", "mac", z.Ring.LinkAddress().String(), "mtu", z.Ring.MTU(),
			"addrs", s.addrs, "routes", len(s.routes), "pool", formatBytes(int64(s.pool.Size)), "pinned", z.Pool.Pinned())
	default:
		log.Info("attached", "ring", s.ring, "side", "peer", "mac", z.Peer.LinkAddress().String(), "mtu", z.Peer.MTU(),
			"addrs", s.addrs, "routes", len(s.routes), "pool", formatBytes(int64(s.pool.Size)), "pinned", z.Pool.Pinned())
		// The peer's life is the ring's: when the stack side goes, so do we.
		// The watcher gets a context of its own: serve reassigns ctx
		// below, and a closure over the variable raced with that.
		peerCtx, cancel := context.WithCancel(ctx)
		ctx = peerCtx
		defer cancel()
		gone := z.Peer.Gone()
		go func() {
			select {
			case <-gone:
				log.Info("ring stack side gone")
				cancel()
			case <-peerCtx.Done():
			}
		}()
	}
	if s.pcap != "" {
		log.Info("capturing", "file", s.pcap, "snaplen", s.snap)
	}

	ec, err := evchan.New(evchan.Config{Capacity: 64})
	if err != nil {
		return err
	}
	defer ec.Close()
	sig, err := evchan.NotifySignal(ec, nil, shutdownSignals...)
	if err != nil {
		return err
	}
	defer sig.Stop()
	// A link that fails ends the daemon: it can serve nothing more.
	ctx, stopCause := context.WithCancelCause(ctx)
	defer stopCause(nil)
	go watchLink(ctx, z, stopCause)

	stopMem := idlemem.Start(idlemem.CheckPeriod, idlemem.IdleMax)
	// A soft memory limit while the links drop a flood; GOMEMLIMIT in the
	// environment overrides it.
	stopLimit := idlemem.LimitUnderPressure(idlemem.Headroom, idlemem.PressurePeriod, idlemem.Calm, z.FloodDrops)
	defer stopLimit()
	defer stopMem()
	svc := newServices(z, log)
	defer svc.Close()
	obs := newObserver(z, svc, map[string]*evchan.Channel{"daemon": ec})
	if s.metrics != "" {
		addr, err := obs.Listen(s.metrics, obs.mux(), log)
		if err != nil {
			return fmt.Errorf("-metrics %s: %w", s.metrics, err)
		}
		defer obs.Close()
		log.Info("listening", "service", "metrics", "addr", addr)
	}
	if err := svc.start(s.services, s.perfPort, obs, s.stackMetrics); err != nil {
		return err
	}
	if s.report != nil {
		fmt.Fprintln(s.report, "ready")
	}

	evs := make([]evchan.Event, 8)
	var linkErr error
	select {
	case sig := <-early: // before the channel watched for it
		log.Info("signal", "signal", sig)
		disarm = armForceExit(os.Stderr)
		ctx = canceled
	default:
	}
	signal.Stop(early)
	for {
		n, err := ec.Next(ctx, evs)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, evchan.ErrClosed) {
				linkErr = linkFailure(ctx)
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
			disarm = armForceExit(os.Stderr)
			break
		}
	}
	log.Info("shutting down")
	svc.Close() // the counts are final once every handler has returned
	sum = svc.summary()
	if s.report != nil {
		fmt.Fprintf(s.report, "done echo_tcp_bytes=%d discard_tcp_bytes=%d echo_udp_datagrams=%d discard_udp_datagrams=%d\n",
			svc.echoBytes.Load(), svc.discardBytes.Load(), svc.udpEchoed.Load(), svc.udpDiscarded.Load())
	}
	return linkErr
}

// serveSummary is what serve logs as its last line: what the daemon did.
type serveSummary struct {
	rxPackets, rxBytes, txPackets, txBytes uint64
	accepted                               uint64 // TCP connections the stack accepted
	services                               map[string]uint64
}

// summary takes the counts of the stack and the services, which have
// stopped.
func (s *services) summary() *serveSummary {
	sum := &serveSummary{services: map[string]uint64{
		"echo_tcp_bytes": s.echoBytes.Load(), "discard_tcp_bytes": s.discardBytes.Load(),
		"echo_udp_datagrams": s.udpEchoed.Load(), "discard_udp_datagrams": s.udpDiscarded.Load(),
	}}
	for _, n := range s.st.NICStats() {
		sum.rxPackets += n.RxPackets
		sum.rxBytes += n.RxBytes
		sum.txPackets += n.TxPackets
		sum.txBytes += n.TxBytes
	}
	sum.accepted = s.st.Counters()["TCP.PassiveConnectionOpenings"]
	s.mu.Lock()
	ps := s.perf
	s.mu.Unlock()
	if ps != nil {
		sum.services["perf_tests"] = ps.Stats().Tests
	}
	return sum
}

// log writes the summary as the daemon's last log line, with the exit
// status the error gives.
func (sum *serveSummary) log(log *slog.Logger, up time.Duration, err error) {
	status := 0
	if err != nil {
		status = 1
	}
	attrs := []any{"uptime", up.Round(time.Millisecond).String(), "rx_packets", sum.rxPackets, "rx_bytes", sum.rxBytes,
		"tx_packets", sum.txPackets, "tx_bytes", sum.txBytes, "tcp_accepted", sum.accepted}
	for _, k := range []string{"echo_tcp_bytes", "discard_tcp_bytes", "echo_udp_datagrams", "discard_udp_datagrams", "perf_tests"} {
		if v, ok := sum.services[k]; ok {
			attrs = append(attrs, k, v)
		}
	}
	log.Info("stopped", append(attrs, "exit_status", status)...)
}

// canceled is a context that has ended: serve's loop, given it, stops at once.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// errLinkFailed is the cause serve's context carries when the link failed.
type errLinkFailed struct{ err error }

func (e errLinkFailed) Error() string { return e.err.Error() }
func (e errLinkFailed) Unwrap() error { return e.err }

// watchLink polls z's device link until ctx ends and, if the link fails,
// ends ctx with the failure as its cause.
func watchLink(ctx context.Context, z *zcstack.Stack, stop context.CancelCauseFunc) {
	t := time.NewTicker(linkPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := z.LinkErr(); err != nil {
				stop(errLinkFailed{fmt.Errorf("%w; the daemon cannot serve without its link (was the device deleted?)", err)})
				return
			}
		}
	}
}

// linkFailure returns the link's failure if that is why ctx ended.
func linkFailure(ctx context.Context) error {
	var lf errLinkFailed
	if errors.As(context.Cause(ctx), &lf) {
		return lf
	}
	return nil
}

// forceExit ends the process; tests replace it.
var forceExit = os.Exit

// forceExitGrace is how long after the first signal another one counts as
// the same request, not a second: timeout(1) and kill(1) of a process
// group deliver one stop as two signals microseconds apart, and a daemon
// that took those for an impatient operator would skip its teardown. A
// variable for tests.
var forceExitGrace = 500 * time.Millisecond

// armForceExit makes a second shutdown signal, while the teardown that
// the first one started still runs (and forceExitGrace after the first),
// end the process at once with status
// 128 + the signal's number (130 for SIGINT), as a shell reports a process
// a signal killed. A device the daemon made goes with the process (the
// kernel removes it when its last descriptor closes); the capture's last
// buffered records do not reach the file. The returned func disarms it.
func armForceExit(stderr io.Writer) (disarm func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, shutdownSignals...)
	done := make(chan struct{})
	exited := make(chan struct{})
	armed := time.Now()
	go func() {
		defer close(exited)
		for {
			select {
			case sig := <-ch:
				if time.Since(armed) < forceExitGrace {
					continue // the first request delivered twice
				}
				code := 1
				if n, ok := sig.(syscall.Signal); ok {
					code = 128 + int(n)
				}
				fmt.Fprintf(stderr, "netstackd: second signal (%v) during shutdown: exiting now, status %d\n", sig, code)
				forceExit(code)
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-exited
	}
}

// openServeStack builds serve's stack on its TAP device, or on a ring: as
// the stack side listening on s.ring, or (ring-peer) as the peer dialling it.
// It is the one place where serve picks its link: a new kind of link is a
// case here (and a check in resolve).
func openServeStack(s serveSetup, log *slog.Logger) (*zcstack.Stack, error) {
	switch {
	case s.xdp.dev != "":
		return openXDPStack(s.stackSetup, s.xdp, log)
	case s.ring == "":
		return zcstack.OpenTAP(s.stackSetup.config(log), log)
	case s.ringDial:
		return zcstack.DialRing(s.stackSetup.config(log), s.ring, log)
	}
	if err := clearStaleRing(s.ring, log); err != nil {
		return nil, err
	}
	return zcstack.ListenRing(s.stackSetup.config(log), s.ring, func(up bool, err error) {
		if up {
			log.Info("ring peer connected", "ring", s.ring)
		} else {
			log.Info("ring peer gone", "ring", s.ring, "err", err)
		}
	}, log)
}

// clearStaleRing removes the socket file a killed daemon left at path (one
// nothing listens on), which would otherwise stop the next daemon with
// "address already in use". A socket another process serves, and a path
// that is not a socket, are errors that say so; nothing there is fine.
func clearStaleRing(path string, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-ring %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("-ring %s: the path exists and is not a unix socket; give another path", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("-ring %s: another process serves a ring on this socket; stop it or give another path", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("-ring %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("-ring %s: removing the stale socket: %w", path, err)
	}
	log.Info("removed a stale ring socket nothing listened on", "ring", path)
	return nil
}
