package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestToolsNmap scans netstackd serve with nmap from the kernel side, as a
// curious user would: a SYN scan and a connect scan of TCP, a UDP scan and
// an IPv6 SYN scan. nmap must see the services open and every other port
// closed (a RST for TCP, ICMP port unreachable for UDP), the stack's
// counters of those answers must move, and the daemon must go on serving.
func TestToolsNmap(t *testing.T) {
	need(t, "nmap", "curl")
	d := startDaemon(t, "-queues", "1")
	counters := func() map[string]uint64 {
		t.Helper()
		out, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", "http://"+stack4+"/status.json")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Counters map[string]uint64 `json:"counters"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		return st.Counters
	}
	before := counters()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"syn", []string{"-sS", "-p", "1-1024,5201", stack4},
			[]string{"7/tcp open", "9/tcp open", "80/tcp open", "5201/tcp open", "1021 closed tcp ports (reset)"}},
		{"connect", []string{"-sT", "-p", "1-1024,5201", stack4},
			[]string{"7/tcp open", "5201/tcp open", "1021 closed tcp ports (conn-refused)"}},
		// Echo answers nmap's probe; discard never does (open|filtered);
		// perf's UDP socket exists only during a test.
		{"udp", []string{"-sU", "-p", "7,9,53,5201", "--max-retries", "2", stack4},
			[]string{"7/udp open", "53/udp closed", "5201/udp closed"}},
		{"ipv6 syn", []string{"-6", "-sS", "-p", "1-100", stack6},
			[]string{"7/tcp open", "9/tcp open", "80/tcp open", "97 closed tcp ports (reset)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"nmap", "-n", "-Pn", "--max-rtt-timeout", "1000ms"}, tc.args...)
			out, err := d.run(t, 120*time.Second, nil, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			// Port lines as "PORT STATE", columns' padding squeezed.
			var lines []string
			for _, l := range strings.Split(string(out), "\n") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
			squeezed := strings.Join(lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(squeezed, w) {
					t.Errorf("nmap %s: output lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
				}
			}
		})
	}
	after := counters()
	for _, k := range []string{"TCP.ResetsSent", "ICMP.V4.PacketsSent.ICMPv4PacketStats.DstUnreachable", "UDP.UnknownPortErrors"} {
		if after[k] <= before[k] {
			t.Errorf("%s did not move during the scans: %d -> %d", k, before[k], after[k])
		}
	}
	// Still serving, and nothing crashed.
	echoThrough(t, d)
	noCrash(t, d.log())
}
