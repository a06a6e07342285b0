// Package metrics is zcnet's Prometheus collector: at each scrape it turns
// the counters of a stack, its link (TAP, pair, ring or AF_XDP), the
// zero-copy sockets' copy budget, the buffer pool and event channels into
// metrics named zcnet_*. It owns the names, help texts and labels of those
// series, and a Server: the registry and its HTTP endpoint (/metrics and
// /debug/pprof/). It does not own a program's own counters, which the
// program adds through Sources.Extra, or its other routes.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/link/ring"
	"github.com/zcnet/zcnet/stack/link/xdp"
	"github.com/zcnet/zcnet/tap"
)

// Server is a Prometheus registry with the Go runtime's, the process's and
// a Collector's metrics, and the HTTP server that serves them.
type Server struct {
	reg *prometheus.Registry
	srv *http.Server
	wg  sync.WaitGroup
}

// NewServer makes the registry; Listen serves it.
func NewServer(src Sources) *Server {
	s := &Server{reg: prometheus.NewRegistry()}
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		NewCollector(src),
	)
	return s
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics, if the scraper asks).
func (s *Server) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg, EnableOpenMetrics: true})
}

// Mux adds GET /metrics and /debug/pprof/ to mux and returns it.
func (s *Server) Mux(mux *http.ServeMux) *http.ServeMux {
	mux.Handle("GET /metrics", s.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// The daemon's HTTP servers' bounds on a client. A client that sends its
// headers slowly (slowloris) is cut off after ReadHeaderTimeout, and an
// idle keep-alive connection, each of which costs the server a goroutine,
// is closed after IdleTimeout. There is no read timeout for the whole
// request and no write timeout: net/http cancels a request's context when
// its read deadline passes, and a CPU profile takes as long as it is asked
// to.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 2 * time.Minute
)

// NewHTTPServer returns an HTTP server for h with the bounds above.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout}
}

// Listen serves h on addr and returns the address it got. One Listen per
// Server.
func (s *Server) Listen(addr string, h http.Handler, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.srv = NewHTTPServer(h)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Close stops the HTTP server, letting requests in flight finish for up to
// a second.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	return err
}

// Sources are what a Collector reads at each scrape. Stack is required;
// a nil field is left out.
type Sources struct {
	Stack *stack.Stack
	NIC   string // the NIC's name: the link series' "nic" label
	// The link under the NIC: at most one of TAP, Pair, Ring, XDP.
	TAP  *tap.Link
	Pair *pair.Endpoint
	Ring func() (ring.Stats, bool) // a ring's stats, from either side, and whether there is a ring
	XDP  *xdp.Link
	API  *api.Stack
	Pool *dmapool.Pool
	// Channels are event channels by name (the "channel" label).
	Channels map[string]*evchan.Channel
	// Extra, if set, adds the program's own series at each scrape.
	Extra func(Emitter)
}

// Emitter emits one series at a time during a scrape. Labels are pairs of
// name and value.
type Emitter struct {
	Counter func(name, help string, v uint64, labels ...string)
	Gauge   func(name, help string, v float64, labels ...string)
}

// Perf emits an iperf3 server's counters (netstackd's perf service).
func (e Emitter) Perf(s iperf3.ServerStats) {
	e.Counter("zcnet_perf_tests_total", "iperf3 tests by result: ok ran to the exchange of results, failed ended in an error.", s.Tests, "result", "ok")
	e.Counter("zcnet_perf_tests_total", "iperf3 tests by result: ok ran to the exchange of results, failed ended in an error.", s.Failed, "result", "failed")
	e.Counter("zcnet_perf_denied_total", "Connections refused with ACCESS_DENIED.", s.Denied)
	e.Counter("zcnet_perf_bytes_total", "Test payload bytes, by direction.", s.BytesReceived, "direction", "received")
	e.Counter("zcnet_perf_bytes_total", "Test payload bytes, by direction.", s.BytesSent, "direction", "sent")
	e.Gauge("zcnet_perf_last_bits_per_second", "Bitrate of the last test, as this side measured it.", float64(s.LastBitsPerSecond))
	e.Gauge("zcnet_perf_running", "1 while a test runs.", B2F(s.Running))
}

// Collector turns zcnet's counters into metrics at each scrape. It is an
// unchecked collector (Describe sends nothing): the set of stack counters
// follows the pinned gVisor version.
type Collector struct{ src Sources }

// NewCollector returns a collector of src's counters.
func NewCollector(src Sources) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector; it sends nothing (an unchecked
// collector).
func (*Collector) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	src := c.src
	emit := func(name, help string, t prometheus.ValueType, v float64, labels ...string) {
		var keys, vals []string
		for i := 0; i+1 < len(labels); i += 2 {
			keys = append(keys, labels[i])
			vals = append(vals, labels[i+1])
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, keys, nil), t, v, vals...)
	}
	counter := func(name, help string, v uint64, labels ...string) {
		emit(name, help, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(name, help string, v float64, labels ...string) {
		emit(name, help, prometheus.GaugeValue, v, labels...)
	}

	// gVisor's stack counters: TCP, UDP, IP, ICMP, ARP, IGMP, NICs.
	for name, v := range src.Stack.Counters() {
		m := stackMetric(name)
		if m.gauge {
			gauge(m.name, m.help, float64(v), m.labels...)
		} else {
			counter(m.name, m.help, v, m.labels...)
		}
	}

	// Per NIC.
	for _, n := range src.Stack.NICStats() {
		l := []string{"nic", n.Name}
		counter("zcnet_nic_rx_packets_total", "Packets the NIC received.", n.RxPackets, l...)
		counter("zcnet_nic_rx_bytes_total", "Bytes the NIC received.", n.RxBytes, l...)
		counter("zcnet_nic_tx_packets_total", "Packets the NIC sent.", n.TxPackets, l...)
		counter("zcnet_nic_tx_bytes_total", "Bytes the NIC sent.", n.TxBytes, l...)
		counter("zcnet_nic_tx_drops_no_buffer_space_total", "Packets the link refused: transmit queue full.", n.TxDropsNoBufferSpace, l...)
		counter("zcnet_nic_malformed_l4_total", "Packets whose transport header did not parse.", n.MalformedL4, l...)
		gauge("zcnet_nic_mtu_bytes", "The NIC's MTU.", float64(n.MTU), l...)
		gauge("zcnet_nic_up", "1 if the NIC is up.", B2F(n.Up), l...)
	}

	// The link under the NIC, and its copies.
	l := []string{"nic", src.NIC}
	if t := src.TAP; t != nil {
		s := t.Stats()
		counter("zcnet_link_rx_frames_total", "Frames read from the TAP device.", s.RxFrames, l...)
		counter("zcnet_link_rx_bytes_total", "Bytes of frames read from the TAP device.", s.RxBytes, l...)
		counter("zcnet_link_rx_wakeups_total", "Reader wake-ups that found frames.", s.RxWakeups, l...)
		counter("zcnet_link_rx_handed_off_total", "Frames a busy reader handed to its queue's deliverer goroutine.", s.RxHandedOff, l...)
		counter("zcnet_link_rx_gso_frames_total", "TCP super-frames handed to the stack whole.", s.RxGSOFrames, l...)
		counter("zcnet_link_rx_uso_frames_total", "UDP GSO super-frames received.", s.RxUSOFrames, l...)
		counter("zcnet_link_rx_uso_datagrams_total", "Datagrams cut from UDP GSO super-frames.", s.RxUSODatagrams, l...)
		counter("zcnet_link_rx_csum_verified_total", "Frames whose checksums the link verified in software.", s.RxCsumVerified, l...)
		counter("zcnet_link_rx_csum_unverifiable_total", "Frames whose transport checksum could not be checked per frame (fragments, held by the fragment checker).", s.RxCsumUnverifiable, l...)
		counter("zcnet_link_rx_frag_datagrams_total", "Fragmented datagrams the link checked whole and delivered.", s.RxFragDatagrams, l...)
		counter("zcnet_link_rx_frag_reassembled_total", "Fragmented datagrams the link reassembled and delivered whole (the stack's own reassembly never runs).", s.RxFragReassembled, l...)
		rxDrops(counter, l, []reasonCount{{"short", s.RxDropShort}, {"bad_vnet_hdr", s.RxDropBadVnetHdr}, {"bad_csum", s.RxDropBadCsum},
			{"not_for_us", s.RxDropNotForUs}, {"not_attached", s.RxDropNotAttached}, {"read_error", s.RxReadErrors},
			{"uncheckable", s.RxDropUncheckable}, {"frag_bad_csum", s.RxDropFragBadCsum}, {"frag_invalid", s.RxDropFragInvalid},
			{"frag_duplicate", s.RxDropFragDuplicate}, {"frag_expired", s.RxDropFragExpired}, {"frag_limit", s.RxDropFragLimit},
			{"flood_syn", s.RxDropFloodSYN}, {"flood_ctl", s.RxDropFloodCtl}, {"stale", s.RxDropStale}})
		counter("zcnet_link_tx_frames_total", "Frames written to the TAP device.", s.TxFrames, l...)
		counter("zcnet_link_tx_bytes_total", "Bytes of frames written to the TAP device.", s.TxBytes, l...)
		counter("zcnet_link_tx_gso_frames_total", "TCP super-frames written for the kernel to segment.", s.TxGSOFrames, l...)
		counter("zcnet_link_tx_errors_total", "Frames the device refused.", s.TxErrors, l...)
		counter("zcnet_link_rx_copy_break_frames_total", "Small frames copied whole out of the receive view (copy-break).", s.RxCopyBreakFrames, l...)
		counter("zcnet_link_tx_acks_held_total", "Bare TCP ACKs held back for a reply that would make them redundant.", s.TxAcksHeld, l...)
		counter("zcnet_link_tx_acks_coalesced_total", "Held ACKs dropped because a reply acknowledged as much.", s.TxAcksCoalesced, l...)
		counter("zcnet_link_tx_acks_timed_out_total", "Held ACKs sent alone when no reply came in time.", s.TxAcksTimedOut, l...)
		counter("zcnet_copy_link_rx_bytes_total", "Bytes the link copied in user space on receive (split headers and copy-break frames).", s.RxCopiedBytes, l...)
		counter("zcnet_copy_link_tx_bytes_total", "Bytes the link linearised on transmit.", s.TxCopiedBytes, l...)
	}
	if p := src.Pair; p != nil {
		s := p.Stats()
		linkTotals(counter, l, s.RxFrames, s.RxBytes, s.TxFrames, s.TxBytes)
		rxDrops(counter, l, []reasonCount{{"bad_frame", s.RxDropsBadFrame}})
		counter("zcnet_copy_link_rx_bytes_total", "Bytes the link copied in user space on receive (split headers).", s.RxHeaderBytes, l...)
	}

	if src.XDP != nil {
		xdpMetrics(src.XDP, counter, gauge, l)
	}
	if s, ok := ringStats(src.Ring); ok {
		linkTotals(counter, l, s.RxFrames, s.RxBytes, s.TxFrames, s.TxBytes)
		rxDrops(counter, l, []reasonCount{{"bad_frame", s.RxDropsBadFrame}, {"bad_offset", s.BadOffset}, {"bad_length", s.BadLength}, {"bad_flags", s.BadFlags},
			{"not_owned", s.NotOwned}, {"index_backwards", s.IndexBackwards}, {"index_overrun", s.IndexOverrun},
			{"flood_syn", s.RxDropsFloodSYN}, {"flood_ctl", s.RxDropsFloodCtl}, {"stale", s.RxDropsStale}})
		counter("zcnet_link_ring_kicks_total", "Eventfd kicks sent to the ring's other side.", s.Kicks, l...)
		counter("zcnet_link_ring_wakeups_total", "Sleeps on the ring ended by a kick.", s.Wakeups, l...)
		counter("zcnet_link_ring_peers_total", "Ring sessions started.", s.PeersUp, l...)
		counter("zcnet_link_ring_peers_lost_total", "Ring sessions ended (peer closed or died).", s.PeersLost, l...)
		counter("zcnet_copy_link_rx_bytes_total", "Bytes the link copied in user space on receive (split headers).", s.RxCopiedBytes+s.RxHeaderBytes, l...)
		counter("zcnet_copy_link_tx_bytes_total", "Bytes the link linearised on transmit.", s.TxCopiedBytes, l...)
	}

	// The copy budget of the zero-copy sockets.
	if src.API != nil {
		cc := src.API.Counters()
		counter("zcnet_copy_rx_handed_over_bytes_total", "Received bytes handed to the application without a copy.", cc.RxHandedOver)
		counter("zcnet_copy_rx_copied_bytes_total", "Received bytes copied into pool memory.", cc.RxCopied)
		counter("zcnet_copy_rx_handoffs_total", "Received buffers handed to the application.", cc.RxHandoffs)
		counter("zcnet_copy_tx_in_place_bytes_total", "Bytes sent by writing straight into the stack's buffers.", cc.TxInPlace)
		counter("zcnet_copy_tx_copied_bytes_total", "Bytes sent by copying from a buffer into the stack.", cc.TxCopied)
		counter("zcnet_udp_socket_drops_total", "UDP datagrams the sockets dropped, by reason.", cc.DropsNoRoom, "reason", "no_room")
		counter("zcnet_udp_socket_drops_total", "UDP datagrams the sockets dropped, by reason.", cc.DropsOldest, "reason", "oldest")
	}
	zc := src.Stack.ZeroCopyStats()
	gauge("zcnet_zerocopy_flows", "Sockets registered for zero-copy receive.", float64(zc.Flows))
	counter("zcnet_zerocopy_shadowed_total", "Payload views kept for zero-copy hand-off.", zc.Shadowed)
	counter("zcnet_zerocopy_evicted_total", "Shadows released unused (a flow over its bound).", zc.Evicted)
	counter("zcnet_zerocopy_unmatched_frames_total", "Frames to a zero-copy port with no registered flow.", zc.UnmatchedFrames)
	counter("zcnet_zerocopy_not_kept_total", "Payloads for a TCP listener's port with no connection, not shadowed.", zc.NotKept)

	// The buffer pool.
	if src.Pool != nil {
		p := src.Pool.Stats()
		gauge("zcnet_pool_slot_size_bytes", "Bytes per pool slot.", float64(p.SlotSize))
		gauge("zcnet_pool_slots", "Slots in all regions.", float64(p.SlotsTotal))
		gauge("zcnet_pool_slots_in_use", "Reserved slots.", float64(p.SlotsInUse))
		gauge("zcnet_pool_slots_high_water", "Most slots seen in use.", float64(p.HighWater))
		gauge("zcnet_pool_buffers", "Live reservations.", float64(p.Buffers))
		counter("zcnet_pool_reserves_failed_total", "Reservations that found the pool exhausted.", p.ReservesFailed)
		gauge("zcnet_pool_regions", "Mapped regions.", float64(p.Regions))
		gauge("zcnet_pool_mapped_bytes", "Bytes of buffer memory mapped.", float64(p.BytesMapped))
		gauge("zcnet_pool_pinned_bytes", "Bytes of buffer memory locked in RAM.", float64(p.BytesPinned))
	}

	// Event channels.
	for name, ec := range src.Channels {
		s := ec.Stats()
		l := []string{"channel", name}
		gauge("zcnet_evchan_capacity", "Slots in the channel's ring.", float64(s.Capacity), l...)
		gauge("zcnet_evchan_queued", "Events queued now.", float64(s.Queued), l...)
		gauge("zcnet_evchan_free", "Credits neither reserved nor used.", float64(s.Free), l...)
		gauge("zcnet_evchan_parked", "Consumers parked now.", float64(s.Parked), l...)
		counter("zcnet_evchan_posted_total", "Events placed in the ring.", s.Posted, l...)
		counter("zcnet_evchan_delivered_total", "Events handed to consumers.", s.Delivered, l...)
		counter("zcnet_evchan_discarded_total", "Events discarded by Close.", s.Discarded, l...)
		counter("zcnet_evchan_coalesced_total", "Notifications merged into a queued event.", s.Coalesced, l...)
		counter("zcnet_evchan_lost_total", "Notifications that found no room (reported by overflow events).", s.Lost, l...)
		counter("zcnet_evchan_overflows_total", "Overflow events delivered.", s.Overflows, l...)
		counter("zcnet_evchan_parks_total", "Times a consumer parked.", s.Parks, l...)
		counter("zcnet_evchan_wakeups_total", "Times a parked consumer was woken.", s.Wakeups, l...)
		counter("zcnet_evchan_fd_writes_total", "eventfd writes.", s.FDWrites, l...)
		counter("zcnet_evchan_fd_reads_total", "eventfd reads.", s.FDReads, l...)
	}

	if src.Extra != nil {
		src.Extra(Emitter{Counter: counter, Gauge: gauge})
	}
}

// B2F is 1 for true, 0 for false: a boolean as a gauge.
func B2F(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricName is a stack counter as a metric: its name, labels and type.
type metricName struct {
	name   string
	help   string // the same for every member of a labelled family
	labels []string
	gauge  bool
}

// stackGauges are the stack counters that go down as well as up.
var stackGauges = map[string]bool{"TCP.CurrentEstablished": true, "TCP.CurrentConnected": true}

// stackMetric maps a dotted gVisor counter name to a metric:
// "TCP.Retransmits" is zcnet_stack_tcp_retransmits_total; a per-type
// group such as "ICMP.V4.PacketsSent.ICMPv4PacketStats.EchoReply" becomes
// zcnet_stack_icmp_v4_packets_sent_total{type="echo_reply"}.
func stackMetric(dotted string) metricName {
	parts := strings.Split(dotted, ".")
	m := metricName{help: "gVisor stack counter " + dotted + "."}
	for i, p := range parts {
		if strings.HasSuffix(p, "PacketStats") && i == len(parts)-2 {
			m.labels = []string{"type", snakeCase(parts[i+1])}
			m.help = "gVisor stack counters " + strings.Join(parts[:i+1], ".") + ".*, by type."
			parts = parts[:i]
			break
		}
	}
	segs := make([]string, len(parts))
	for i, p := range parts {
		segs[i] = snakeCase(p)
	}
	m.name = "zcnet_stack_" + strings.Join(segs, "_")
	m.gauge = stackGauges[dotted]
	if !m.gauge {
		m.name += "_total"
	}
	return m
}

// snakeCase turns CamelCase with acronyms into snake_case:
// "SACKRecovery" is sack_recovery, "MalformedL4RcvdPackets"
// malformed_l4_rcvd_packets, "V4" v4.
func snakeCase(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prev := r[i-1]
			// An acronym ends before an upper-case letter that starts a
			// word ("IPTables"), unless what follows is a plural s ("NICs").
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1]) &&
				!(r[i+1] == 's' && (i+2 == len(r) || unicode.IsUpper(r[i+2])))
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// counterFunc emits one counter series (Emitter.Counter).
type counterFunc = func(name, help string, v uint64, labels ...string)

// reasonCount is one series of a counter broken down by reason.
type reasonCount struct {
	reason string
	v      uint64
}

// byReason emits a series of name per reason, labelled l and the reason.
func byReason(counter counterFunc, name, help string, l []string, rs []reasonCount) {
	for _, r := range rs {
		counter(name, help, r.v, append(l[:len(l):len(l)], "reason", r.reason)...)
	}
}

// rxDrops emits a link's receive drops by reason.
func rxDrops(counter counterFunc, l []string, rs []reasonCount) {
	byReason(counter, "zcnet_link_rx_drops_total", "Received frames dropped by the link, by reason.", l, rs)
}

// linkTotals emits the frame and byte totals every link has.
func linkTotals(counter counterFunc, l []string, rxFrames, rxBytes, txFrames, txBytes uint64) {
	counter("zcnet_link_rx_frames_total", "Frames the link delivered to the stack.", rxFrames, l...)
	counter("zcnet_link_rx_bytes_total", "Bytes the link delivered to the stack.", rxBytes, l...)
	counter("zcnet_link_tx_frames_total", "Frames the link sent.", txFrames, l...)
	counter("zcnet_link_tx_bytes_total", "Bytes the link sent.", txBytes, l...)
}

// ringStats calls ring, if there is one.
func ringStats(stats func() (ring.Stats, bool)) (ring.Stats, bool) {
	if stats == nil {
		return ring.Stats{}, false
	}
	return stats()
}

// xdpMetrics adds the AF_XDP link's counters to the metrics.
func xdpMetrics(link *xdp.Link, counter counterFunc, gauge func(name, help string, v float64, labels ...string), l []string) {
	s := link.Stats()
	i := link.Info()
	linkTotals(counter, l, s.RxFrames, s.RxBytes, s.TxFrames, s.TxBytes)
	rxDrops(counter, l, []reasonCount{{"short", s.RxDropShort}, {"oversized", s.RxDropOversized}, {"not_for_us", s.RxDropNotForUs},
		{"not_attached", s.RxDropNotAttached}, {"bad_desc", s.RxDropBadDesc}, {"flood_syn", s.RxDropFloodSYN}, {"flood_ctl", s.RxDropFloodCtl}, {"stale", s.RxDropStale}})
	byReason(counter, "zcnet_link_tx_drops_total", "Packets the link dropped on transmit, by reason.", l,
		[]reasonCount{{"too_big", s.TxDropTooBig}, {"no_frame", s.TxDropNoFrame}})
	counter("zcnet_link_xdp_rx_batches_total", "Non-empty passes over the AF_XDP RX ring.", s.RxBatches, l...)
	counter("zcnet_link_xdp_rx_sleeps_total", "Times the receive loop slept in poll(2).", s.RxSleeps, l...)
	counter("zcnet_link_xdp_rx_bad_index_total", "RX ring producer indices out of range.", s.RxBadIndex, l...)
	counter("zcnet_link_xdp_fill_deferred_total", "Receive frames that waited for room on the fill ring.", s.RxFillDeferred, l...)
	counter("zcnet_link_xdp_rx_csum_completed_total", "Partial TCP/UDP checksums completed (-xdp-partial-csum).", s.RxCsumCompleted, l...)
	counter("zcnet_link_xdp_tx_kicks_total", "sendto calls the kernel asked for (need_wakeup).", s.TxKicks, l...)
	counter("zcnet_link_xdp_tx_kick_errors_total", "sendto calls that failed.", s.TxKickErrors, l...)
	counter("zcnet_link_xdp_tx_bad_completions_total", "Completion entries for frames the kernel did not hold.", s.TxBadCompletion, l...)
	for _, f := range []struct {
		owner string
		v     int
	}{{"rx_kernel", s.FramesRxKernel}, {"rx_held", s.FramesRxHeld}, {"tx_free", s.FramesTxFree}, {"tx_kernel", s.FramesTxKernel}} {
		gauge("zcnet_link_xdp_umem_frames", "UMEM frames by owner.", float64(f.v), append(l, "owner", f.owner)...)
	}
	if ks, err := link.KernelStats(); err == nil {
		byReason(counter, "zcnet_link_xdp_kernel_drops_total", "The kernel's XDP_STATISTICS for the socket, by reason.", l,
			[]reasonCount{{"dropped", ks.RxDropped}, {"rx_ring_full", ks.RxRingFull}, {"fill_ring_empty", ks.RxFillRingEmpty},
				{"rx_invalid_desc", ks.RxInvalidDescs}, {"tx_invalid_desc", ks.TxInvalidDescs}})
	}
	gauge("zcnet_link_xdp_native", "1 if the XDP program runs in the driver's hook, 0 if generic.", B2F(i.Native), l...)
	gauge("zcnet_link_xdp_zerocopy", "1 if the AF_XDP socket is bound zero-copy, 0 if copy mode.", B2F(i.ZeroCopy), l...)
	counter("zcnet_copy_link_rx_bytes_total", "Bytes the link copied in user space on receive (out of the UMEM).", s.RxCopiedBytes+s.RxHeaderBytes, l...)
	counter("zcnet_copy_link_tx_bytes_total", "Bytes the link copied into UMEM frames on transmit.", s.TxCopiedBytes, l...)
}
