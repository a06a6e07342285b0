package main

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the test binary as netstackd when the demo re-executes it
// as its child (os.Executable is the test binary under go test).
func TestMain(m *testing.M) {
	if os.Getenv(demoChildEnv) != "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

// TestDemoRunsAndVerifies runs the demo (its server in a child process,
// this test binary re-executed) and checks every line it promises, and
// that its temporary directory is gone afterwards.
func TestDemoRunsAndVerifies(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errb bytes.Buffer
	code := run([]string{"demo", "-duration", "1500ms", "-rounds", "200", "-size", "100"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errb)
	}
	o := out.String()
	for _, re := range []string{
		`zcnet demo: two gVisor stacks in two processes, 192\.0\.2\.1 \(pid [0-9]+\) <-> 192\.0\.2\.2 \(child, pid [0-9]+\) over a shared-memory ring, MTU 1500`,
		`echo: 200 round trips of 100 bytes over TCP to 192\.0\.2\.2:7, all verified: mean [0-9.]+[µm]?s, [0-9]+ round trips/s`,
		`echo: UDP datagram to 192\.0\.2\.2:7 came back intact`,
		`\[  1 s\] +[0-9.]+ MiB +[0-9.]+ Gbit/s`,
		// The stream's window fits the ring's frames (demoRcvBuf): none is
		// dropped, even with the child descheduled on a loaded machine.
		`link: 0 frames to the child dropped \(no free ring frame\), [0-9]+ TCP retransmission timeouts`,
		`summary: 200 echo round trips \([0-9]+/s\); [0-9.]+ MiB streamed in [0-9.]+ s = [0-9.]+ Gbit/s, every byte received`,
	} {
		if !regexp.MustCompile(re).MatchString(o) {
			t.Errorf("output lacks %q:\n%s", re, o)
		}
	}
	if m := regexp.MustCompile(`streamed in [0-9.]+ s = ([0-9.]+) Gbit/s`).FindStringSubmatch(o); m == nil || m[1] == "0.00" {
		t.Errorf("no throughput measured:\n%s", o)
	}
	m := regexp.MustCompile(`\(pid ([0-9]+)\) <-> .*\(child, pid ([0-9]+)\)`).FindStringSubmatch(o)
	if m == nil || m[1] == m[2] || m[1] != strconv.Itoa(os.Getpid()) {
		t.Errorf("the demo's stacks are not in this process and a child: %q", m)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("temporary files left behind: %v %v", left, err)
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
		{[]string{"serve"}, 2, "-tap or -ring is required"},
		{[]string{"serve", "-ring", "/tmp/zc.sock"}, 2, "no address"},
		{[]string{"serve", "-tap", "zc0", "-ring", "/tmp/zc.sock", "-addr", "192.0.2.2/24"}, 2, "-tap and -ring: give one"},
		{[]string{"serve", "-ring", "/" + strings.Repeat("x", 120), "-addr", "192.0.2.2/24"}, 2, "at most 107 bytes"},
		{[]string{"ring-peer", "-addr", "192.0.2.1/24"}, 2, "-ring is required"},
		{[]string{"ring-peer", "-ring", "/tmp/zc.sock", "-tap", "zc0", "-addr", "192.0.2.1/24"}, 2, "leave -tap out"},
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
		{[]string{"perf", "-c", "192.0.2.2", "-ring", "/tmp/zc.sock"}, 2, "no address: give the stack on the ring one with -addr"},
		{[]string{"echo", "-c", "192.0.2.2", "-ring", "/tmp/zc.sock", "-inproc"}, 2, "more than one given"},
		{[]string{"perf", "-inproc", "-R", "-bidir"}, 2, "-R and -bidir exclude each other"},
		{[]string{"perf", "-s", "-kernel", "-bidir"}, 2, "-bidir is a client flag"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}

// TestBadFlagIsShort: a mistyped flag gets its error and one line saying
// where the help is, on stderr, and nothing on stdout; not every flag's
// description with the error above them.
func TestBadFlagIsShort(t *testing.T) {
	for _, args := range [][]string{{"serve", "-bogus"}, {"serve", "-mtu", "x"}, {"perf", "-P", "many"}, {"demo", "-nope"}, {"echo", "-bogus"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
		if out.Len() != 0 {
			t.Errorf("run(%q) wrote to stdout:\n%s", args, out.String())
		}
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		if len(lines) > 3 || !strings.Contains(errb.String(), "-help' for usage") {
			t.Errorf("run(%q): stderr is %d lines, want the error and where the help is:\n%s", args, len(lines), errb.String())
		}
	}
}

func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"help", "serve"}, {"demo", "-help"}, {"serve", "-h"}, {"ring-peer", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Errorf("run(%q) = %d, stderr %q", args, code, errb.String())
		}
		if !strings.Contains(out.String(), "Examples:") {
			t.Errorf("run(%q): help without examples:\n%s", args, out.String())
		}
	}
}
