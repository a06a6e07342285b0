//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/api"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"
	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// The server subcommand: one contender's server, in a process of its own,
// started by the bench in the right namespace:
//
//	bench server -mode zc|netconn|stock|kernel [-dev D -queues N -kernel P] -addr A
//	bench server -mode xdp -dev D -addr A
//
// It builds the contender's setup (stacks_linux.go, stacks_xdp_linux.go),
// serves on A
//
//	portEcho  TCP echo (1-byte round trips)
//	portUDP   UDP sink that counts datagrams (64-byte floods)
//	portHTTP  net/http, a 1 KiB body (wrk); not the zero-copy mode
//	portIperf iperf3's protocol (package cmd/netstackd/iperf3), TCP tests;
//	          not the kernel, for which the bench runs stock iperf3 -s
//
// prints a JSON line {"ready":true} (with "setup", how the link attached,
// for the AF_XDP mode) or {"error":…} ({"error":…,"unavailable":…} if the
// machine cannot run the mode at all), then answers commands on stdin, one
// JSON line each on stdout:
//
//	stats     {"cpu_ns":…, "udp_received":…, "http_requests":…, "counters":{…}}
//	pin CPU [PROCS]  pins every thread to CPU and sets GOMAXPROCS to PROCS
//	          (default 1, as a Go program started under taskset gets; 0
//	          leaves it)
//	unpin     undoes pin
//	release   collects garbage and returns free memory to the kernel, so
//	          that the resident memory sampled during the next
//	          measurement is that measurement's, not what an earlier one
//	          left in the heap
//
// and ends, closing everything, when stdin closes (so also when the bench
// dies) or after -lifetime.
const (
	portEcho  = 5007
	portUDP   = 5009
	portHTTP  = 8080
	portIperf = 5201
)

// Server modes: the socket interface a server uses, and the stack under it.
const (
	modeZC      = "zc"      // zcnet stack on a TAP with offloads; zero-copy sockets
	modeNetConn = "netconn" // the same setup; api.Net's net.Conn adapters
	modeStock   = "stock"   // gVisor fdbased on a plain TAP; gonet adapters
	modeXDP     = "xdp"     // zcnet stack on an AF_XDP link; zero-copy sockets
	modeKernel  = "kernel"  // Linux sockets
)

// httpBody is what the HTTP service answers every request with.
var httpBody = bytes.Repeat([]byte("z"), 1024)

// serverStats is the stats command's answer.
type serverStats struct {
	CPUNanos     int64             `json:"cpu_ns"`
	UDPReceived  uint64            `json:"udp_received"`
	HTTPRequests uint64            `json:"http_requests"`
	Counters     map[string]uint64 `json:"counters,omitempty"`
}

// srv is the running server.
type srv struct {
	ctx       context.Context // ends at shutdown
	udpRecv   atomic.Uint64
	httpReqs  atomic.Uint64
	counters  func() map[string]uint64
	linkSetup string // how the link attached, for the ready line

	wg      sync.WaitGroup
	mu      sync.Mutex
	closers []io.Closer // +checklocks:mu
}

func (s *srv) track(c io.Closer) {
	s.mu.Lock()
	s.closers = append(s.closers, c)
	s.mu.Unlock()
}

func (s *srv) spawn(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// runServer is the server subcommand.
func runServer(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		mode, dev, kernel, addr, profile string
		queues                           int
		stockDefaults                    bool
		lifetime                         time.Duration
	)
	fs.StringVar(&mode, "mode", "", "zc, netconn, stock, xdp or kernel")
	fs.StringVar(&dev, "dev", "", "TAP device to make (zc, netconn, stock), or the interface to attach to (xdp)")
	fs.IntVar(&queues, "queues", 1, "TAP queues (zc, netconn)")
	fs.StringVar(&kernel, "kernel", "", "address/prefix of the TAP's kernel side")
	fs.StringVar(&addr, "addr", "", "the server's address (a prefix for the gVisor stacks)")
	fs.BoolVar(&stockDefaults, "stock-defaults", false, "stock: gVisor's default TCP options")
	fs.DurationVar(&lifetime, "lifetime", time.Hour, "end after this long in any case")
	fs.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the server to `FILE`")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	out := json.NewEncoder(stdout)
	fail := func(err error) int {
		out.Encode(errorAnswer(err))
		return exitFailed
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(context.Background(), lifetime)
	defer cancel()
	s := &srv{ctx: ctx, counters: func() map[string]uint64 { return nil }}
	shutdown, err := s.setup(mode, dev, queues, kernel, addr, stockDefaults, stderr)
	if shutdown != nil {
		defer shutdown()
	}
	if err != nil {
		return fail(err)
	}
	out.Encode(struct {
		Ready bool   `json:"ready"`
		Setup string `json:"setup,omitempty"`
	}{true, s.linkSetup})

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var unpin func()
	defer func() {
		if unpin != nil {
			unpin()
		}
	}()
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-lines:
		case <-ctx.Done():
		}
		if !ok {
			return exitOK
		}
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch cmd {
		case "stats":
			st := serverStats{CPUNanos: int64(processCPU()), UDPReceived: s.udpRecv.Load(), HTTPRequests: s.httpReqs.Load(), Counters: s.counters()}
			out.Encode(st)
		case "pin":
			cpuArg, procsArg, _ := strings.Cut(arg, " ")
			cpu, err := strconv.Atoi(cpuArg)
			procs := 1
			if err == nil && procsArg != "" {
				procs, err = strconv.Atoi(procsArg)
			}
			if err != nil {
				out.Encode(map[string]string{"error": "pin: " + err.Error()})
				continue
			}
			if unpin != nil {
				unpin()
				unpin = nil
			}
			if unpin, err = pinProcess(cpu, procs); err != nil {
				out.Encode(map[string]string{"error": err.Error()})
				continue
			}
			out.Encode(map[string]bool{"ok": true})
		case "unpin":
			if unpin != nil {
				unpin()
				unpin = nil
			}
			out.Encode(map[string]bool{"ok": true})
		case "release":
			// Twice: a sync.Pool's objects survive one collection in its
			// victim cache.
			runtime.GC()
			debug.FreeOSMemory()
			out.Encode(map[string]bool{"ok": true})
		default:
			out.Encode(map[string]string{"error": fmt.Sprintf("unknown command %q", line)})
		}
	}
}

// errorAnswer is the JSON line a child reports err with: {"error":…},
// with "unavailable" (the reason) if err is an unavailableError, which
// decodeAnswer turns back into one.
func errorAnswer(err error) map[string]string {
	msg := map[string]string{"error": err.Error()}
	var ue unavailableError
	if errors.As(err, &ue) {
		msg["unavailable"] = ue.reason
	}
	return msg
}

// setup builds the mode's stack and starts its services. The returned
// function (even on error) closes whatever was made.
func (s *srv) setup(mode, dev string, queues int, kernel, addr string, stockDefaults bool, log io.Writer) (func(), error) {
	var closeStack func() error
	shutdown := func() {
		s.mu.Lock()
		cs := s.closers
		s.closers = nil
		s.mu.Unlock()
		for i := len(cs) - 1; i >= 0; i-- {
			cs[i].Close()
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			fmt.Fprintln(log, "bench server: handlers still running after 10 s")
		}
		if closeStack != nil {
			closeStack()
		}
	}
	switch mode {
	case modeZC, modeNetConn, modeStock:
		kp, err1 := netip.ParsePrefix(kernel)
		sp, err2 := netip.ParsePrefix(addr)
		if err := errors.Join(err1, err2); err != nil || dev == "" {
			return shutdown, fmt.Errorf("%w: -dev, -kernel and -addr (prefixes) are needed: %v", errUsage, err)
		}
		a := sp.Addr()
		if mode == modeStock {
			ss, err := openStock(dev, kp, sp, stockDefaults)
			if err != nil {
				return shutdown, err
			}
			closeStack, s.counters = ss.close, ss.counters
			return shutdown, s.serveNet(ss.listenTCP, ss.listenUDP, a, true)
		}
		z, err := openZcnet(dev, queues, kp, sp, log)
		if err != nil {
			return shutdown, err
		}
		closeStack, s.counters = z.close, z.counters
		if mode == modeNetConn {
			n := z.api.Net()
			return shutdown, s.serveNet(
				func(ap netip.AddrPort) (net.Listener, error) { return n.Listen("tcp", ap.String()) },
				func(ap netip.AddrPort) (net.PacketConn, error) { return n.ListenPacket("udp", ap.String()) },
				a, true)
		}
		return shutdown, s.serveZC(z, a)
	case modeXDP:
		sp, err := netip.ParsePrefix(addr)
		if err != nil || dev == "" {
			return shutdown, fmt.Errorf("%w: -dev and -addr (a prefix) are needed: %v", errUsage, err)
		}
		z, err := openZcnetXDP(dev, sp, log)
		if err != nil {
			return shutdown, err
		}
		closeStack, s.counters, s.linkSetup = z.close, z.counters, z.setup
		return shutdown, s.serveZC(z, sp.Addr())
	case modeKernel:
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return shutdown, fmt.Errorf("%w: -addr: %v", errUsage, err)
		}
		return shutdown, s.serveNet(
			func(ap netip.AddrPort) (net.Listener, error) { return net.Listen("tcp", ap.String()) },
			func(ap netip.AddrPort) (net.PacketConn, error) { return net.ListenPacket("udp", ap.String()) },
			a, false)
	}
	return shutdown, fmt.Errorf("%w: -mode %q: want zc, netconn, stock, xdp or kernel", errUsage, mode)
}

// --- Services over package net's shapes: gonet, api.Net, the kernel.
// Every received byte is copied once, by Read, into the handler's buffer;
// every sent byte once, by Write, out of it.

// serveNet starts the echo, UDP and HTTP services, and the iperf3 server
// if withIperf.
func (s *srv) serveNet(listenTCP func(netip.AddrPort) (net.Listener, error), listenUDP func(netip.AddrPort) (net.PacketConn, error), a netip.Addr, withIperf bool) error {
	listen := func(port uint16) (net.Listener, error) {
		ln, err := listenTCP(netip.AddrPortFrom(a, port))
		if err != nil {
			return nil, fmt.Errorf("%w: listen %v:%d: %v", errSetup, a, port, err)
		}
		s.track(ln)
		return ln, nil
	}
	echo, err := listen(portEcho)
	if err != nil {
		return err
	}
	s.spawn(func() { s.acceptNet(echo, s.echoNet) })
	pc, err := listenUDP(netip.AddrPortFrom(a, portUDP))
	if err != nil {
		return fmt.Errorf("%w: listen udp %v:%d: %v", errSetup, a, portUDP, err)
	}
	s.track(pc)
	s.spawn(func() { s.udpNet(pc) })

	hln, err := listen(portHTTP)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			s.httpReqs.Add(1)
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(httpBody)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          nil,
	}
	s.track(hs)
	s.spawn(func() { hs.Serve(hln) })

	if withIperf {
		return s.serveIperf(&transport.Net{Label: "net.Conn", Listen: listenTCP}, a)
	}
	return nil
}

// serveIperf starts cmd/netstackd's iperf3 server on tr, so that stock
// iperf3 -c drives the gVisor contenders as it drives iperf3 -s on the
// kernel. Its TCP senders write nothing into the send buffer (Unfilled), as
// a sender of page-cache data; its receivers release what they get unread.
func (s *srv) serveIperf(tr transport.Transport, a netip.Addr) error {
	is, err := iperf3.NewServer(tr, iperf3.ServerConfig{Addr: a, Port: portIperf, Unfilled: true,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return fmt.Errorf("%w: iperf3 server on %v:%d: %v", errSetup, a, portIperf, err)
	}
	s.track(is)
	s.spawn(func() { is.Serve(s.ctx) })
	return nil
}

func (s *srv) acceptNet(ln net.Listener, fn func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		s.track(c)
		s.spawn(func() { fn(c) })
	}
}

func (s *srv) echoNet(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64)
	for {
		m, err := c.Read(buf)
		if m > 0 {
			if _, werr := c.Write(buf[:m]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF: the client is done
		}
	}
}

func (s *srv) udpNet(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			return // closed
		}
		s.udpRecv.Add(1)
	}
}

// --- The zero-copy server over zcnet's sockets: Recv hands over the
// link's own memory, released unread; SendFunc lets the sender write into
// the stack's buffer (the source writes nothing into it, as a sender of
// page-cache data with sendfile); the echo sends the received Buf back.

// udpBatch is how many datagrams one RecvMsg may hand over.
const udpBatch = 64

// serveZC starts the echo, UDP and iperf3 services on the socket API.
func (s *srv) serveZC(z *zcnetSide, addr netip.Addr) error {
	a := z.api
	listen := func(port uint16) (*api.Socket, error) {
		ln, err := a.ListenTCP(netip.AddrPortFrom(addr, port))
		if err != nil {
			return nil, fmt.Errorf("%w: listen %v:%d: %v", errSetup, addr, port, err)
		}
		s.track(ln)
		return ln, nil
	}
	echo, err := listen(portEcho)
	if err != nil {
		return err
	}
	s.spawn(func() {
		for {
			c, err := echo.Accept(s.ctx)
			if err != nil {
				return
			}
			s.track(c)
			s.spawn(func() { s.echoZC(c) })
		}
	})
	u, err := a.ListenUDP(netip.AddrPortFrom(addr, portUDP))
	if err != nil {
		return fmt.Errorf("%w: listen udp %v:%d: %v", errSetup, addr, portUDP, err)
	}
	s.track(u)
	s.spawn(func() { s.udpZC(u) })
	return s.serveIperf(transport.NewZC(a, z.st), addr)
}

func (s *srv) echoZC(c *api.Socket) {
	defer c.Close()
	for {
		b, err := c.Recv(s.ctx)
		if err != nil {
			return // EOF: the client is done
		}
		// Send takes the received Buf over: the echo never touches it.
		if _, err := c.Send(s.ctx, b); err != nil {
			return
		}
	}
}

func (s *srv) udpZC(u *api.Socket) {
	bufs := make([]api.Buf, udpBatch)
	for {
		n, _, err := u.RecvMsg(s.ctx, bufs)
		if err != nil {
			return
		}
		for _, b := range bufs[:n] {
			b.Release()
		}
		s.udpRecv.Add(uint64(n))
	}
}
