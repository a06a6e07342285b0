package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The heap a bulk TCP upload into netstackd serve may allocate per byte it
// receives (issue 15). The receive path takes its views from gVisor's chunk
// pools (buffer.NewViewSize) and gives them back when the application
// releases the data, so an upload allocates almost nothing on the Go heap
// and the collector hardly runs: that is why raising GOGC or setting a
// memory limit does not lower the daemon's CPU per byte (the cost the
// profile shows in memclr is gVisor clearing every pooled chunk it hands
// out, which no GC setting changes). If views stopped being recycled (a
// chunk above gVisor's largest pool, a view leaked to the collector), each
// super-frame would allocate its size afresh, about one heap byte per byte
// received, and GC tuning would matter again; this bound catches that.
//
// The bound is uploadHeapFixed (the metrics scrapes, iperf3's control
// connection, the connection's own state, timers) plus uploadHeapPerByte
// of the bytes received. Under -race sync.Pool drops a quarter of what is
// put back on purpose, so a quarter of the chunks are fresh allocations;
// the race bound still tells recycling from none.
const (
	uploadHeapFixed       = 8 << 20
	uploadHeapPerByte     = 1.0 / 32
	uploadHeapPerByteRace = 1.0 / 2
)

// TestDaemonUploadHeap runs a stock iperf3 upload into netstackd serve (one
// queue, offloads on, as users run it) and checks the Go heap the daemon
// allocated meanwhile (go_memstats_alloc_bytes_total on its /metrics)
// against the bytes it received; it logs the collections run per GB. Past
// about 8 MB received a daemon without recycling fails it, so a slow
// machine still tells.
func TestDaemonUploadHeap(t *testing.T) {
	need(t, "iperf3", "curl")
	d := startDaemon(t, "-queues", "1", "-stack-metrics")
	metric := func(name string) float64 {
		t.Helper()
		out, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", "http://"+stack4+"/metrics")
		if err != nil {
			t.Fatalf("metrics: %v\n%s", err, out)
		}
		v, err := promValue(string(out), name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	alloc0, gc0 := metric("go_memstats_alloc_bytes_total"), metric("go_gc_duration_seconds_count")
	out, err := d.run(t, 60*time.Second, nil, "iperf3", "-c", stack4, "--json", "--connect-timeout", "10000", "-t", "3")
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, d.log())
	}
	j := decodeIperf(t, "iperf3 -c", out)
	alloc1, gc1 := metric("go_memstats_alloc_bytes_total"), metric("go_gc_duration_seconds_count")
	rcvd := j.End.SumReceived.Bytes
	counted(t, "upload", j.End.SumSent.Bytes, rcvd)
	if rcvd <= 0 {
		return
	}
	heap := alloc1 - alloc0
	perByte := uploadHeapPerByte
	if raceEnabled {
		perByte = uploadHeapPerByteRace
	}
	bound := uploadHeapFixed + perByte*rcvd
	t.Logf("upload %.2f Gbit/s, %.0f MB received; daemon heap allocated %.1f MB (%.4f per byte received; bound %.1f MB), %.0f collections (%.2f per GB); race %v",
		j.End.SumReceived.BitsPerSecond/1e9, rcvd/1e6, heap/1e6, heap/rcvd, bound/1e6, gc1-gc0, (gc1-gc0)/(rcvd/1e9), raceEnabled)
	if heap > bound {
		t.Errorf("the daemon allocated %.1f MB of heap for %.0f MB received, want at most %.1f MB (%d MiB + %.4f per byte): are receive views still recycled?",
			heap/1e6, rcvd/1e6, bound/1e6, uploadHeapFixed>>20, perByte)
	}
}

// promValue returns the value of the unlabelled sample name in a
// Prometheus text exposition.
func promValue(text, name string) (float64, error) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in the metrics", name)
}
