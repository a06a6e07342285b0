package main

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/zcnet/zcnet/evchan"

	"github.com/zcnet/zcnet/cmd/netstackd/metrics"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// observer is the daemon's observability: the metrics server with the
// stack's metrics and the daemon's own, on a kernel socket (-metrics) with
// /metrics, /debug/pprof/ and the status page.
type observer struct {
	*metrics.Server
	z   *zcstack.Stack
	svc *services
}

func newObserver(z *zcstack.Stack, svc *services, channels map[string]*evchan.Channel) *observer {
	o := &observer{z: z, svc: svc}
	o.Server = metrics.NewServer(metrics.Sources{Stack: z.Stack, NIC: z.NICName, TAP: z.TAP, Pair: z.Pair, Ring: z.RingStats, XDP: z.XDP,
		API: z.API, Pool: z.Pool, Channels: channels, Extra: o.collect})
	return o
}

// metricsHandler serves the registry (for the stack's own status service).
func (o *observer) metricsHandler() http.Handler { return o.Handler() }

// mux is the -metrics server's routes: the status page and the metrics.
func (o *observer) mux() *http.ServeMux { return o.Mux(o.svc.statusHandler()) }

// listen serves the routes on addr (a kernel socket in the daemon's
// network namespace) and returns the address it got.
func (o *observer) listen(addr string, log *slog.Logger) (net.Addr, error) {
	return o.Listen(addr, o.mux(), log)
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
	if p, ok := z.Capture.(*pcapWriter); ok {
		counter("zcnet_pcap_packets_total", "Packets written to the capture file.", p.records.Load())
		counter("zcnet_pcap_lost_total", "Packets not captured (after a write error or close).", p.lost.Load())
	}
}
