package main

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/tap"
)

// writeConfig writes a config file for the test and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zc.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile: every key is a flag name; values parse as the flags do;
// the command line overrides the file, and a repeatable flag given there
// replaces the file's list.
func TestConfigFile(t *testing.T) {
	path := writeConfig(t, `# netstackd serve settings
tap = "zc7"
addr = ["192.0.2.2/24", "192.0.2.3/24"]
addr6 = ["2001:db8::2/64"]
route = ["198.51.100.0/24=192.0.2.1"]
mtu = 9000
offload = "off"
queues = 2
tcp-rmem = "4KiB,1MiB,8MiB"
congestion = "reno"
pool-size = "32MiB"
pool-pin = "off"
assoc = 1048576
services = "echo,http"
perf-port = 5301
metrics = "127.0.0.1:9100"
stack-metrics = true
log-level = "debug"
`)
	cfg, err := parseServe([]string{"-config", path, "-mtu", "1500", "-addr", "192.0.2.9/24"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := tap.Config{Name: "zc7", MTU: 1500, Offload: tap.OffloadOff, Queues: 2}
	if !reflect.DeepEqual(s.tap, want) {
		t.Errorf("tap config %+v, want %+v", s.tap, want)
	}
	if got := s.addrs; len(got) != 2 || got[0] != netip.MustParsePrefix("192.0.2.9/24") || got[1] != netip.MustParsePrefix("2001:db8::2/64") {
		t.Errorf("addrs %v: the command line's -addr replaces the file's list, addr6 stays", got)
	}
	if len(s.routes) != 1 || s.routes[0].Dst != netip.MustParsePrefix("198.51.100.0/24") || s.routes[0].Gateway != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("routes %v", s.routes)
	}
	if s.stack.CongestionControl != "reno" || s.stack.TCPReceiveBuffer != (stack.BufferSizes{Min: 4 << 10, Default: 1 << 20, Max: 8 << 20}) {
		t.Errorf("stack options %+v", s.stack)
	}
	if s.pool.Size != 32<<20 || s.pool.Pin != dmapool.PinOff || s.assoc != 1<<20 {
		t.Errorf("pool %+v assoc %d", s.pool, s.assoc)
	}
	if strings.Join(s.services, ",") != "echo,http" || s.perfPort != 5301 || s.metrics != "127.0.0.1:9100" || !s.stackMetrics || s.level.String() != "DEBUG" {
		t.Errorf("setup %+v", s)
	}
}

// TestConfigErrors: each mistake in a config file is refused at start,
// with exit status 2 and a message that names the file, the line and the
// key, and says what would be right.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"syntax", "tap = \"zc0\"\nmtu = = 3\n", []string{"zc.toml:2:", "TOML syntax"}},
		{"unknown key", "tap = \"zc0\"\n\nmtuu = 1500\n", []string{"zc.toml:3", `unknown key "mtuu"`, `did you mean "mtu"?`}},
		{"config in config", "config = \"other.toml\"\n", []string{`unknown key "config"`}},
		{"table", "[link]\ntap = \"zc0\"\n", []string{"zc.toml:", "link", "tables are not used"}},
		{"string for integer", "tap = \"zc0\"\naddr = [\"192.0.2.2/24\"]\nmtu = \"1500\"\n", []string{"zc.toml:3", `mtu = "1500"`, "want an integer, e.g. mtu = 1500"}},
		{"integer for boolean", "no-services = 1\n", []string{"no-services = 1", "want a boolean, e.g. no-services = true"}},
		{"list for scalar", "tap = [\"a\", \"b\"]\n", []string{"tap takes one value, not a list"}},
		{"bad address", "tap = \"zc0\"\naddr = [\"192.0.2.300/24\"]\n", []string{"zc.toml:2", `addr = ["192.0.2.300/24"]`, "not an address with a prefix length, such as 192.0.2.2/24"}},
		{"out of range", "tap = \"zc0\"\naddr = [\"192.0.2.2/24\"]\nmtu = 70000\n", []string{"zc.toml: mtu = 70000: want 68 to 65521"}},
		{"bad enum", "tap = \"zc0\"\naddr = [\"192.0.2.2/24\"]\noffload = \"maybe\"\n", []string{`zc.toml: offload = "maybe": want on or off`}},
		{"bad service", "tap = \"zc0\"\naddr = [\"192.0.2.2/24\"]\nservices = \"echo,ftp\"\n", []string{`unknown service "ftp"`, "echo, discard, perf, http"}},
		{"missing tap", "addr = [\"192.0.2.2/24\"]\n", []string{"-tap or -ring is required", `tap = "zc0" in`, `ring = "/run/zcnet/ring.sock" in`}},
		{"bad size", "tap = \"zc0\"\naddr = [\"192.0.2.2/24\"]\npool-size = \"lots\"\n", []string{`pool-size = "lots"`, "not a size"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			var out, errb bytes.Buffer
			code := run([]string{"serve", "-config", path}, &out, &errb)
			msg := strings.ReplaceAll(errb.String(), path, "zc.toml")
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr %q", code, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr %q lacks %q", msg, w)
				}
			}
		})
	}
	var errb bytes.Buffer
	if code := run([]string{"serve", "-config", filepath.Join(t.TempDir(), "absent.toml")}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "cannot read the config file") {
		t.Errorf("missing file: exit %d, %q", code, errb.String())
	}
}

// TestFlagErrors extends the lead's TestUsageErrors to the flags this
// package added: every bad value is refused with exit 2 and a message that
// says what would be right.
func TestFlagErrors(t *testing.T) {
	base := []string{"serve", "-tap", "zc0", "-addr", "192.0.2.2/24"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(base, "-services", "echo,gopher"), `unknown service "gopher"`},
		{append(base, "-perf-port", "0"), "-perf-port 0: want a port, 1 to 65535"},
		{append(base, "-metrics", "9100"), "want HOST:PORT, e.g. 127.0.0.1:9100"},
		{append(base, "-metrics", "example.com:9100"), `host "example.com": want an IP address or localhost`},
		{append(base, "-metrics", "127.0.0.1:99999"), `port "99999": want 0 to 65535`},
		{append(base, "-stack-metrics", "-services", "echo"), "-stack-metrics needs the http service"},
		{append(base, "-route", "198.51.100.0/24"), "want DST=GATEWAY, e.g. 198.51.100.0/24=192.0.2.1"},
		{append(base, "-route", "198.51.100.7/24=192.0.2.1"), "did you mean 198.51.100.0/24?"},
		{append(base, "-route", "2001:db8:1::/48=2001:db8::1"), "no address of its family"},
		{append(base, "-tcp-rmem", "4KiB,1MiB"), "want MIN,DEFAULT,MAX"},
		{append(base, "-tcp-wmem", "8MiB,1MiB,16MiB"), "want MIN <= DEFAULT <= MAX"},
		{append(base, "-congestion", "bbr"), `-congestion "bbr": want cubic or reno`},
		{append(base, "-pool-size", "100K"), "-pool-size 100KiB: want 1MiB to 64GiB"},
		{append(base, "-pool-pin", "always"), `-pool-pin "always": want require, prefer or off`},
		{append(base, "-assoc", "1K"), "-assoc 1KiB: want 64KiB up to the pool size"},
		{append(base, "-pcap-snaplen", "10"), "-pcap-snaplen 10: want 64 to 262144"},

		{[]string{"perf", "-c", "192.0.2.2"}, "choose where the sockets live (none given)"},
		{[]string{"perf", "-inproc", "-kernel"}, "(more than one given)"},
		{[]string{"perf", "-kernel"}, "run a server (-s) or a client (-c HOST)"},
		{[]string{"perf", "-kernel", "-s", "-c", "192.0.2.2"}, "-s and -c exclude each other"},
		{[]string{"perf", "-inproc", "-s"}, "-inproc runs both the server and the client"},
		{[]string{"perf", "-kernel", "-c", "zcnet.example"}, "want a numeric IPv4 or IPv6 address"},
		{[]string{"perf", "-kernel", "-addr", "192.0.2.1/24", "-c", "192.0.2.2"}, "-addr/-addr6 only apply to a zcnet stack of its own (-tap or -ring)"},
		{[]string{"perf", "-inproc", "-P", "0"}, "-P 0: want 1 to 128 streams"},
		{[]string{"perf", "-inproc", "-t", "0"}, "-t 0: want 1 to 86400 seconds"},
		{[]string{"perf", "-inproc", "-t", "3", "-n", "1M"}, "-t and -n exclude each other"},
		{[]string{"perf", "-inproc", "-l", "2M"}, "want 1 to 1048576 bytes (1M) for a TCP block"},
		{[]string{"perf", "-inproc", "-u", "-l", "70000"}, "want 16 to 65507 bytes for a UDP datagram"},
		{[]string{"perf", "-inproc", "-b", "fast"}, `-b "fast": want a bitrate in bits/s such as 100M`},
		{[]string{"perf", "-inproc", "-i", "10ms"}, "-i 10ms: want 0 (no progress lines) or 100ms to 60s"},
		{[]string{"perf", "-kernel", "-s", "-u"}, "-u is a client flag"},
		{[]string{"perf", "-kernel", "-c", "192.0.2.2", "-1"}, "-1 is a server flag"},
		{[]string{"perf", "-kernel", "-s", "-p", "70000"}, "-p 70000: want a port"},
		{[]string{"perf", "-tap", "zc0", "-s"}, "no address: give the stack one with -addr"},

		{[]string{"echo", "-inproc", "-size", "0"}, "-size 0: want 1 to 1048576 bytes"},
		{[]string{"echo", "-inproc", "-u", "-size", "4"}, "-size 4: want 8 to 65507 bytes for a UDP message"},
		{[]string{"echo", "-inproc", "-n", "0"}, "-n 0: want 1 to 100000000 round trips"},
		{[]string{"echo", "-inproc", "-timeout", "0s"}, "-timeout 0s: want 1ms to 1m"},
		{[]string{"echo", "-kernel", "-s", "-n", "5"}, "-n is a client flag"},
		{[]string{"echo", "-kernel"}, "run a server (-s) or a client (-c HOST)"},
		{[]string{"echo", "-inproc", "-gateway", "192.0.2.1"}, "-gateway/-route only apply"},
		{[]string{"echo", "-inproc", "-mtu", "100000"}, "-mtu 100000: want 68 to 65521"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// TestHelpAndSizes: the new commands have help with examples, and sizes
// parse as documented.
func TestHelpAndSizes(t *testing.T) {
	for _, args := range [][]string{{"perf", "-help"}, {"echo", "-h"}, {"help", "perf"}} {
		var out bytes.Buffer
		if code := run(args, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "Examples:") {
			t.Errorf("run(%q) = %d:\n%s", args, code, &out)
		}
	}
	for _, tc := range []struct {
		in   string
		base float64
		want int64
	}{
		{"65536", 1024, 65536}, {"64K", 1024, 64 << 10}, {"64KiB", 1000, 64 << 10}, {"1.5M", 1024, 3 << 19},
		{"100M", 1000, 100e6}, {"2.5g", 1000, 2.5e9}, {"1G", 1024, 1 << 30}, {"10mb", 1000, 10e6},
	} {
		if got, err := parseSize(tc.in, tc.base); err != nil || got != tc.want {
			t.Errorf("parseSize(%q, %v) = %d, %v; want %d", tc.in, tc.base, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "K", "-1", "5i", "1e300", "twelve"} {
		if _, err := parseSize(bad, 1024); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}
