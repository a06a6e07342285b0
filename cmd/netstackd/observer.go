package main

import (
	"net/http"

	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack/link/pcap"

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

// mux is the -metrics server's routes: the status page and the metrics.
func (o *observer) mux() *http.ServeMux { return o.Mux(o.svc.statusHandler()) }

// collect adds the daemon's own series to the stack's: its services and
// its capture.
func (o *observer) collect(e metrics.Emitter) {
	counter, z := e.Counter, o.z
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
			e.Perf(ps.Stats())
		}
	}

	// The capture.
	if p, ok := z.Capture.(*pcap.Writer); ok {
		counter("zcnet_pcap_packets_total", "Packets written to the capture file.", p.Records())
		counter("zcnet_pcap_lost_total", "Packets not captured (after a write error or close).", p.Lost())
	}
}
