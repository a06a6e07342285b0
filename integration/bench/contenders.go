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
	keyXDP     = "zcnet-xdp"     // zero-copy sockets on an AF_XDP link on a veth
	keyXDPKern = "kernel-xdp"    // the kernel's sockets on the AF_XDP link's veth: the xdp column's UDP reference
	keyKernel  = "kernel"        // Linux over a veth pair: the ceiling
)

// contenderDef is one column of the table: what it is and how its server
// starts. The table contenderDefs is the only place that lists them; a
// new contender is a new entry, usually a new server -mode (server.go,
// stacks_linux.go) started by tapServer, or by a start function of its own
// as the AF_XDP one (startXDP).
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
		figures: []string{figUDP, figRRPin, figRR, figUp1, figDown1, figUp4, figDown4, figUp32, figDown32, figUp128, figDown128},
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
		key: keyXDP, title: "zcnet xdp",
		about:   "zcnet stack on an AF_XDP link (stack/link/xdp) on one end of a veth pair between the client namespace and its own, the peer sending with checksum offload off (as from a wire); zero-copy sockets as zcnet zero-copy",
		figures: []string{figUDP, figRRPin, figRR, figUp1, figDown1},
		start:   startXDP,
	},
	{
		key: keyXDPKern, title: "kernel xdp veth",
		about:   "the kernel's own UDP socket (a Go server) on the same veth end as zcnet xdp, with its XDP program attached and passing the kernel's frames: issue 19's reference; UDP only",
		figures: []string{figUDP},
		start:   startKernelXDP,
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

// takesPart says whether the contender is measured on figure fig: it is
// in the contender's figures (nil: every figure) and the figure takes the
// contender (its only list; nil: every contender).
func (d *contenderDef) takesPart(fig string) bool {
	if f, ok := figureByKey(fig); ok && f.only != nil && !slices.Contains(f.only, d.key) {
		return false
	}
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
	// iperfPID is that process's PID, for its resident memory.
	iperfPID func() int
	// releaseMem, if not nil, has that process return the memory it no
	// longer uses to the kernel before a TCP measurement (a bench
	// server's "release"); nil for iperf3 -s.
	releaseMem func() error
	// setup is what the server said about how it attached, or "".
	setup string
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
	// xv is the AF_XDP contenders' veth pair, once made (xdpVethSetup).
	xv *xdpVeth
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

// startServer starts a bench server in ns and waits for it to be ready;
// setup is what the server said about how it attached ("" for most).
func (e *env) startServer(ns netns, key string, args []string) (*proc, string, error) {
	// A variable of its own: the close below must stop this process even
	// when the function returns a nil one.
	p, err := startProc(ns, key+" server", args...)
	if err != nil {
		return nil, "", err
	}
	e.onClose(func() error { p.stop(15 * time.Second); return nil })
	var ready struct {
		Ready bool   `json:"ready"`
		Setup string `json:"setup"`
	}
	if err := p.readJSON(time.Minute, &ready); err != nil {
		return nil, "", fmt.Errorf("%w: %w", errSetup, err)
	}
	return p, ready.Setup, nil
}

// release is releaseMem for a contender whose bench server serves
// iperf3 itself.
func (c *contender) release() error {
	var ok struct{}
	return c.ctl.request("release", &ok)
}

// statsCPU is iperfCPU for a contender whose bench server serves iperf3
// itself: its CPU time, from its stats.
func (c *contender) statsCPU() (time.Duration, error) {
	st, err := c.stats()
	return time.Duration(st.CPUNanos), err
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
		p, setup, err := e.startServer(e.cli, d.key, args)
		if err != nil {
			return nil, err
		}
		c := &contender{def: d, addr: stack.Addr(), ctl: p, iperfPID: p.pid, setup: setup}
		c.iperfCPU, c.releaseMem = c.statsCPU, c.release
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
	p, _, err := e.startServer(srvNS, d.key, e.serverArgs(d.key, "-mode", modeKernel, "-addr", vethServer.Addr().String()))
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
	return &contender{def: d, addr: vethServer.Addr(), ctl: p, iperfCPU: ip.cpu, iperfPID: ip.pid}, nil
}

// xdpVeth is the veth pair of the AF_XDP contenders: its client end in the
// client namespace, addressed as a TAP's kernel side (tapSubnet of the
// AF_XDP contender's slot), sending with transmit checksum offload off so
// that its frames carry complete checksums, as frames from a wire do; its
// server end in a namespace of its own, where the AF_XDP link attaches
// and the kernel holds an address of its own next to the stack's.
type xdpVeth struct {
	ns     netns
	dev    string       // the server end, in ns
	kernel netip.Prefix // the client end's address
	stack  netip.Prefix // the zcnet stack's address on dev
	host   netip.Prefix // the kernel's own address on dev
}

// xdpVethAddrs returns the addresses of the AF_XDP contenders' veth pair:
// the AF_XDP contender's tapSubnet (client end .1, stack .2) and the next
// address for the server namespace's kernel.
func xdpVethAddrs() (kernel, stack, host netip.Prefix) {
	kernel, stack = tapSubnet(xdpSlot)
	return kernel, stack, netip.PrefixFrom(stack.Addr().Next(), stack.Bits())
}

// xdpSlot is the AF_XDP contender's index in contenderDefs.
var xdpSlot int

func init() {
	xdpSlot = slices.IndexFunc(contenderDefs, func(d contenderDef) bool { return d.key == keyXDP })
}

// xdpVethSetup makes the AF_XDP contenders' veth pair and namespace, once.
func (e *env) xdpVethSetup() (*xdpVeth, error) {
	if e.xv != nil {
		return e.xv, nil
	}
	ns, closeNS, err := e.newNS("xdp")
	if err != nil {
		return nil, err
	}
	e.onClose(closeNS)
	kernel, stack, host := xdpVethAddrs()
	xv := &xdpVeth{ns: ns, dev: "zb" + e.cfg.id + "y", kernel: kernel, stack: stack, host: host}
	cliDev := "zb" + e.cfg.id + "x"
	for _, step := range []struct {
		ns   netns
		args []string
	}{
		{e.cli, []string{"ip", "link", "add", cliDev, "mtu", strconv.Itoa(mtu), "type", "veth", "peer", "name", xv.dev, "mtu", strconv.Itoa(mtu), "netns", ns.Name()}},
		{e.cli, []string{"ip", "addr", "add", kernel.String(), "dev", cliDev}},
		{e.cli, []string{"ethtool", "-K", cliDev, "tx", "off"}},
		{e.cli, []string{"ip", "link", "set", cliDev, "up"}},
		{ns, []string{"ip", "addr", "add", host.String(), "dev", xv.dev}},
		{ns, []string{"ip", "link", "set", xv.dev, "up"}},
	} {
		if _, err := step.ns.Run(10*time.Second, step.args...); err != nil {
			return nil, err
		}
	}
	e.xv = xv
	return xv, nil
}

// startXDP starts the AF_XDP contender: a bench server in the veth's
// server namespace that attaches a zcnet stack to the veth's server end
// (stacks_xdp_linux.go) and serves it through the zero-copy sockets. Where
// AF_XDP is unavailable the error is an unavailableError.
func startXDP(e *env, d *contenderDef, slot int) (*contender, error) {
	xv, err := e.xdpVethSetup()
	if err != nil {
		return nil, err
	}
	p, setup, err := e.startServer(xv.ns, d.key, e.serverArgs(d.key, "-mode", modeXDP, "-dev", xv.dev, "-addr", xv.stack.String()))
	if err != nil {
		return nil, err
	}
	c := &contender{def: d, addr: xv.stack.Addr(), ctl: p, iperfPID: p.pid, setup: setup}
	c.iperfCPU, c.releaseMem = c.statsCPU, c.release
	return c, nil
}

// startKernelXDP starts the kernel's bench server on the AF_XDP veth's
// server end, at the kernel's own address there: the same interface, with
// the AF_XDP contender's program attached (when it runs) passing the
// kernel's frames on.
func startKernelXDP(e *env, d *contenderDef, slot int) (*contender, error) {
	xv, err := e.xdpVethSetup()
	if err != nil {
		return nil, err
	}
	p, _, err := e.startServer(xv.ns, d.key, e.serverArgs(d.key, "-mode", modeKernel, "-addr", xv.host.Addr().String()))
	if err != nil {
		return nil, err
	}
	c := &contender{def: d, addr: xv.host.Addr(), ctl: p, iperfPID: p.pid}
	c.iperfCPU = c.statsCPU
	return c, nil
}
