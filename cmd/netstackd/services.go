package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/stack"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"

	"github.com/zcnet/zcnet/cmd/netstackd/evloop"

	"github.com/zcnet/zcnet/cmd/netstackd/dashboard"

	"github.com/zcnet/zcnet/cmd/netstackd/metrics"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// services runs the daemon's servers on one stack: echo (RFC 862) and
// discard (RFC 863) over TCP and UDP on zero-copy sockets, the iperf3
// server (perf), and an HTTP status page. TCP echo and discard run on
// event channels from a fixed set of loops (evloop.go); UDP echo and
// discard are one goroutine each. Close stops them all and waits for their
// goroutines.
type services struct {
	log     *slog.Logger
	z       *zcstack.Stack
	st      *stack.Stack
	tr      transport.Transport
	started time.Time

	// ctx ends at Close; every handler's calls take it, so cancelling it
	// wakes them all.
	ctx    context.Context
	cancel context.CancelFunc

	wg      sync.WaitGroup
	mu      sync.Mutex
	closers []io.Closer    // +checklocks:mu; listeners and servers
	perf    *iperf3.Server // +checklocks:mu; nil unless perf runs
	ev      *evloop.Server // +checklocks:mu; the TCP echo and discard loops, nil unless one runs

	echoBytes, discardBytes, udpEchoed, udpDiscarded atomic.Uint64
}

func newServices(z *zcstack.Stack, log *slog.Logger) *services {
	ctx, cancel := context.WithCancel(context.Background())
	return &services{z: z, st: z.Stack, tr: z.Transport(), log: log, started: time.Now(), ctx: ctx, cancel: cancel}
}

// track registers c so Close can stop it.
func (s *services) track(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, c)
}

// Close stops every server and connection and waits for them.
func (s *services) Close() {
	s.cancel()
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	s.wg.Wait()
}

// go runs fn on a goroutine Close waits for.
func (s *services) goTracked(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// startUDP binds port and answers datagrams: echo bounces each back (the
// received buffer itself goes to the stack), discard only counts it.
func (s *services) startUDP(name string, port uint16, echo bool, counter *atomic.Uint64) error {
	pc, err := s.tr.ListenUDP(netip.AddrPortFrom(netip.Addr{}, port))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.track(pc)
	s.goTracked(func() {
		for {
			ch, from, err := pc.RecvFrom(s.ctx)
			if err != nil {
				if s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					s.log.Warn("udp receive failed", "service", name, "err", err)
				}
				return
			}
			counter.Add(1)
			if !echo {
				ch.Release()
				continue
			}
			if _, err := pc.Bounce(s.ctx, ch, from); err != nil {
				s.log.Debug("udp echo failed", "peer", from, "err", err)
			}
		}
	})
	s.log.Info("listening", "service", name, "addr", transport.AddrString(pc.LocalAddr()))
	return nil
}

// status is the JSON form of the status page.
type status struct {
	Uptime   string              `json:"uptime"`
	NICs     []stack.NICStats    `json:"nics"`
	Link     any                 `json:"link,omitempty"`
	Services map[string]uint64   `json:"services"`
	Copy     api.Counters        `json:"copy"`
	ZeroCopy stack.ZeroCopyStats `json:"zero_copy"`
	Pool     any                 `json:"pool,omitempty"`
	Channels map[string]any      `json:"event_channels,omitempty"`
	Perf     *iperf3.ServerStats `json:"perf,omitempty"`
	Counters map[string]uint64   `json:"counters"`
	// Goroutines is the daemon's count now: the event-loop services keep
	// it independent of the number of connections.
	Goroutines int `json:"goroutines"`
	// Connections counts the TCP connections each event-loop service
	// holds open; Refused those it closed at accept for want of room on
	// its loop's event channel.
	Connections map[string]int64  `json:"connections"`
	Refused     map[string]uint64 `json:"refused,omitempty"`
}

func (s *services) status() status {
	st := status{
		Uptime: time.Since(s.started).Round(time.Second).String(),
		NICs:   s.st.NICStats(),
		Services: map[string]uint64{
			"echo_tcp_bytes": s.echoBytes.Load(), "discard_tcp_bytes": s.discardBytes.Load(),
			"echo_udp_datagrams": s.udpEchoed.Load(), "discard_udp_datagrams": s.udpDiscarded.Load(),
		},
		ZeroCopy:    s.st.ZeroCopyStats(),
		Counters:    s.st.Counters(),
		Goroutines:  runtime.NumGoroutine(),
		Connections: map[string]int64{},
	}
	if s.z.API != nil {
		st.Copy = s.z.API.Counters()
	}
	if s.z.Pool != nil {
		st.Pool = s.z.Pool.Stats()
	}
	switch {
	case s.z.TAP != nil:
		st.Link = s.z.TAP.Stats()
	case s.z.Pair != nil:
		st.Link = s.z.Pair.Stats()
	default:
		if rs, ok := s.z.RingStats(); ok {
			st.Link = rs
		}
	}
	s.mu.Lock()
	ps, ev := s.perf, s.ev
	s.mu.Unlock()
	if ev != nil {
		for _, ln := range ev.Listeners() {
			st.Connections[ln.Name()] = ln.Conns()
			if r := ln.Refused(); r > 0 {
				if st.Refused == nil {
					st.Refused = map[string]uint64{}
				}
				st.Refused[ln.Name()] = r
			}
		}
		st.Channels = map[string]any{}
		for i, cs := range ev.ChannelStats() {
			st.Channels[fmt.Sprintf("loop%d", i)] = cs
		}
	}
	if ps != nil {
		pst := ps.Stats()
		st.Perf = &pst
		st.Services["perf_tests"] = pst.Tests
	}
	return st
}

// statusHandler serves the status page: text at /, JSON at /status.json,
// and the live dashboard at /dashboard (dashboard.go).
func (s *services) statusHandler() *http.ServeMux {
	mux := http.NewServeMux()
	dashboard.Handle(mux, s.dashboardSources())
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		st := s.status()
		fmt.Fprintf(w, "zcnet netstackd, up %s (live dashboard: /dashboard)\n\n", st.Uptime)
		for _, n := range st.NICs {
			fmt.Fprintf(w, "nic %d %s mtu %d mac %s addrs %v\n  rx %d packets %d bytes, tx %d packets %d bytes\n",
				n.ID, n.Name, n.MTU, n.LinkAddress, n.Addrs, n.RxPackets, n.RxBytes, n.TxPackets, n.TxBytes)
		}
		fmt.Fprintf(w, "\ncopy budget: received %d bytes handed over, %d copied; sent %d in place, %d copied\n",
			st.Copy.RxHandedOver, st.Copy.RxCopied, st.Copy.TxInPlace, st.Copy.TxCopied)
		fmt.Fprintln(w)
		writeSorted(w, st.Services)
		fmt.Fprintln(w)
		writeSorted(w, st.Counters)
	})
	return mux
}

func writeSorted(w io.Writer, m map[string]uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s %d\n", k, m[k])
	}
}

// startHTTP serves the status page on port 80 of the stack, with /metrics
// when stackMetrics is non-nil.
func (s *services) startHTTP(stackMetrics http.Handler) error {
	ln, err := s.z.API.Net().Listen("tcp", ":80")
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	mux := s.statusHandler()
	if stackMetrics != nil {
		mux.Handle("GET /metrics", stackMetrics)
	}
	srv := metrics.NewHTTPServer(mux)
	s.track(srv)
	s.goTracked(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("http server stopped", "err", err)
		}
	})
	s.log.Info("listening", "service", "http", "addr", ln.Addr())
	return nil
}

// startPerf runs the iperf3 server on port, TCP and UDP.
func (s *services) startPerf(port uint16) error {
	ps, err := iperf3.NewServer(s.tr, iperf3.ServerConfig{Port: port, Log: s.log})
	if err != nil {
		return fmt.Errorf("perf: %w", err)
	}
	s.mu.Lock()
	s.perf = ps
	s.mu.Unlock()
	s.track(ps)
	s.goTracked(func() {
		if err := ps.Serve(s.ctx); err != nil {
			s.log.Warn("perf server stopped", "err", err)
		}
	})
	s.log.Info("listening", "service", "perf", "addr", transport.AddrString(ps.Addr()))
	return nil
}

// start starts the named services (a subset of allServices, in its order).
// obs, when stackMetrics is set, adds /metrics to the status page.
func (s *services) start(names []string, perfPort uint16, obs *observer, stackMetrics bool) error {
	for _, name := range names {
		var err error
		switch name {
		case "echo":
			if err = s.startTCP("echo/tcp", 7, true, &s.echoBytes); err == nil {
				err = s.startUDP("echo/udp", 7, true, &s.udpEchoed)
			}
		case "discard":
			if err = s.startTCP("discard/tcp", 9, false, &s.discardBytes); err == nil {
				err = s.startUDP("discard/udp", 9, false, &s.udpDiscarded)
			}
		case "perf":
			err = s.startPerf(perfPort)
		case "http":
			var m http.Handler
			if stackMetrics && obs != nil {
				m = obs.Handler()
			}
			err = s.startHTTP(m)
		default:
			err = fmt.Errorf("unknown service %q", name)
		}
		if err != nil {
			s.Close()
			return err
		}
	}
	s.mu.Lock()
	ev := s.ev
	s.mu.Unlock()
	if ev != nil {
		ev.Start()
	}
	return nil
}

// startTCP listens on port for the event loops, which start once every
// service is listening: echo sends back what it receives, discard counts
// it (in counter) and releases it.
func (s *services) startTCP(name string, port uint16, echo bool, counter *atomic.Uint64) error {
	s.mu.Lock()
	ev := s.ev
	s.mu.Unlock()
	if ev == nil {
		var err error
		if ev, err = evloop.New(s.z.API, 0, 0, s.log); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		s.mu.Lock()
		s.ev = ev
		s.mu.Unlock()
		s.track(ev)
	}
	ln, err := ev.Listen(name, port, echo, counter)
	if err != nil {
		return err
	}
	s.log.Info("listening", "service", name, "addr", transport.AddrString(ln.Addr()), "loops", ev.Loops())
	return nil
}

// startAll starts every service with the default perf port.
func (s *services) startAll() error {
	return s.start(allServices, iperf3.Port, nil, false)
}

// dashboardSources is what the dashboard reads: the stack, its link and
// the event-loop services.
func (s *services) dashboardSources() dashboard.Sources {
	return dashboard.Sources{Stack: s.st, API: s.z.API, Pool: s.z.Pool, Link: s.z.LinkStats, Started: s.started,
		Services: s.dashboardServices}
}

// dashboardServices adds the event-loop services' connections, refusals
// and channels to d.
func (s *services) dashboardServices(d *dashboard.Snapshot) {
	s.mu.Lock()
	ev := s.ev
	s.mu.Unlock()
	if ev != nil {
		for _, ln := range ev.Listeners() {
			d.Connections.Services[ln.Name()] = ln.Conns()
			dashboard.AddDrop(d.Drops, ln.Name()+": refused, event channel full", ln.Refused())
		}
		for _, cs := range ev.ChannelStats() {
			d.Channels.Queued += cs.Queued
			d.Channels.Reserved += cs.Capacity - cs.Free
			d.Channels.Capacity += cs.Capacity
		}
	}
}
