package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/tap"
)

// Contender keys, as used by -contenders, in the JSON and in the table.
const (
	keyZC      = "zcnet"         // zero-copy sockets on a 1-queue TAP link with offloads
	keyNetConn = "zcnet-netconn" // net.Conn adapters on the same stack and link
	keyZCMQ    = "zcnet-mq"      // zero-copy sockets on a multi-queue TAP link
	keyStock   = "stock"         // gVisor's fdbased on a plain TAP, gonet adapters
	keyKernel  = "kernel"        // Linux over a veth pair: the ceiling
)

// allContenders lists the keys in table order.
var allContenders = []string{keyZC, keyNetConn, keyZCMQ, keyStock, keyKernel}

// The address plan: every contender has its own subnet, so one client
// namespace reaches them all. Kernel side .1 (.17, .33), stack side .2.
var (
	zcKernel, zcStack     = netip.MustParsePrefix("192.0.2.1/28"), netip.MustParsePrefix("192.0.2.2/28")
	stKernel, stStack     = netip.MustParsePrefix("192.0.2.17/28"), netip.MustParsePrefix("192.0.2.18/28")
	mqKernel, mqStack     = netip.MustParsePrefix("192.0.2.33/28"), netip.MustParsePrefix("192.0.2.34/28")
	vethClient, vethServe = netip.MustParsePrefix("198.51.100.1/24"), netip.MustParsePrefix("198.51.100.2/24")
)

// Base ports of the servers (see offSink…offUDP).
const (
	portZC      = 5001
	portNetConn = 5011
)

// mtu is every link's IP MTU, the kernel's and the stacks' sides alike.
const mtu = 1500

// contender is one system under test and the server that runs on it.
type contender struct {
	key   string
	title string // column header
	about string // one line for the report
	srv   *server
	// counters, when not nil, snapshots the link's and sockets' counters;
	// the harness reports their change over each measurement.
	counters func() map[string]uint64
}

func (c *contender) runs(f figure) bool { return takesPart(c.key, f) }

// topology is every contender of one run and what tears them down.
type topology struct {
	contenders []*contender
	closers    []func() error // in the order they were made; run in reverse
}

func (t *topology) onClose(fn func() error) { t.closers = append(t.closers, fn) }

// close tears down in reverse order of making and returns the first error.
func (t *topology) close() error {
	var first error
	for i := len(t.closers) - 1; i >= 0; i-- {
		if err := t.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	t.closers = nil
	return first
}

// quietLogger passes the stacks' warnings and errors to w, nothing below.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// discardLogger drops everything: the pools' one "not pinned" warning is
// expected wherever RLIMIT_MEMLOCK is below their size, and pinning does not
// matter to what is measured (the memory is populated up front either way).
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// addrDev gives the kernel side of dev the address p and brings it up.
func addrDev(ns netns, dev string, p netip.Prefix) error {
	if _, err := ns.Run(10*time.Second, "ip", "addr", "add", p.String(), "dev", dev); err != nil {
		return err
	}
	_, err := ns.Run(10*time.Second, "ip", "link", "set", dev, "up")
	return err
}

// zcnetSide is one zcnet stack on one TAP link with the socket API over it.
type zcnetSide struct {
	st   *stack.Stack
	link *tap.Link
	pool *dmapool.Pool
	api  *api.Stack
}

// newZcnet opens a TAP device named dev in ns with the given number of
// queues and offloads on, gives its kernel side kernel, and attaches a zcnet
// stack with address stackAddr to it.
func newZcnet(t *topology, ns netns, dev string, queues int, kernel, stackAddr netip.Prefix, log io.Writer) (*zcnetSide, error) {
	var link *tap.Link
	if err := ns.Do(func() error {
		var err error
		link, err = tap.Open(tap.Config{Name: dev, MTU: mtu, Offload: tap.OffloadOn, Queues: queues})
		return err
	}); err != nil {
		return nil, fmt.Errorf("%w: tap.Open %s: %v", errSetup, dev, err)
	}
	st, err := stack.New(stack.Options{Logger: quietLogger(log)})
	if err != nil {
		link.Close()
		return nil, fmt.Errorf("%w: stack.New: %v", errSetup, err)
	}
	z := &zcnetSide{st: st, link: link}
	t.onClose(func() error {
		err := st.Close() // closes the link too
		if z.pool != nil {
			if perr := z.pool.Close(); err == nil {
				err = perr
			}
		}
		return err
	})
	if _, err := st.AddNIC(link, stack.NICConfig{Name: dev, Addrs: []netip.Prefix{stackAddr}}); err != nil {
		link.Close()
		return nil, fmt.Errorf("%w: AddNIC %s: %v", errSetup, dev, err)
	}
	if err := addrDev(ns, dev, kernel); err != nil {
		return nil, err
	}
	if z.pool, err = dmapool.New(dmapool.Config{Size: 64 << 20, Pin: dmapool.PinPrefer, Logger: discardLogger()}); err != nil {
		return nil, fmt.Errorf("%w: dmapool.New: %v", errSetup, err)
	}
	if z.api, err = api.New(st, api.Options{Pool: z.pool}); err != nil {
		return nil, fmt.Errorf("%w: api.New: %v", errSetup, err)
	}
	return z, nil
}

// linkCounters snapshots the link's counters: the net.Conn adapters share
// the link with the zero-copy sockets but not their copy counters.
func (z *zcnetSide) linkCounters() map[string]uint64 {
	ls := z.link.Stats()
	gc := z.st.Counters()
	return map[string]uint64{
		"udp_received":       gc["UDP.PacketsReceived"],
		"udp_rcvbuf_drops":   gc["UDP.ReceiveBufferErrors"],
		"tcp_retransmits":    gc["TCP.Retransmits"],
		"tcp_timeouts":       gc["TCP.Timeouts"],
		"link_rx_frames":     ls.RxFrames,
		"link_rx_bytes":      ls.RxBytes,
		"link_rx_wakeups":    ls.RxWakeups,
		"link_rx_gso_frames": ls.RxGSOFrames,
		"link_tx_frames":     ls.TxFrames,
		"link_tx_bytes":      ls.TxBytes,
		"link_tx_gso_frames": ls.TxGSOFrames,
		"link_tx_errors":     ls.TxErrors,
	}
}

// counters snapshots the link's and the zero-copy socket API's counters.
func (z *zcnetSide) counters() map[string]uint64 {
	m := z.linkCounters()
	ac := z.api.Counters()
	for k, v := range map[string]uint64{
		"api_rx_handed_over": ac.RxHandedOver,
		"api_rx_copied":      ac.RxCopied,
		"api_tx_in_place":    ac.TxInPlace,
		"api_tx_copied":      ac.TxCopied,
	} {
		m[k] = v
	}
	return m
}

// serveOn starts a server, registers its shutdown and returns it.
func serveOn(t *topology, addr netip.AddrPort, cfg config) *server {
	srv := newServer(addr, cfg.maxStream(), cfg.lifetime())
	t.onClose(func() error { return srv.close(10 * time.Second) })
	return srv
}

// zcnetNet starts the net.Conn-adapter server on n's stack.
func zcnetNet(srv *server, n *api.Net) error {
	var ls netListeners
	for _, l := range []struct {
		off int
		ln  *net.Listener
	}{{offSink, &ls.sink}, {offSource, &ls.source}, {offEcho, &ls.echo}} {
		ln, err := n.Listen("tcp", srv.port(l.off).String())
		if err != nil {
			return fmt.Errorf("%w: listen %s: %v", errSetup, srv.port(l.off), err)
		}
		*l.ln = ln
	}
	pc, err := n.ListenPacket("udp", srv.port(offUDP).String())
	if err != nil {
		return fmt.Errorf("%w: listen udp %s: %v", errSetup, srv.port(offUDP), err)
	}
	ls.udp = pc
	srv.serveNet(ls)
	return nil
}

// kernelNet starts the kernel's server in ns: sockets made there belong to
// its network stack.
func kernelNet(srv *server, ns netns) error {
	var ls netListeners
	err := ns.Do(func() error {
		for _, l := range []struct {
			off int
			ln  *net.Listener
		}{{offSink, &ls.sink}, {offSource, &ls.source}, {offEcho, &ls.echo}} {
			ln, err := net.Listen("tcp", srv.port(l.off).String())
			if err != nil {
				return err
			}
			*l.ln = ln
		}
		pc, err := net.ListenPacket("udp", srv.port(offUDP).String())
		ls.udp = pc
		return err
	})
	if err != nil {
		for _, c := range []io.Closer{ls.sink, ls.source, ls.echo, ls.udp} {
			if c != nil {
				c.Close()
			}
		}
		return fmt.Errorf("%w: kernel listeners in %s: %v", errSetup, ns.Name(), err)
	}
	srv.serveNet(ls)
	return nil
}

// build makes every contender cfg asks for:
//
//  1. a client namespace, and a server namespace for the kernel's server;
//  2. zcnet: a 1-queue TAP with offloads in the client namespace, a zcnet
//     stack on it, the zero-copy server (zcnet) and the net.Conn-adapter
//     server (zcnet-netconn) on it, on different ports;
//  3. zcnet-mq: the same with cfg.queues queues and the zero-copy server;
//  4. stock: a plain TAP, gVisor's fdbased and gonet (stock_linux.go);
//  5. kernel: a veth pair from the client to the server namespace, and
//     kernel sockets in the latter.
//
// On error the caller still calls t.close, which undoes what was made.
func build(ctx context.Context, t *topology, cfg config, newNS nsFactory, log io.Writer) (*client, error) {
	want := map[string]bool{}
	for _, k := range cfg.contenders {
		want[k] = true
	}
	cli, closeCli, err := newNS("cli")
	if err != nil {
		return nil, err
	}
	t.onClose(closeCli)
	c := &client{dial: nsDialer{ns: cli}, grace: cfg.grace()}
	id := cfg.id

	if want[keyZC] || want[keyNetConn] {
		z, err := newZcnet(t, cli, "zb"+id+"z", 1, zcKernel, zcStack, log)
		if err != nil {
			return nil, err
		}
		if want[keyZC] {
			srv := serveOn(t, netip.AddrPortFrom(zcStack.Addr(), portZC), cfg)
			if err := srv.serveZC(z.api); err != nil {
				return nil, err
			}
			t.contenders = append(t.contenders, &contender{
				key: keyZC, title: "zcnet", srv: srv, counters: z.counters,
				about: "zcnet stack on a 1-queue TAP with virtio-net offloads; zero-copy sockets (Recv/Release, SendFunc)",
			})
		}
		if want[keyNetConn] {
			srv := serveOn(t, netip.AddrPortFrom(zcStack.Addr(), portNetConn), cfg)
			if err := zcnetNet(srv, z.api.Net()); err != nil {
				return nil, err
			}
			t.contenders = append(t.contenders, &contender{
				key: keyNetConn, title: "zcnet net.Conn", srv: srv, counters: z.linkCounters,
				about: "the same zcnet stack and link; api.Net's net.Conn/net.PacketConn adapters (one copy in Read and Write)",
			})
		}
	}
	if want[keyZCMQ] {
		z, err := newZcnet(t, cli, "zb"+id+"m", cfg.queues, mqKernel, mqStack, log)
		if err != nil {
			return nil, err
		}
		srv := serveOn(t, netip.AddrPortFrom(mqStack.Addr(), portZC), cfg)
		if err := srv.serveZC(z.api); err != nil {
			return nil, err
		}
		t.contenders = append(t.contenders, &contender{
			key: keyZCMQ, title: fmt.Sprintf("zcnet %dq", cfg.queues), srv: srv, counters: z.counters,
			about: fmt.Sprintf("zcnet stack on a %d-queue TAP with offloads; zero-copy sockets (TCP figures only)", cfg.queues),
		})
	}
	if want[keyStock] {
		srv, counters, err := newStock(t, cli, "zb"+id+"s", stKernel, stStack, cfg)
		if err != nil {
			return nil, err
		}
		about := "gVisor (same version) with fdbased on a plain 1-queue TAP and gonet adapters; TCP tuned as zcnet's stack"
		if cfg.stockDefaults {
			about = "gVisor (same version) with fdbased on a plain 1-queue TAP and gonet adapters; gVisor's default TCP options"
		}
		t.contenders = append(t.contenders, &contender{key: keyStock, title: "stock gVisor", srv: srv, about: about, counters: counters})
	}
	if want[keyKernel] {
		srvNS, closeSrv, err := newNS("srv")
		if err != nil {
			return nil, err
		}
		t.onClose(closeSrv)
		if err := veth(cli, srvNS, "zb"+id+"c", "zb"+id+"v"); err != nil {
			return nil, err
		}
		srv := serveOn(t, netip.AddrPortFrom(vethServe.Addr(), portZC), cfg)
		if err := kernelNet(srv, srvNS); err != nil {
			return nil, err
		}
		t.contenders = append(t.contenders, &contender{
			key: keyKernel, title: "kernel veth", srv: srv,
			about: "Linux TCP/UDP sockets on both ends of a veth pair between two namespaces (default offloads): the ceiling",
		})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// veth makes a veth pair cliDev (in cli) – srvDev (in srv) and addresses
// both ends. Both ends go when their namespaces are deleted.
func veth(cli, srv netns, cliDev, srvDev string) error {
	if _, err := cli.Run(10*time.Second, "ip", "link", "add", cliDev, "mtu", fmt.Sprint(mtu), "type", "veth", "peer", "name", srvDev, "mtu", fmt.Sprint(mtu), "netns", srv.Name()); err != nil {
		return err
	}
	if err := addrDev(cli, cliDev, vethClient); err != nil {
		return err
	}
	return addrDev(srv, srvDev, vethServe)
}
