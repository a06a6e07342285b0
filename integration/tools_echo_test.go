package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// echoJSON is netstackd echo's -json summary.
type echoJSON struct {
	Protocol      string             `json:"protocol"`
	Transport     string             `json:"transport"`
	Sent          int                `json:"sent"`
	RoundTrips    int                `json:"round_trips"`
	Lost          int                `json:"lost"`
	VerifiedBytes uint64             `json:"verified_bytes"`
	LatencyUs     map[string]float64 `json:"latency_us"`
	Error         string             `json:"error"`
}

// TestToolsEchoAgainstSocat: netstackd's echo client, on a zcnet stack on
// its own TAP device and over kernel sockets, against socat echo servers
// (TCP and UDP) in the kernel; every byte of every round trip is checked
// by the client.
func TestToolsEchoAgainstSocat(t *testing.T) {
	need(t, "socat", "ss")
	c := newClientNet(t)
	// Both servers run until the test's cleanup stops them. A UDP child
	// (one per datagram) ends after 2 s without traffic.
	c.background(t, 120*time.Second, "", "socat", "TCP-LISTEN:7,reuseaddr,fork", "PIPE")
	c.background(t, 120*time.Second, "", "socat", "-T", "2", "UDP-RECVFROM:7,fork", "PIPE")
	c.waitListening(t, 7)
	for _, tc := range []struct {
		name string
		args []string
		n    int
		size int
	}{
		{"zcnet tcp", append(c.toolArgs(), "-n", "500", "-size", "1400"), 500, 1400},
		// Many segments per message, but less than socat's pipe holds:
		// socat's PIPE deadlocks when more than its pipe buffer (64 KiB)
		// is outstanding, whoever the client is.
		{"zcnet tcp large", append(c.toolArgs(), "-n", "20", "-size", "48000"), 20, 48000},
		// socat forks a process per datagram: a reply may take a while.
		{"zcnet udp", append(c.toolArgs(), "-u", "-n", "100", "-size", "1000", "-timeout", "5s"), 100, 1000},
		{"kernel tcp", []string{"-kernel", "-n", "500", "-size", "1400"}, 500, 1400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.ns.Run(60*time.Second, append([]string{netstackd, "echo", "-c", kernel2, "-json"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			var r echoJSON
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if r.Error != "" {
				t.Fatalf("echo client: %s", r.Error)
			}
			// None may be lost on a local link.
			if r.Sent != tc.n || r.RoundTrips != tc.n || r.Lost != 0 || r.VerifiedBytes != uint64(tc.n*tc.size) {
				t.Fatalf("sent %d, %d round trips, %d lost, %d bytes verified; want %d of %d bytes", r.Sent, r.RoundTrips, r.Lost, r.VerifiedBytes, tc.n, tc.size)
			}
			if r.LatencyUs["p50"] <= 0 || r.LatencyUs["max"] < r.LatencyUs["p99"] {
				t.Errorf("latency %v", r.LatencyUs)
			}
			t.Logf("%d round trips of %d bytes over %s (%s): latency µs %v", r.RoundTrips, tc.size, r.Protocol, r.Transport, r.LatencyUs)
		})
	}
}

// TestToolsSocatAgainstEchoServer: socat, in the kernel, against
// netstackd's echo server: the standalone tool (echo -s) on a zcnet stack
// on a TAP device, and the same server as the daemon's echo service. 1 MiB
// over TCP must come back byte for byte, and a datagram over UDP.
func TestToolsSocatAgainstEchoServer(t *testing.T) {
	need(t, "socat", "ss")
	check := func(t *testing.T, run func(stdin []byte, args ...string) ([]byte, error), host string) {
		t.Helper()
		data := make([]byte, 1<<20)
		rand.Read(data)
		out, err := run(data, "socat", "-t", "20", "-T", "30", "-", fmt.Sprintf("TCP:%s:7", host))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("TCP: echoed %d bytes, want %d identical ones", len(out), len(data))
		}
		msg := fmt.Sprintf("zcnet datagram %x", time.Now().UnixNano())
		out, err = run([]byte(msg), "socat", "-t", "2", "-T", "5", "-", fmt.Sprintf("UDP:%s:7", host))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != msg {
			t.Fatalf("UDP: got %q, want %q", out, msg)
		}
	}
	t.Run("echo -s on a TAP", func(t *testing.T) {
		c := newClientNet(t)
		ready, _ := c.background(t, 120*time.Second, "echo server listening", append([]string{netstackd, "echo", "-s"}, c.toolArgs()...)...)
		waitReady(t, ready, "netstackd echo -s")
		check(t, func(stdin []byte, args ...string) ([]byte, error) {
			return c.runIn(60*time.Second, stdin, args...)
		}, tool2)
	})
	t.Run("the daemon's echo service", func(t *testing.T) {
		d := startDaemon(t, "-queues", "1", "-services", "echo,http")
		check(t, func(stdin []byte, args ...string) ([]byte, error) {
			return d.run(t, 60*time.Second, bytes.NewReader(stdin), args...)
		}, stack4)
		if strings.Contains(d.log(), "service=perf") {
			t.Errorf("-services echo,http started perf too:\n%s", d.log())
		}
	})
}
