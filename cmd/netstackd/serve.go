package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/tap"
)

const serveHelp = `Usage: netstackd serve -tap NAME -addr PREFIX [flags]

Attaches a zcnet stack to the TAP device NAME (one the process creates is
removed again on exit) and serves, on every address of the stack:
  echo     TCP and UDP port 7  (RFC 862)
  discard  TCP and UDP port 9  (RFC 863)
  status   HTTP port 80: counters as text at /, as JSON at /status.json
It runs until SIGINT or SIGTERM, then closes every connection and exits.
Opening a TAP device needs CAP_NET_ADMIN (root).

Examples:
  # the kernel side at 192.0.2.1, the stack at 192.0.2.2
  sudo ip tuntap add dev zc0 mode tap
  sudo ip addr add 192.0.2.1/24 dev zc0 && sudo ip -6 addr add 2001:db8::1/64 dev zc0
  sudo ip link set zc0 up
  sudo netstackd serve -tap zc0 -addr 192.0.2.2/24 -addr6 2001:db8::2/64
  curl http://192.0.2.2/      socat - TCP:192.0.2.2:7      ping 192.0.2.2
`

// prefixList is a repeatable flag of address prefixes of one family.
type prefixList struct {
	v6   bool
	list []netip.Prefix
}

func (p *prefixList) String() string {
	s := make([]string, len(p.list))
	for i, x := range p.list {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(v string) error {
	pf, err := netip.ParsePrefix(v)
	if err != nil {
		return fmt.Errorf("%q is not an address with a prefix length, such as %s", v, map[bool]string{false: "192.0.2.2/24", true: "2001:db8::2/64"}[p.v6])
	}
	if pf.Addr().Is4() == p.v6 {
		return fmt.Errorf("%q is an IPv%s address; use %s", v, map[bool]string{false: "6", true: "4"}[p.v6], map[bool]string{false: "-addr6", true: "-addr"}[p.v6])
	}
	if pf.Addr().IsUnspecified() || pf.Addr().IsMulticast() {
		return fmt.Errorf("%q cannot be a host address", v)
	}
	p.list = append(p.list, pf)
	return nil
}

type serveConfig struct {
	tap        string
	addrs      prefixList
	addrs6     prefixList
	gw, gw6    string
	mtu        int
	offload    string
	queues     int
	logLevel   string
	noServices bool
}

func runServe(args []string, stdout, stderr io.Writer) error {
	cfg := serveConfig{addrs6: prefixList{v6: true}}
	fs := newFlagSet("serve", serveHelp, stdout, stderr)
	fs.StringVar(&cfg.tap, "tap", "", "TAP device name (required; created if absent, at most 15 bytes)")
	fs.Var(&cfg.addrs, "addr", "IPv4 address and prefix of the stack, e.g. 192.0.2.2/24 (repeatable)")
	fs.Var(&cfg.addrs6, "addr6", "IPv6 address and prefix of the stack, e.g. 2001:db8::2/64 (repeatable)")
	fs.StringVar(&cfg.gw, "gateway", "", "IPv4 default gateway (optional)")
	fs.StringVar(&cfg.gw6, "gateway6", "", "IPv6 default gateway (optional)")
	fs.IntVar(&cfg.mtu, "mtu", tap.DefaultMTU, fmt.Sprintf("MTU of the device and the stack (%d to %d)", tap.MinMTU, tap.MaxMTU))
	fs.StringVar(&cfg.offload, "offload", "on", "virtio-net offloads (checksum, TSO): on or off")
	fs.IntVar(&cfg.queues, "queues", 0, "TAP queues, each with its own reader (0: one per CPU)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&cfg.noServices, "no-services", false, "attach the stack but run no services (it still answers ping)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tcfg, gws, level, err := cfg.validate()
	if err != nil {
		fmt.Fprintf(stderr, "netstackd serve: %v\nRun 'netstackd serve -help' for usage.\n", err)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, tcfg, gws, log)
}

// validate checks the flags and returns the TAP configuration, the default
// routes and the log level, or an error that says what is wrong and what
// would be right.
func (cfg *serveConfig) validate() (tap.Config, []netip.Addr, slog.Level, error) {
	var t tap.Config
	var level slog.Level
	if cfg.tap == "" {
		return t, nil, level, fmt.Errorf("-tap is required: name the TAP device to attach to, e.g. -tap zc0")
	}
	if len(cfg.tap) > 15 || strings.ContainsAny(cfg.tap, "/ \t\n:") {
		return t, nil, level, fmt.Errorf("-tap %q: a device name is 1 to 15 bytes without '/', ':' or spaces", cfg.tap)
	}
	if len(cfg.addrs.list)+len(cfg.addrs6.list) == 0 {
		return t, nil, level, fmt.Errorf("no address: give the stack one with -addr (e.g. 192.0.2.2/24) and/or -addr6 (e.g. 2001:db8::2/64)")
	}
	if cfg.mtu < tap.MinMTU || cfg.mtu > tap.MaxMTU {
		return t, nil, level, fmt.Errorf("-mtu %d: want %d to %d", cfg.mtu, tap.MinMTU, tap.MaxMTU)
	}
	if len(cfg.addrs6.list) > 0 && cfg.mtu < 1280 {
		return t, nil, level, fmt.Errorf("-mtu %d: IPv6 needs at least 1280 (RFC 8200 §5)", cfg.mtu)
	}
	var off tap.OffloadMode
	switch cfg.offload {
	case "on":
		off = tap.OffloadOn
	case "off":
		off = tap.OffloadOff
	default:
		return t, nil, level, fmt.Errorf("-offload %q: want on or off", cfg.offload)
	}
	if cfg.queues < 0 || cfg.queues > tap.MaxQueues {
		return t, nil, level, fmt.Errorf("-queues %d: want 0 (one per CPU) to %d", cfg.queues, tap.MaxQueues)
	}
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return t, nil, level, fmt.Errorf("-log-level %q: want debug, info, warn or error", cfg.logLevel)
	}
	var gws []netip.Addr
	for _, g := range []struct {
		flag, v string
		v6      bool
		have    int
	}{{"-gateway", cfg.gw, false, len(cfg.addrs.list)}, {"-gateway6", cfg.gw6, true, len(cfg.addrs6.list)}} {
		if g.v == "" {
			continue
		}
		a, err := netip.ParseAddr(g.v)
		if err != nil || a.Is4() == g.v6 {
			return t, nil, level, fmt.Errorf("%s %q: want an IPv%s address", g.flag, g.v, map[bool]string{false: "4", true: "6"}[g.v6])
		}
		if g.have == 0 {
			return t, nil, level, fmt.Errorf("%s needs an address of its family on the stack", g.flag)
		}
		gws = append(gws, a)
	}
	t = tap.Config{Name: cfg.tap, MTU: cfg.mtu, Offload: off, Queues: cfg.queues}
	return t, gws, level, nil
}

func serve(ctx context.Context, cfg serveConfig, tcfg tap.Config, gws []netip.Addr, log *slog.Logger) error {
	link, err := tap.Open(tcfg)
	if err != nil {
		return err
	}
	st, err := stack.New(stack.Options{Logger: log})
	if err != nil {
		link.Close()
		return err
	}
	defer st.Close()
	addrs := append(append([]netip.Prefix(nil), cfg.addrs.list...), cfg.addrs6.list...)
	nic, err := st.AddNIC(link, stack.NICConfig{Name: cfg.tap, Addrs: addrs})
	if err != nil {
		return err
	}
	for _, gw := range gws {
		dst := netip.MustParsePrefix("0.0.0.0/0")
		if gw.Is6() {
			dst = netip.MustParsePrefix("::/0")
		}
		if err := st.AddRoute(stack.Route{Dst: dst, Gateway: gw, NIC: nic}); err != nil {
			return err
		}
	}
	log.Info("attached", "tap", link.Name(), "mac", link.HardwareAddr(), "mtu", link.MTU(), "offload", tcfg.Offload, "queues", link.NumQueues(), "addrs", addrs)
	if !cfg.noServices {
		svc := newServices(st, log)
		if err := svc.startAll(); err != nil {
			return err
		}
		defer svc.Close()
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
