package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zcnet/zcnet/evchan"

	"github.com/zcnet/zcnet/cmd/netstackd/metrics"
)

// observer is the daemon's observability: a Prometheus registry with the
// stack's metrics, and an HTTP server on a kernel socket (-metrics) with
// /metrics, /debug/pprof/ and the status page.
type observer struct {
	z        *zcStack
	svc      *services
	channels map[string]*evchan.Channel
	reg      *prometheus.Registry

	srv *http.Server
	wg  sync.WaitGroup
}

func newObserver(z *zcStack, svc *services, channels map[string]*evchan.Channel) *observer {
	o := &observer{z: z, svc: svc, channels: channels, reg: prometheus.NewRegistry()}
	o.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.NewCollector(metrics.Sources{Stack: z.st, NIC: z.nicName, TAP: z.tap, Pair: z.pair, Ring: z.ringStats, XDP: z.xdp,
			API: z.zs, Pool: z.pool, Channels: channels, Extra: o.collect}),
	)
	return o
}

// metricsHandler serves the registry in the Prometheus text format (or
// OpenMetrics, if the scraper asks).
func (o *observer) metricsHandler() http.Handler {
	return promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{Registry: o.reg, EnableOpenMetrics: true})
}

// mux is the -metrics server's routes.
func (o *observer) mux() *http.ServeMux {
	mux := o.svc.statusHandler()
	mux.Handle("GET /metrics", o.metricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// listen serves mux on addr (a kernel socket in the daemon's network
// namespace) and returns the address it got.
func (o *observer) listen(addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	// No write timeout: a CPU profile takes as long as it is asked to.
	o.srv = &http.Server{Handler: o.mux(), ReadHeaderTimeout: 10 * time.Second}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Close stops the HTTP server, letting requests in flight finish for up to
// a second.
func (o *observer) Close() error {
	if o.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := o.srv.Shutdown(ctx)
	if err != nil {
		o.srv.Close()
	}
	o.wg.Wait()
	return err
}

// collect adds the daemon's own series to the stack's: its services and
// its capture.
func (o *observer) collect(e metrics.Emitter) {
	counter, gauge, z := e.Counter, e.Gauge, o.z
	// Services.
	if svc := o.svc; svc != nil {
		counter("zcnet_service_bytes_total", "Bytes the stream services handled.", svc.echoBytes.Load(), "service", "echo")
		counter("zcnet_service_bytes_total", "Bytes the stream services handled.", svc.discardBytes.Load(), "service", "discard")
		counter("zcnet_service_datagrams_total", "Datagrams the UDP services handled.", svc.udpEchoed.Load(), "service", "echo")
		counter("zcnet_service_datagrams_total", "Datagrams the UDP services handled.", svc.udpDiscarded.Load(), "service", "discard")
		svc.mu.Lock()
		ps := svc.perf
		svc.mu.Unlock()
		if ps != nil {
			s := ps.Stats()
			counter("zcnet_perf_tests_total", "iperf3 tests by result: ok ran to the exchange of results, failed ended in an error.", s.Tests, "result", "ok")
			counter("zcnet_perf_tests_total", "iperf3 tests by result: ok ran to the exchange of results, failed ended in an error.", s.Failed, "result", "failed")
			counter("zcnet_perf_denied_total", "Connections refused with ACCESS_DENIED.", s.Denied)
			counter("zcnet_perf_bytes_total", "Test payload bytes, by direction.", s.BytesReceived, "direction", "received")
			counter("zcnet_perf_bytes_total", "Test payload bytes, by direction.", s.BytesSent, "direction", "sent")
			gauge("zcnet_perf_last_bits_per_second", "Bitrate of the last test, as this side measured it.", float64(s.LastBitsPerSecond))
			gauge("zcnet_perf_running", "1 while a test runs.", metrics.B2F(s.Running))
		}
	}

	// The capture.
	if p := z.pcap; p != nil {
		counter("zcnet_pcap_packets_total", "Packets written to the capture file.", p.records.Load())
		counter("zcnet_pcap_lost_total", "Packets not captured (after a write error or close).", p.lost.Load())
	}
}
