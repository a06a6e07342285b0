package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestToolsObservability does what the README tells a person to do: run
// netstackd serve on a TAP device (here from a config file), test it with
// stock iperf3, and read the metrics. The scrape is parsed as Prometheus
// text format and checked against the traffic; the status page and the
// profiler answer on the same kernel socket; after the daemon stops, its
// packet capture is read back with tcpdump -r.
func TestToolsObservability(t *testing.T) {
	need(t, "iperf3", "curl", "tcpdump", "ping")
	dir := t.TempDir()
	pcap := filepath.Join(dir, "serve.pcap")
	conf := filepath.Join(dir, "serve.toml")
	// The metrics server listens on every address of the namespace's
	// kernel; the test reaches it at the TAP's kernel side, 192.0.2.1.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`# netstackd serve, as in the README
queues = 1
metrics = ":0"
stack-metrics = true
pcap = %q
pool-size = "32MiB"
`, pcap)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before startDaemon, so it runs after the daemon's cleanup
	// has stopped it and the capture is flushed and closed.
	t.Cleanup(func() { checkPcap(t, pcap) })
	d := startDaemon(t, "-config", conf)

	m := regexp.MustCompile(`msg=listening service=metrics addr=\S*:(\d+)`).FindStringSubmatch(d.log())
	if m == nil {
		t.Fatalf("the daemon did not log its metrics address:\n%s", d.log())
	}
	metricsURL := fmt.Sprintf("http://%s:%s", peer4, m[1])

	// Traffic: an iperf3 test, pings, the stack's status page.
	out, err := d.run(t, 60*time.Second, nil, "iperf3", "-c", stack4, "-t", "2", "-b", "40M", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	theirs := decodeIperf(t, "iperf3 -c", out)
	if _, err := d.run(t, 30*time.Second, nil, "ping", "-c", "3", "-i", "0.2", "-W", "5", stack4); err != nil {
		t.Fatal(err)
	}

	scrape := func(url string) map[string]*dto.MetricFamily {
		t.Helper()
		body, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", url)
		if err != nil {
			t.Fatal(err)
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("GET %s: not Prometheus text format: %v\n%.2000s", url, err, body)
		}
		return fams
	}
	fams := scrape(metricsURL + "/metrics")
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Fatalf("no metric family %s", name)
		}
	next:
		for _, s := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range s.Label {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue()
			case s.Gauge != nil:
				return s.Gauge.GetValue()
			}
		}
		t.Fatalf("no series %s%v", name, labels)
		return 0
	}
	received := theirs.End.SumReceived.Bytes
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"zcnet_perf_tests_total", []string{"result", "ok"}, 1},
		{"zcnet_perf_bytes_total", []string{"direction", "received"}, received},
		{"zcnet_nic_rx_bytes_total", []string{"nic", d.tap}, received},
		{"zcnet_link_rx_bytes_total", []string{"nic", d.tap}, received},
		{"zcnet_link_rx_frames_total", []string{"nic", d.tap}, 100},          // fewer than packets: TSO super-frames
		{"zcnet_link_rx_gso_frames_total", []string{"nic", d.tap}, 1},        // the kernel sends TSO super-frames
		{"zcnet_link_rx_copy_break_frames_total", []string{"nic", d.tap}, 3}, // ping's echo requests, SYNs: small frames
		{"zcnet_link_tx_acks_held_total", []string{"nic", d.tap}, 1},         // a receiver's first bare ACK is held
		{"zcnet_copy_rx_handed_over_bytes_total", nil, 0.9 * received},
		{"zcnet_stack_tcp_passive_connection_openings_total", nil, 2},
		{"zcnet_stack_icmp_v4_packets_sent_total", []string{"type", "echo_reply"}, 3},
		{"zcnet_pool_mapped_bytes", nil, 32 << 20},
		{"zcnet_evchan_capacity", []string{"channel", "daemon"}, 64},
		{"zcnet_pcap_packets_total", nil, 200}, // TSO super-frames are captured whole
		{"process_resident_memory_bytes", nil, 1},
	} {
		if v := value(c.name, c.labels...); v < c.min {
			t.Errorf("%s%v = %.0f, want at least %.0f", c.name, c.labels, v, c.min)
		}
	}
	if v := value("zcnet_perf_bytes_total", "direction", "received"); v != received {
		t.Errorf("metrics say the perf service received %.0f bytes, iperf3 was told %.0f", v, received)
	}
	if v := value("zcnet_copy_rx_copied_bytes_total"); v > 0.1*received {
		t.Errorf("%.0f of %.0f received bytes copied", v, received)
	}

	// The same metrics on the stack's own status page (-stack-metrics).
	if v := scrape("http://" + stack4 + "/metrics")["zcnet_perf_tests_total"]; v == nil {
		t.Error("the stack's status page has no perf metrics")
	}
	// The status page and the profiler on the metrics server.
	for path, want := range map[string]string{"/status.json": `"perf"`, "/debug/pprof/": "goroutine", "/": "zcnet netstackd, up"} {
		body, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", metricsURL+path)
		if err != nil || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %v, body lacks %q:\n%.500s", path, err, want, body)
		}
	}
}

// checkPcap reads the daemon's capture with tcpdump -r: Ethernet frames,
// with the iperf3 test's packets (port 5201), the pings, the HTTP requests
// and the ARP exchange before them.
func checkPcap(t *testing.T, path string) {
	t.Helper()
	if t.Skipped() {
		return
	}
	out, err := exec.Command("tcpdump", "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Errorf("tcpdump -r %s: %v\n%.2000s", path, err, out)
		return
	}
	s := string(out)
	for _, want := range []string{"link-type EN10MB", "ARP, Reply " + stack4 + " is-at", "> " + stack4 + ".5201: Flags [S]", stack4 + " > " + peer4 + ": ICMP echo reply", "> " + stack4 + ".80: Flags [P.]"} {
		if !strings.Contains(s, want) {
			t.Errorf("tcpdump -r: no %q in the capture (%d lines):\n%.3000s", want, strings.Count(s, "\n"), s)
		}
	}
	// The iperf3 test (2 s at 40 Mbit/s, 10 MB) alone is at least 150 TSO
	// super-frames of at most 64 KiB; how many ACKs go with them depends on
	// how the kernel batched the segments, so they are not counted on.
	if n := strings.Count(s, "\n"); n < 150 {
		t.Errorf("tcpdump -r read %d packets, want the iperf3 test's hundreds", n)
	}
}
