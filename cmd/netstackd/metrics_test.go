package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/evchan"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/echo"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// scrape serves one request to h without a network and returns the body.
func scrape(t *testing.T, h http.Handler, path string) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// parseMetrics parses the Prometheus text format strictly (legacy metric
// names, as Prometheus itself accepts without escaping).
func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not Prometheus text format: %v", err)
	}
	return fams
}

// metricValue returns the value of the series of family name whose labels
// include want.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

// TestMetricsScrape runs the daemon's services on an in-process stack,
// drives them (a perf test, echo round trips, status and metrics over the
// stack's own HTTP service), and scrapes the metrics endpoint: the page
// must parse as Prometheus text and every family must carry what happened.
func TestMetricsScrape(t *testing.T) {
	env := inprocEnv(t)
	server := env.stacks[1]
	log := slog.New(slog.DiscardHandler)
	svc := newServices(server, log)
	ec, err := evchan.New(evchan.Config{Capacity: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	obs := newObserver(server, svc, map[string]*evchan.Channel{"test": ec})
	if err := svc.start(allServices, iperf3.Port, obs, true); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	// Drive the services.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := iperf3.RunClient(ctx, env.client, iperf3.ClientConfig{Server: netip.AddrPortFrom(env.serverAddr, iperf3.Port),
		Spec: iperf3.Spec{Streams: 2, BlockSize: 64 << 10, Bytes: 8 << 20}}) // a byte count, not a time: the same work however loaded the machine
	if err != nil {
		t.Fatal(err)
	}
	received := o.BytesReceived()
	// The pair carries segments of up to 64 KiB, so the server received
	// at least this many frames for the test's data.
	minFrames := float64(received) / (64 << 10)
	er, err := echo.Run(ctx, env.client, netip.AddrPortFrom(env.serverAddr, 7), echo.Config{Count: 50, Size: 300, Timeout: time.Second})
	if err != nil || er.OK != 50 {
		t.Fatalf("echo: %v %+v", err, er)
	}
	for i := 0; i < 3; i++ {
		ec.TryPost(evchan.Event{Source: evchan.SourceTimer})
	}

	body := scrape(t, obs.mux(), "/metrics")
	fams := parseMetrics(t, body)
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"zcnet_stack_tcp_passive_connection_openings_total", nil, 4}, // perf control + 2 streams + echo
		{"zcnet_stack_tcp_retransmits_total", nil, 0},
		{"zcnet_stack_tcp_current_established", nil, 0},
		{"zcnet_stack_udp_packets_received_total", nil, 0},
		{"zcnet_stack_icmp_v4_packets_sent_total", map[string]string{"type": "echo_reply"}, 0},
		{"zcnet_nic_rx_packets_total", map[string]string{"nic": "pair-server"}, minFrames},
		{"zcnet_nic_mtu_bytes", map[string]string{"nic": "pair-server"}, 1500},
		{"zcnet_link_rx_frames_total", map[string]string{"nic": "pair-server"}, minFrames},
		{"zcnet_copy_link_rx_bytes_total", map[string]string{"nic": "pair-server"}, 1},
		{"zcnet_copy_rx_handed_over_bytes_total", nil, float64(received)},
		{"zcnet_copy_tx_copied_bytes_total", nil, 50 * 300}, // echo sends each received Buf back with OpSend: one copy into the stack
		{"zcnet_copy_tx_in_place_bytes_total", nil, 0},
		{"zcnet_pool_slots", nil, 1},
		{"zcnet_evchan_capacity", map[string]string{"channel": "test"}, 16},
		{"zcnet_evchan_posted_total", map[string]string{"channel": "test"}, 3},
		{"zcnet_perf_tests_total", map[string]string{"result": "ok"}, 1},
		{"zcnet_perf_bytes_total", map[string]string{"direction": "received"}, float64(received)},
		{"zcnet_service_bytes_total", map[string]string{"service": "echo"}, 50 * 300},
		{"zcnet_zerocopy_shadowed_total", nil, 1},
		{"go_goroutines", nil, 1},
	} {
		if v := metricValue(t, fams, c.name, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, v, c.min)
		}
	}
	if v := metricValue(t, fams, "zcnet_perf_bytes_total", map[string]string{"direction": "received"}); v != float64(received) {
		t.Errorf("perf bytes received %v, the client was told %d", v, received)
	}
	if got := fams["zcnet_stack_tcp_retransmits_total"].GetType(); got != dto.MetricType_COUNTER {
		t.Errorf("retransmits are a %v", got)
	}
	if got := fams["zcnet_stack_tcp_current_established"].GetType(); got != dto.MetricType_GAUGE {
		t.Errorf("current established is a %v", got)
	}

	// The status page and the profiler on the same server.
	var st struct {
		Copy api.Counters       `json:"copy"`
		Perf iperf3.ServerStats `json:"perf"`
	}
	if err := json.Unmarshal(scrape(t, obs.mux(), "/status.json"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Perf.Tests != 1 || st.Perf.BytesReceived != received || st.Copy.RxHandedOver == 0 {
		t.Errorf("status.json: %+v", st)
	}
	if !bytes.Contains(scrape(t, obs.mux(), "/debug/pprof/"), []byte("goroutine")) {
		t.Error("/debug/pprof/ lacks the goroutine profile")
	}

	// -stack-metrics: the same metrics on the stack's status page, fetched
	// over zcnet from the other stack.
	hc := &http.Client{Transport: &http.Transport{DialContext: env.stacks[0].API.Net().DialContext}, Timeout: 20 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://192.0.2.2/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics on the stack: %d %v", resp.StatusCode, err)
	}
	if v := metricValue(t, parseMetrics(t, page), "zcnet_perf_tests_total", map[string]string{"result": "ok"}); v != 1 {
		t.Errorf("stack's /metrics: perf tests %v", v)
	}
}

// TestPcapCapture captures an echo run on the in-process pair (-pcap) and
// reads the file back: a pcap header of an Ethernet capture, records of
// Ethernet frames, ARP and TCP to port 7 among them; and tcpdump -r reads
// it, ARP included, if installed.
func TestPcapCapture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "echo.pcap")
	var out, errb bytes.Buffer
	if code := run([]string{"echo", "-inproc", "-n", "20", "-pcap", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, &out, &errb)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 24 || binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(data[20:]) != 1 {
		t.Fatalf("not a pcap file of Ethernet frames (LINKTYPE_ETHERNET): % x", data[:min(len(data), 24)])
	}
	records, toEcho, arp := 0, 0, 0
	for off := 24; off < len(data); {
		if off+16 > len(data) {
			t.Fatalf("truncated record header at %d", off)
		}
		incl := int(binary.LittleEndian.Uint32(data[off+8:]))
		frame := data[off+16 : off+16+incl]
		off += 16 + incl
		records++
		if len(frame) < 14 {
			t.Fatalf("record %d: %d bytes, shorter than an Ethernet header", records, len(frame))
		}
		pkt := frame[14:]
		switch binary.BigEndian.Uint16(frame[12:]) {
		case 0x0806:
			arp++
			continue
		case 0x0800:
		default:
			continue
		}
		if len(pkt) >= 24 && pkt[0]>>4 == 4 && pkt[9] == 6 {
			ihl := int(pkt[0]&0xf) * 4
			if binary.BigEndian.Uint16(pkt[ihl+2:]) == 7 && netip.AddrFrom4([4]byte(pkt[16:20])) == zcstack.PairServer.Addr() {
				toEcho++
			}
		}
	}
	// 20 round trips: at least a request per round, plus the handshake.
	if records < 40 || toEcho < 21 || arp < 2 {
		t.Fatalf("%d records, %d TCP packets to the echo port, %d ARP frames", records, toEcho, arp)
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Logf("tcpdump not installed; parsed the file without it")
		return
	}
	dump, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, dump)
	}
	if n := strings.Count(string(dump), "192.0.2.1."); n < records/2 || !strings.Contains(string(dump), "> 192.0.2.2.7: Flags [S]") {
		t.Fatalf("tcpdump -r shows %d lines from the client and no SYN to the echo port:\n%s", n, dump)
	}
	if !strings.Contains(string(dump), "ARP, Request who-has 192.0.2.2 tell 192.0.2.1") || !strings.Contains(string(dump), "ARP, Reply 192.0.2.2 is-at") {
		t.Fatalf("tcpdump -r shows no ARP request and reply:\n%s", dump)
	}
}
