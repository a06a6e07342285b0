package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFoundationPeers drives netstackd on a TAP device with stock tools from
// the kernel side of the namespace: curl fetches the status page, socat
// echoes 1 MiB over TCP and a datagram over UDP, and ping gets replies over
// IPv4 and IPv6. It runs with the virtio-net offloads on and off.
func TestFoundationPeers(t *testing.T) {
	need(t, "curl", "socat", "ping")
	for _, offload := range []string{"on", "off"} {
		t.Run("offload="+offload, func(t *testing.T) {
			d := startDaemon(t, "-offload", offload, "-queues", "1")

			t.Run("ping", func(t *testing.T) {
				for _, args := range [][]string{
					{"ping", "-c", "3", "-i", "0.2", "-W", "5", stack4},
					{"ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", stack6},
				} {
					out, err := d.run(t, 30*time.Second, nil, args...)
					if err != nil {
						t.Fatal(err)
					}
					if !regexp.MustCompile(`3 packets transmitted, 3 received`).Match(out) {
						t.Fatalf("%s:\n%s", strings.Join(args, " "), out)
					}
				}
			})

			t.Run("curl", func(t *testing.T) {
				for _, url := range []string{"http://" + stack4 + "/", "http://[" + stack6 + "]/"} {
					out, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", url)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.HasPrefix(out, []byte("zcnet netstackd, up ")) || !bytes.Contains(out, []byte("TCP.PassiveConnectionOpenings ")) {
						t.Fatalf("GET %s:\n%s", url, out)
					}
				}
				out, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", "http://"+stack4+"/status.json")
				if err != nil {
					t.Fatal(err)
				}
				var st struct {
					NICs []struct {
						Name      string `json:"name"`
						RxPackets uint64 `json:"rx_packets"`
					} `json:"nics"`
					Counters map[string]uint64 `json:"counters"`
				}
				if err := json.Unmarshal(out, &st); err != nil {
					t.Fatalf("status.json: %v\n%s", err, out)
				}
				if len(st.NICs) != 1 || st.NICs[0].Name != d.tap || st.NICs[0].RxPackets == 0 || st.Counters["TCP.PassiveConnectionOpenings"] < 2 {
					t.Fatalf("status.json: %+v", st)
				}
			})

			t.Run("socat tcp echo 1MiB", func(t *testing.T) {
				for _, addr := range []string{"TCP:" + stack4 + ":7", "TCP6:[" + stack6 + "]:7"} {
					data := make([]byte, 1<<20)
					rand.Read(data)
					// -t: after stdin's EOF, wait up to 20 s for the echo to
					// finish; the echo server closes once it has echoed all.
					out, err := d.run(t, 60*time.Second, bytes.NewReader(data), "socat", "-t", "20", "-T", "30", "-", addr)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out, data) {
						t.Fatalf("%s: echoed %d bytes, want %d identical ones", addr, len(out), len(data))
					}
				}
			})

			t.Run("socat udp echo", func(t *testing.T) {
				for _, addr := range []string{"UDP:" + stack4 + ":7", "UDP6:[" + stack6 + "]:7"} {
					msg := fmt.Sprintf("zcnet datagram %x", time.Now().UnixNano())
					out, err := d.run(t, 30*time.Second, strings.NewReader(msg), "socat", "-t", "2", "-T", "5", "-", addr)
					if err != nil {
						t.Fatal(err)
					}
					if string(out) != msg {
						t.Fatalf("%s: got %q, want %q", addr, out, msg)
					}
				}
			})
		})
	}
}
