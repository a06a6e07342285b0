package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDemoRunsAndVerifies(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"demo", "-duration", "1500ms", "-rounds", "200", "-size", "100"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errb)
	}
	o := out.String()
	for _, re := range []string{
		`echo: 200 round trips of 100 bytes over TCP to 192\.0\.2\.2:7, all verified: mean [0-9.]+[µm]?s, [0-9]+ round trips/s`,
		`echo: UDP datagram to 192\.0\.2\.2:7 came back intact`,
		`\[  1 s\] +[0-9.]+ MiB +[0-9.]+ Gbit/s`,
		`summary: 200 echo round trips \([0-9]+/s\); [0-9.]+ MiB streamed in [0-9.]+ s = [0-9.]+ Gbit/s, every byte received`,
	} {
		if !regexp.MustCompile(re).MatchString(o) {
			t.Errorf("output lacks %q:\n%s", re, o)
		}
	}
	if m := regexp.MustCompile(`streamed in [0-9.]+ s = ([0-9.]+) Gbit/s`).FindStringSubmatch(o); m == nil || m[1] == "0.00" {
		t.Errorf("no throughput measured:\n%s", o)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"demo", "-duration", "1ms"}, 2, "-duration 1ms: want 100ms to 1h"},
		{[]string{"demo", "-mtu", "100"}, 2, "-mtu 100: want 1280"},
		{[]string{"demo", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"serve"}, 2, "-tap is required"},
		{[]string{"serve", "-tap", "zc0"}, 2, "no address"},
		{[]string{"serve", "-tap", "a-name-that-is-too-long", "-addr", "192.0.2.2/24"}, 2, "1 to 15 bytes"},
		{[]string{"serve", "-tap", "zc0", "-addr", "2001:db8::2/64"}, 2, "use -addr6"},
		{[]string{"serve", "-tap", "zc0", "-addr", "192.0.2.2"}, 2, "not an address with a prefix length"},
		{[]string{"serve", "-tap", "zc0", "-addr", "192.0.2.2/24", "-offload", "maybe"}, 2, `-offload "maybe": want on or off`},
		{[]string{"serve", "-tap", "zc0", "-addr", "192.0.2.2/24", "-mtu", "9"}, 2, "-mtu 9: want 68"},
		{[]string{"serve", "-tap", "zc0", "-addr6", "2001:db8::2/64", "-mtu", "1000"}, 2, "IPv6 needs at least 1280"},
		{[]string{"serve", "-tap", "zc0", "-addr", "192.0.2.2/24", "-gateway6", "2001:db8::1"}, 2, "-gateway6 needs an address of its family"},
		{[]string{"serve", "-tap", "zc0", "-addr", "192.0.2.2/24", "-log-level", "loud"}, 2, "-log-level"},
		{[]string{"serve", "-tap", "zc0", "-addr", "192.0.2.2/24", "-queues", "-1"}, 2, "-queues -1"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}

func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"help", "serve"}, {"demo", "-help"}, {"serve", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Errorf("run(%q) = %d, stderr %q", args, code, errb.String())
		}
		if !strings.Contains(out.String(), "Examples:") {
			t.Errorf("run(%q): help without examples:\n%s", args, out.String())
		}
	}
}
