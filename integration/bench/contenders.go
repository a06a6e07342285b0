//go:build linux

package main

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Contender keys, as used by -contenders, in the JSON and the targets.
const (
	keyStock   = "stock"         // gVisor's fdbased on a plain TAP, gonet adapters
	keyZC      = "zcnet"         // zero-copy sockets on a 1-queue TAP with offloads
	keyNetConn = "zcnet-netconn" // api.Net's net.Conn adapters, same kind of setup
	keyZC2Q    = "zcnet-mq"      // zero-copy sockets on a 2-queue TAP: TCP multi-stream
	keyKernel  = "kernel"        // Linux over a veth pair: the ceiling
)

// contenderDef is one column of the table: what it is and how its server
// starts. The table contenderDefs is the only place that lists them; a
// new contender (an AF_XDP link, say) is a new entry, usually a new server
// -mode (server.go, stacks_linux.go) started by tapServer.
type contenderDef struct {
	key, title, about string
	// figures lists the figure keys the contender is measured on; nil
	// means every figure.
	figures []string
	// start starts the contender's server process(es) and returns the
	// running contender. slot is the contender's index in contenderDefs,
	// which gives it a subnet of its own (tapSubnet).
	start func(e *env, d *contenderDef, slot int) (*contender, error)
}

// contenderDefs lists the contenders in table order.
var contenderDefs = []contenderDef{
	{
		key: keyStock, title: "stock gVisor",
		about: "gVisor (same version) from its public packages: fdbased on a plain 1-queue TAP, gonet adapters; TCP tuned as zcnet's stack (-stock-defaults: gVisor's defaults)",
		start: tapServer(modeStock, 1),
	},
	{
		key: keyZC, title: "zcnet zero-copy",
		about:   "zcnet stack on a 1-queue TAP with virtio-net offloads; zero-copy sockets: Recv/RecvMsg + Release, SendFunc, echo by Send of the received Buf",
		figures: []string{figUDP, figRRPin, figRR, figUp1, figDown1, figUp4, figDown4},
		start:   tapServer(modeZC, 1),
	},
	{
		key: keyNetConn, title: "zcnet net.Conn",
		about: "zcnet stack on a 1-queue TAP with offloads; api.Net's net.Conn/net.PacketConn adapters (one copy in Read and in Write)",
		start: tapServer(modeNetConn, 1),
	},
	{
		key: keyZC2Q, title: "zcnet 2q",
		about:   "zcnet stack on a 2-queue TAP with offloads; zero-copy sockets; 4-stream TCP figures only (the multi-queue target)",
		figures: []string{figUp4, figDown4},
		start:   tapServer(modeZC, 2),
	},
	{
		key: keyKernel, title: "kernel veth",
		about: "Linux sockets at both ends of a veth pair between two namespaces (default offloads); TCP served by stock iperf3 -s: the ceiling",
		start: startKernel,
	},
}

func contenderKeys() []string {
	keys := make([]string, len(contenderDefs))
	for i, d := range contenderDefs {
		keys[i] = d.key
	}
	return keys
}

func contenderDefByKey(key string) *contenderDef {
	for i := range contenderDefs {
		if contenderDefs[i].key == key {
			return &contenderDefs[i]
		}
	}
	return nil
}

// takesPart says whether the contender is measured on figure fig.
func (d *contenderDef) takesPart(fig string) bool {
	return d.figures == nil || slices.Contains(d.figures, fig)
}

// contender is a running contender.
type contender struct {
	def  *contenderDef
	addr netip.Addr // where the clients reach its servers
	ctl  *proc      // its bench server: stats, pin, unpin
	// iperfCPU returns the CPU time of the process that serves iperf3
	// (the bench server, or the kernel's iperf3 -s).
	iperfCPU func() (time.Duration, error)
}

// stats asks the contender's server for its counters.
func (c *contender) stats() (serverStats, error) {
	var st serverStats
	err := c.ctl.request("stats", &st)
	return st, err
}

// env is what starting contenders and measuring them needs.
type env struct {
	cfg   config
	exe   string    // the bench's executable, for its subcommands
	cli   netns     // holds every TAP's kernel side and the veth's client end; the clients run here
	newNS nsFactory // for the kernel's server namespace
	// lifetime bounds every server process (config.lifetime).
	lifetime time.Duration
	// onClose registers teardown, run in reverse order.
	onClose func(func() error)
}

// tapSubnet is slot's subnet of 192.0.2.0/24: a /28 whose .1 is the TAP's
// kernel side and .2 the stack.
func tapSubnet(slot int) (kernel, stack netip.Prefix) {
	b := byte(16 * slot)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, b + 1}), 28),
		netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, b + 2}), 28)
}

// The veth pair's addresses, for the kernel contender.
var (
	vethClient = netip.MustParsePrefix("198.51.100.1/24")
	vethServer = netip.MustParsePrefix("198.51.100.2/24")
)

// serverArgs are the arguments common to every bench server.
func (e *env) serverArgs(key string, args ...string) []string {
	out := append([]string{e.exe, "server"}, args...)
	out = append(out, "-lifetime", e.lifetime.String())
	if e.cfg.serverProfiles != "" {
		out = append(out, "-cpuprofile", filepath.Join(e.cfg.serverProfiles, key+".pprof"))
	}
	return out
}

// startServer starts a bench server in ns and waits for it to be ready.
func (e *env) startServer(ns netns, key string, args []string) (*proc, error) {
	p, err := startProc(ns, key+" server", args...)
	if err != nil {
		return nil, err
	}
	e.onClose(func() error { p.stop(15 * time.Second); return nil })
	var ready struct {
		Ready bool `json:"ready"`
	}
	if err := p.readJSON(time.Minute, &ready); err != nil {
		return nil, fmt.Errorf("%w: %v", errSetup, err)
	}
	return p, nil
}

// tapServer returns the start function of a contender whose server is a
// gVisor stack on a TAP device of its own, made by the server process in
// the client namespace.
func tapServer(mode string, queues int) func(e *env, d *contenderDef, slot int) (*contender, error) {
	return func(e *env, d *contenderDef, slot int) (*contender, error) {
		kernel, stack := tapSubnet(slot)
		dev := "zb" + e.cfg.id + strconv.Itoa(slot)
		args := e.serverArgs(d.key, "-mode", mode, "-dev", dev, "-queues", strconv.Itoa(queues),
			"-kernel", kernel.String(), "-addr", stack.String())
		if mode == modeStock && e.cfg.stockDefaults {
			args = append(args, "-stock-defaults")
		}
		p, err := e.startServer(e.cli, d.key, args)
		if err != nil {
			return nil, err
		}
		c := &contender{def: d, addr: stack.Addr(), ctl: p}
		c.iperfCPU = func() (time.Duration, error) {
			st, err := c.stats()
			return time.Duration(st.CPUNanos), err
		}
		return c, nil
	}
}

// startKernel makes the kernel contender: a server namespace joined to the
// client namespace by a veth pair, a bench server (echo, UDP, HTTP) and
// stock iperf3 -s in it.
func startKernel(e *env, d *contenderDef, slot int) (*contender, error) {
	srvNS, closeNS, err := e.newNS("srv")
	if err != nil {
		return nil, err
	}
	e.onClose(closeNS)
	cliDev, srvDev := "zb"+e.cfg.id+"c", "zb"+e.cfg.id+"v"
	if _, err := e.cli.Run(10*time.Second, "ip", "link", "add", cliDev, "mtu", strconv.Itoa(mtu), "type", "veth",
		"peer", "name", srvDev, "mtu", strconv.Itoa(mtu), "netns", srvNS.Name()); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		ns  netns
		dev string
		p   netip.Prefix
	}{{e.cli, cliDev, vethClient}, {srvNS, srvDev, vethServer}} {
		if _, err := a.ns.Run(10*time.Second, "ip", "addr", "add", a.p.String(), "dev", a.dev); err != nil {
			return nil, err
		}
		if _, err := a.ns.Run(10*time.Second, "ip", "link", "set", a.dev, "up"); err != nil {
			return nil, err
		}
	}
	p, err := e.startServer(srvNS, d.key, e.serverArgs(d.key, "-mode", modeKernel, "-addr", vethServer.Addr().String()))
	if err != nil {
		return nil, err
	}
	ip, err := startProc(srvNS, "iperf3 -s", "iperf3", "-s", "-p", strconv.Itoa(portIperf), "--forceflush")
	if err != nil {
		return nil, err
	}
	e.onClose(func() error { ip.stop(0); return nil })
	for i := 0; ; i++ {
		line, err := ip.readLine(30 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("%w: iperf3 -s: %v", errSetup, err)
		}
		if strings.Contains(string(line), "listening") {
			break
		}
		if i > 20 {
			return nil, fmt.Errorf("%w: iperf3 -s never said it was listening", errSetup)
		}
	}
	// iperf3 -s prints a banner per test; nobody reads it, so let it go
	// nowhere rather than fill the pipe.
	go io.Copy(io.Discard, ip.out)
	return &contender{def: d, addr: vethServer.Addr(), ctl: p, iperfCPU: ip.cpu}, nil
}
