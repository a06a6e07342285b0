package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/stack"
)

// services runs the daemon's small servers on one stack: echo (RFC 862) and
// discard (RFC 863) over TCP and UDP, and an HTTP status page. Close stops
// them all and waits for their goroutines.
type services struct {
	log     *slog.Logger
	st      *stack.Stack
	started time.Time

	wg      sync.WaitGroup
	mu      sync.Mutex
	closing bool                  // +checklocks:mu
	closers []io.Closer           // +checklocks:mu
	conns   map[net.Conn]struct{} // +checklocks:mu

	echoBytes, discardBytes, udpEchoed, udpDiscarded atomic.Uint64
}

func newServices(st *stack.Stack, log *slog.Logger) *services {
	return &services{st: st, log: log, started: time.Now(), conns: map[net.Conn]struct{}{}}
}

// track registers c so Close can stop it.
func (s *services) track(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, c)
}

// Close stops every server and connection and waits for them.
func (s *services) Close() {
	s.mu.Lock()
	s.closing = true
	cs := s.closers
	s.closers = nil
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	s.wg.Wait()
}

// startTCP listens on addr and runs handle for each connection in its own
// goroutine (the net.Conn adapters block a goroutine per call, as net does).
func (s *services) startTCP(name, addr string, handle func(net.Conn) (int64, error), counter *atomic.Uint64) error {
	ln, err := api.NewNet(s.st).Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.track(ln)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.log.Warn("accept failed", "service", name, "err", err)
				}
				return
			}
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				n, err := handle(c)
				counter.Add(uint64(n))
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				if err != nil && !errors.Is(err, net.ErrClosed) {
					s.log.Debug("connection ended", "service", name, "peer", c.RemoteAddr(), "err", err)
				}
			}()
		}
	}()
	s.log.Info("listening", "service", name, "addr", ln.Addr())
	return nil
}

func echoTCP(c net.Conn) (int64, error)    { return io.Copy(c, c) }
func discardTCP(c net.Conn) (int64, error) { return io.Copy(io.Discard, c) }

// startUDP binds addr and answers datagrams: echo sends each back, discard
// only counts it.
func (s *services) startUDP(name, addr string, echo bool, counter *atomic.Uint64) error {
	pc, err := api.NewNet(s.st).ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s.track(pc)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.log.Warn("udp read failed", "service", name, "err", err)
				}
				return
			}
			counter.Add(1)
			if echo {
				if _, err := pc.WriteTo(buf[:n], from); err != nil {
					s.log.Debug("udp echo failed", "peer", from, "err", err)
				}
			}
		}
	}()
	s.log.Info("listening", "service", name, "addr", pc.LocalAddr())
	return nil
}

// status is the JSON form of the status page.
type status struct {
	Uptime   string            `json:"uptime"`
	NICs     []stack.NICStats  `json:"nics"`
	Services map[string]uint64 `json:"services"`
	Counters map[string]uint64 `json:"counters"`
}

func (s *services) status() status {
	return status{
		Uptime: time.Since(s.started).Round(time.Second).String(),
		NICs:   s.st.NICStats(),
		Services: map[string]uint64{
			"echo_tcp_bytes": s.echoBytes.Load(), "discard_tcp_bytes": s.discardBytes.Load(),
			"echo_udp_datagrams": s.udpEchoed.Load(), "discard_udp_datagrams": s.udpDiscarded.Load(),
		},
		Counters: s.st.Counters(),
	}
}

// statusHandler serves the status page: text at /, JSON at /status.json.
func (s *services) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		st := s.status()
		fmt.Fprintf(w, "zcnet netstackd, up %s\n\n", st.Uptime)
		for _, n := range st.NICs {
			fmt.Fprintf(w, "nic %d %s mtu %d mac %s addrs %v\n  rx %d packets %d bytes, tx %d packets %d bytes\n",
				n.ID, n.Name, n.MTU, n.LinkAddress, n.Addrs, n.RxPackets, n.RxBytes, n.TxPackets, n.TxBytes)
		}
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

// startHTTP serves the status page on addr of the stack.
func (s *services) startHTTP(addr string) error {
	ln, err := api.NewNet(s.st).Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	srv := &http.Server{Handler: s.statusHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.track(srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("http server stopped", "err", err)
		}
	}()
	s.log.Info("listening", "service", "http", "addr", ln.Addr())
	return nil
}

// startAll starts echo and discard on TCP and UDP and the HTTP status page on
// port 80, all on every address of the stack.
func (s *services) startAll() error {
	for _, f := range []func() error{
		func() error { return s.startTCP("echo/tcp", ":7", echoTCP, &s.echoBytes) },
		func() error { return s.startTCP("discard/tcp", ":9", discardTCP, &s.discardBytes) },
		func() error { return s.startUDP("echo/udp", ":7", true, &s.udpEchoed) },
		func() error { return s.startUDP("discard/udp", ":9", false, &s.udpDiscarded) },
		func() error { return s.startHTTP(":80") },
	} {
		if err := f(); err != nil {
			s.Close()
			return err
		}
	}
	return nil
}
