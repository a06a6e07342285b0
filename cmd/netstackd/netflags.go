package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pcap"
	"github.com/zcnet/zcnet/tap"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// stackFlags are the flags that build a zcnet stack on a TAP device, shared
// by serve and the tools. Values are as given; resolve checks them and turns
// them into the configurations of the packages below.
type stackFlags struct {
	tap      string
	addrs    prefixList
	addrs6   prefixList
	routes   routeList
	gw, gw6  string
	mtu      int
	offload  string
	queues   int
	tcpRmem  bufSizes
	tcpWmem  bufSizes
	cc       string
	poolSize byteSize
	pin      string
	assoc    byteSize
	pcap     string
	pcapSnap int

	// origin says where each value came from, for messages.
	origin *origins
}

// newStackFlags returns the defaults, with a pool of poolSize bytes (the
// daemon's is larger than the tools').
func newStackFlags(poolSize int64) *stackFlags {
	return &stackFlags{
		addrs6:   prefixList{v6: true},
		mtu:      tap.DefaultMTU,
		offload:  "on",
		cc:       stack.CongestionCubic,
		poolSize: byteSize(poolSize),
		pin:      "prefer",
		assoc:    byteSize(0),
		pcapSnap: defaultSnapLen,
		origin:   &origins{},
	}
}

// defaultSnapLen captures whole packets, TSO super-frames included (tcpdump's
// default, MAXIMUM_SNAPLEN).
const defaultSnapLen = 262144

// register defines the flags on fs. tapHelp describes -tap for the command.
func (f *stackFlags) register(fs *flag.FlagSet, tapHelp string) {
	fs.StringVar(&f.tap, "tap", "", tapHelp)
	fs.Var(&f.addrs, "addr", "IPv4 address and prefix of the stack, e.g. 192.0.2.2/24 (repeatable)")
	fs.Var(&f.addrs6, "addr6", "IPv6 address and prefix of the stack, e.g. 2001:db8::2/64 (repeatable)")
	fs.StringVar(&f.gw, "gateway", "", "IPv4 default gateway (optional)")
	fs.StringVar(&f.gw6, "gateway6", "", "IPv6 default gateway (optional)")
	fs.Var(&f.routes, "route", "a route DST=GATEWAY, e.g. 198.51.100.0/24=192.0.2.1 (repeatable)")
	fs.IntVar(&f.mtu, "mtu", f.mtu, fmt.Sprintf("MTU of the device and the stack (%d to %d)", tap.MinMTU, tap.MaxMTU))
	fs.StringVar(&f.offload, "offload", f.offload, "virtio-net offloads (checksum, TSO): on or off")
	fs.IntVar(&f.queues, "queues", f.queues, "TAP queues, each with its own reader (0: as many as the device allows: one per CPU, one on a device made without multi_queue)")
	fs.Var(&f.tcpRmem, "tcp-rmem", "TCP receive buffer MIN,DEFAULT,MAX in bytes, as Linux's tcp_rmem (default: the stack's, 4KiB,4MiB,16MiB; on a ring, 4KiB,1MiB,2MiB)")
	fs.Var(&f.tcpWmem, "tcp-wmem", "TCP send buffer MIN,DEFAULT,MAX in bytes, as Linux's tcp_wmem (default: the stack's, 4KiB,4MiB,16MiB)")
	fs.StringVar(&f.cc, "congestion", f.cc, "TCP congestion control: cubic or reno")
	fs.Var(&f.poolSize, "pool-size", "buffer pool size, e.g. 64MiB (K, M, G are powers of 1024)")
	fs.StringVar(&f.pin, "pool-pin", f.pin, "lock the pool in RAM: require, prefer (warn if the memlock limit is too low) or off")
	fs.Var(&f.assoc, "assoc", "pool bytes each socket may hold received and unreleased (default 4MiB)")
	fs.StringVar(&f.pcap, "pcap", "", "write every packet of the stack's NIC to this pcap file (read it with tcpdump -r)")
	fs.IntVar(&f.pcapSnap, "pcap-snaplen", f.pcapSnap, "bytes of each packet the capture keeps (64 to 262144)")
}

// stackSetup is a checked stackFlags: what openStack builds.
type stackSetup struct {
	tap    tap.Config
	addrs  []netip.Prefix
	routes []stack.Route // NIC filled in by openStack
	stack  stack.Options
	pool   dmapool.Config
	assoc  int
	pcap   string
	snap   int
}

// config is the zcstack configuration of s; its capture writes -pcap.
func (s stackSetup) config(log *slog.Logger) zcstack.Config {
	c := zcstack.Config{TAP: s.tap, Addrs: s.addrs, Routes: s.routes, Stack: s.stack, Pool: s.pool, Assoc: s.assoc}
	if s.pcap != "" {
		path, snap := s.pcap, s.snap
		c.Capture = func(link gstack.LinkEndpoint) (gstack.LinkEndpoint, io.Closer, error) {
			w, err := pcap.Create(path, log)
			if err != nil {
				return nil, nil, err
			}
			l, err := pcap.New(link, w, snap)
			if err != nil {
				w.Close()
				return nil, nil, err
			}
			return l, w, nil
		}
	}
	return c
}

// resolve checks every value and returns the setup, or an error that says
// what is wrong and what would be right. needTAP says whether -tap is
// required (serve) or may be empty (the tools' -inproc mode).
func (f *stackFlags) resolve(needTAP bool) (stackSetup, error) {
	var s stackSetup
	o := f.origin
	if f.tap == "" && needTAP {
		return s, fmt.Errorf("%s is required: name the TAP device to attach to, e.g. %s", o.name("tap"), o.example("tap", "zc0"))
	}
	if f.tap != "" && (len(f.tap) > 15 || strings.ContainsAny(f.tap, "/ \t\n:")) {
		return s, fmt.Errorf("%s: a device name is 1 to 15 bytes without '/', ':' or spaces", o.val("tap", f.tap))
	}
	if needTAP && len(f.addrs.list)+len(f.addrs6.list) == 0 {
		return s, fmt.Errorf("no address: give the stack one with %s (e.g. 192.0.2.2/24) and/or %s (e.g. 2001:db8::2/64)", o.name("addr"), o.name("addr6"))
	}
	if f.mtu < tap.MinMTU || f.mtu > tap.MaxMTU {
		return s, fmt.Errorf("%s: want %d to %d", o.val("mtu", f.mtu), tap.MinMTU, tap.MaxMTU)
	}
	if len(f.addrs6.list) > 0 && f.mtu < 1280 {
		return s, fmt.Errorf("%s: IPv6 needs at least 1280 (RFC 8200 §5)", o.val("mtu", f.mtu))
	}
	var off tap.OffloadMode
	switch f.offload {
	case "on":
		off = tap.OffloadOn
	case "off":
		off = tap.OffloadOff
	default:
		return s, fmt.Errorf("%s: want on or off", o.val("offload", f.offload))
	}
	if f.queues < 0 || f.queues > tap.MaxQueues {
		return s, fmt.Errorf("%s: want 0 (one per CPU) to %d", o.val("queues", f.queues), tap.MaxQueues)
	}
	if f.cc != stack.CongestionCubic && f.cc != stack.CongestionReno {
		return s, fmt.Errorf("%s: want cubic or reno", o.val("congestion", f.cc))
	}
	var pin dmapool.PinMode
	switch f.pin {
	case "require":
		pin = dmapool.PinRequire
	case "prefer":
		pin = dmapool.PinPrefer
	case "off":
		pin = dmapool.PinOff
	default:
		return s, fmt.Errorf("%s: want require, prefer or off", o.val("pool-pin", f.pin))
	}
	const minPool, maxPool = 1 << 20, 64 << 30
	if f.poolSize < minPool || f.poolSize > maxPool {
		return s, fmt.Errorf("%s: want 1MiB to 64GiB", o.val("pool-size", f.poolSize))
	}
	if f.assoc != 0 && (f.assoc < 64<<10 || int64(f.assoc) > int64(f.poolSize)) {
		return s, fmt.Errorf("%s: want 64KiB up to the pool size (%v)", o.val("assoc", f.assoc), f.poolSize)
	}
	for _, b := range []struct {
		name string
		v    bufSizes
	}{{"tcp-rmem", f.tcpRmem}, {"tcp-wmem", f.tcpWmem}} {
		if !b.v.set {
			continue
		}
		if b.v.min < 4<<10 || b.v.min > b.v.def || b.v.def > b.v.max || b.v.max > 1<<30 {
			return s, fmt.Errorf("%s: want MIN <= DEFAULT <= MAX, MIN at least 4KiB and MAX at most 1GiB, e.g. 4KiB,4MiB,16MiB", o.val(b.name, b.v))
		}
	}
	if f.pcapSnap < 64 || f.pcapSnap > defaultSnapLen {
		return s, fmt.Errorf("%s: want 64 to %d", o.val("pcap-snaplen", f.pcapSnap), defaultSnapLen)
	}
	var routes []stack.Route
	for _, g := range []struct {
		name, v string
		v6      bool
		have    int
	}{{"gateway", f.gw, false, len(f.addrs.list)}, {"gateway6", f.gw6, true, len(f.addrs6.list)}} {
		if g.v == "" {
			continue
		}
		a, err := netip.ParseAddr(g.v)
		if err != nil || a.Is4() == g.v6 {
			return s, fmt.Errorf("%s: want an IPv%s address", o.val(g.name, g.v), map[bool]string{false: "4", true: "6"}[g.v6])
		}
		if g.have == 0 {
			return s, fmt.Errorf("%s needs an address of its family on the stack", o.name(g.name))
		}
		dst := netip.MustParsePrefix("0.0.0.0/0")
		if g.v6 {
			dst = netip.MustParsePrefix("::/0")
		}
		routes = append(routes, stack.Route{Dst: dst, Gateway: a})
	}
	for _, r := range f.routes.list {
		have := len(f.addrs.list)
		if r.Dst.Addr().Is6() {
			have = len(f.addrs6.list)
		}
		if have == 0 {
			return s, fmt.Errorf("%s: the stack has no address of its family to route from", o.val("route", r.String()))
		}
		routes = append(routes, r)
	}
	s.tap = tap.Config{Name: f.tap, MTU: f.mtu, Offload: off, Queues: f.queues}
	s.addrs = append(append([]netip.Prefix(nil), f.addrs.list...), f.addrs6.list...)
	s.routes = routes
	s.stack = stack.Options{CongestionControl: f.cc}
	if f.tcpRmem.set {
		s.stack.TCPReceiveBuffer = stack.BufferSizes{Min: int(f.tcpRmem.min), Default: int(f.tcpRmem.def), Max: int(f.tcpRmem.max)}
	}
	if f.tcpWmem.set {
		s.stack.TCPSendBuffer = stack.BufferSizes{Min: int(f.tcpWmem.min), Default: int(f.tcpWmem.def), Max: int(f.tcpWmem.max)}
	}
	s.pool = dmapool.Config{Size: int(f.poolSize), Pin: pin, Name: "netstackd"}
	s.assoc = int(f.assoc)
	s.pcap = f.pcap
	s.snap = f.pcapSnap
	return s, nil
}

// origins records which values came from a config file, so messages name
// the key in the file rather than a flag the user never typed.
type origins struct {
	file string          // the config file, if any
	keys map[string]bool // flag names whose value came from file
}

func (o *origins) fromFile(name string) bool { return o != nil && o.keys[name] }

// name is how the user set the value: "-mtu", or "mtu in zc.toml".
func (o *origins) name(flagName string) string {
	if o.fromFile(flagName) {
		return fmt.Sprintf("%s in %s", flagName, o.file)
	}
	return "-" + flagName
}

// val names a value as the user wrote it: `-mtu 9` or `zc.toml: mtu = 9`.
func (o *origins) val(flagName string, v any) string {
	s := fmt.Sprint(v)
	if _, ok := v.(string); ok {
		s = strconv.Quote(s)
	}
	if o.fromFile(flagName) {
		return fmt.Sprintf("%s: %s = %s", o.file, flagName, s)
	}
	return fmt.Sprintf("-%s %s", flagName, s)
}

// example shows how to set a value: "-tap zc0" on the command line, or
// `tap = "zc0"` in a file when a file is in use.
func (o *origins) example(flagName, v string) string {
	if o != nil && o.file != "" {
		return fmt.Sprintf("-%s %s (or %s = %q in %s)", flagName, v, flagName, v, o.file)
	}
	return fmt.Sprintf("-%s %s", flagName, v)
}

// sealer is a repeatable flag whose next Set replaces the values it holds,
// so a list given on the command line replaces one from a config file.
type sealer interface{ seal() }

// prefixList is a repeatable flag of address prefixes of one family.
type prefixList struct {
	v6        bool
	list      []netip.Prefix
	replacing bool
}

func (p *prefixList) String() string {
	s := make([]string, len(p.list))
	for i, x := range p.list {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) seal() { p.replacing = true }

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
	if p.replacing {
		p.list, p.replacing = nil, false
	}
	p.list = append(p.list, pf)
	return nil
}

// routeList is a repeatable flag of routes DST=GATEWAY.
type routeList struct {
	list      []stack.Route
	replacing bool
}

func (r *routeList) String() string {
	s := make([]string, len(r.list))
	for i, x := range r.list {
		s[i] = x.Dst.String() + "=" + x.Gateway.String()
	}
	return strings.Join(s, ",")
}

func (r *routeList) seal() { r.replacing = true }

func (r *routeList) Set(v string) error {
	dst, gw, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q is not a route: want DST=GATEWAY, e.g. 198.51.100.0/24=192.0.2.1", v)
	}
	d, err := netip.ParsePrefix(dst)
	if err != nil {
		return fmt.Errorf("route %q: destination %q is not a prefix such as 198.51.100.0/24", v, dst)
	}
	g, err := netip.ParseAddr(gw)
	if err != nil {
		return fmt.Errorf("route %q: gateway %q is not an address such as 192.0.2.1", v, gw)
	}
	if d.Addr().Is4() != g.Is4() {
		return fmt.Errorf("route %q: destination and gateway are of different families", v)
	}
	if d != d.Masked() {
		return fmt.Errorf("route %q: destination has host bits set; did you mean %s?", v, d.Masked())
	}
	if r.replacing {
		r.list, r.replacing = nil, false
	}
	r.list = append(r.list, stack.Route{Dst: d, Gateway: g})
	return nil
}

// byteSize is a size flag in bytes: 65536, 64K, 64KiB, 1.5M (K, M, G, T and
// KiB, MiB, GiB, TiB are all powers of 1024, as in iperf3's -l).
type byteSize int64

func (b byteSize) String() string { return formatBytes(int64(b)) }

func (b *byteSize) Set(v string) error {
	n, err := parseSize(v, 1024)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// formatBytes prints n with the largest binary unit that divides it.
func formatBytes(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseSize parses a number with an optional unit suffix, in any case:
// K, M, G, T are powers of base (1024 for sizes, 1000 for rates), KiB, MiB,
// GiB, TiB always powers of 1024; a trailing B is ignored.
func parseSize(v string, base float64) (int64, error) {
	s := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(v)), "B")
	binary := strings.HasSuffix(s, "I")
	s = strings.TrimSuffix(s, "I")
	mult := 1.0
	if n := len(s); n > 0 {
		if i := strings.IndexByte("KMGT", s[n-1]); i >= 0 {
			b := base
			if binary {
				b = 1024
			}
			mult = math.Pow(b, float64(i+1))
			s = s[:n-1]
		} else if binary {
			s = "?" // "5i": not a unit
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		unit := "K, M, G (powers of 1024)"
		if base == 1000 {
			unit = "k, M, G (powers of 1000)"
		}
		return 0, fmt.Errorf("%q is not a size: want a number with an optional %s, e.g. 64K", v, unit)
	}
	return int64(f * mult), nil
}

// bufSizes is a MIN,DEFAULT,MAX flag of byte sizes.
type bufSizes struct {
	min, def, max byteSize
	set           bool
}

func (b *bufSizes) String() string {
	if !b.set {
		return ""
	}
	return fmt.Sprintf("%v,%v,%v", b.min, b.def, b.max)
}

func (b *bufSizes) Set(v string) error {
	parts := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
	if len(parts) != 3 {
		return fmt.Errorf("%q: want MIN,DEFAULT,MAX, e.g. 4KiB,4MiB,16MiB", v)
	}
	for i, p := range []*byteSize{&b.min, &b.def, &b.max} {
		if err := p.Set(parts[i]); err != nil {
			return err
		}
	}
	b.set = true
	return nil
}
