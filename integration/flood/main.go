//go:build linux

// Command flood floods a server from the kernel side of its link with
// hping3 and prints what the server's memory and its new connections did:
// zcnet (a `netstackd serve` process on a TAP device), stock gVisor (a
// process of this command with gVisor's fdbased link and a gonet echo
// server on a plain TAP device) and the Linux kernel (an echo server process
// on a veth pair), each in private network namespaces made for the run.
//
// For each server and flood it: starts the server; samples its resident
// memory (RSS) for 3 s idle; runs `hping3 --flood ARGS` from the kernel side
// for -d seconds while sampling RSS every second and, from a client process
// of its own, opening fresh TCP connections that each echo 1 MiB (every byte
// compared); then samples RSS for 10 s more. The table gives the peak over
// idle, echoes per second during the flood, and RSS 10 s after over idle.
// For the kernel the RSS is the echo process's only: the kernel's own
// memory is not in it.
//
// Run as root (it makes namespaces and TAP devices); traffic stays inside
// them, on 192.0.2.0/24:
//
//	sudo go run ./integration/flood -d 60s
//	sudo go run ./integration/flood -d 15s -servers zcnet -floods syn,frag4
//
// Floods: syn, ack, rst (at the open echo port 7), frag4 (IPv4 fragments
// of TCP segments, 16 bytes each), udpfrag (3000-byte UDP datagrams in
// three IPv4 fragments), udpfraglimit (the same in hping3's 16-byte
// fragments: 188 per datagram, over the link's limit of 128), frag6 (IPv6
// fragments of UDP datagrams: socat sends 3000-byte datagrams as fast as
// it can and the kernel fragments them; zcnet and kernel only), udp (to the
// open port 7), udpclosed (to a closed port), payload (ACK segments with
// 1000 bytes at the listener).
//
// Stock gVisor here is built from gVisor's packages as a user would (the
// side-by-side benchmark, integration/bench, builds the same in its own
// process, but as a package main it cannot be imported).
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/zcnet/zcnet/integration/contenders"
	"github.com/zcnet/zcnet/integration/procstat"
)

const (
	kernelAddr = "192.0.2.1"
	serverAddr = "192.0.2.2"
	echoPort   = "7"
	echoSize   = 1 << 20
)

// The IPv6 addresses of the two sides, for the frag6 flood.
const (
	kernelAddr6 = "2001:db8::1"
	serverAddr6 = "2001:db8::2"
)

// floods maps a flood's name to hping3's arguments (after --flood).
var floods = []struct{ name, args string }{
	{"syn", "-S -p 7"},
	{"ack", "-A -p 7"},
	{"rst", "-R -p 7"},
	{"frag4", "-f -d 1400 -p 7"},
	{"udpfrag", "-2 -d 3000 -m 1400 -p 7"},
	{"udpfraglimit", "-2 -f -d 3000 -p 7"},
	{"frag6", ""}, // not hping3's (it has no IPv6): see floodCmd
	{"udp", "-2 -d 1000 -p 7"},
	{"udpclosed", "-2 -d 100 -p 9999"},
	{"payload", "-A -d 1000 -p 7"},
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "stock-serve":
			exit(stockServe(os.Args[2]))
		case "kernel-serve":
			exit(kernelServe())
		case "http-get":
			exit(httpGet(os.Args[2], os.Args[3]))
		case "echo-client":
			d, _ := time.ParseDuration(os.Args[2])
			n := 1
			if len(os.Args) > 3 {
				n, _ = strconv.Atoi(os.Args[3])
			}
			exit(echoClient(d, n))
		}
	}
	os.Exit(run(os.Args[1:]))
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// result is one row of the table.
type result struct {
	server, flood     string
	idle, peak, after int64 // RSS bytes
	echoes            int
	failed            int
	d                 time.Duration
	err               error
}

func run(args []string) int {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	dur := fs.Duration("d", 60*time.Second, "flood duration per run")
	servers := fs.String("servers", "zcnet,stock,kernel", "servers to flood: zcnet, stock, kernel")
	which := fs.String("floods", "", "floods to run (default all): "+floodNames())
	clients := fs.Int("clients", 16, "echo clients during the flood, each one connection at a time")
	fs.BoolVar(&diag, "diag", false, "zcnet: print, per run, the counters that moved during the flood (link drops by reason, the stack's TCP counters, the TAP's kernel-side drops), why echoes failed and how long their handshakes took, and save a CPU profile of the flood's middle and a heap profile near its end in the working directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "flood: needs root (network namespaces, TAP devices)")
		return 3
	}
	if _, err := exec.LookPath("hping3"); err != nil {
		fmt.Fprintln(os.Stderr, "flood: hping3 is not installed (apt-get install hping3)")
		return 3
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "zcnet-flood-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	nsd := filepath.Join(tmp, "netstackd")
	if out, err := exec.Command("go", "build", "-o", nsd, "github.com/zcnet/zcnet/cmd/netstackd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "flood: go build netstackd: %v\n%s", err, out)
		return 1
	}
	var rows []result
	for _, f := range floods {
		if *which != "" && !contains(strings.Split(*which, ","), f.name) {
			continue
		}
		for _, s := range strings.Split(*servers, ",") {
			fmt.Fprintf(os.Stderr, "flood: %s under %s for %v\n", s, f.name, *dur)
			r := runOne(s, f.name, f.args, *dur, *clients, self, nsd)
			if r.err != nil {
				fmt.Fprintf(os.Stderr, "flood: %s %s: %v\n", s, f.name, r.err)
			}
			rows = append(rows, r)
		}
	}
	print(os.Stdout, rows)
	return 0
}

func floodNames() string {
	var n []string
	for _, f := range floods {
		n = append(n, f.name)
	}
	return strings.Join(n, ",")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func print(w io.Writer, rows []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flood\tserver\tidle RSS MiB\tpeak over idle MiB\t1 MiB echoes/s during\tfailed echoes\tover idle 10 s after MiB\t")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t%s\terror: %v\t\t\t\t\t\n", r.flood, r.server, r.err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%.1f\t%d\t%.1f\t\n", r.flood, r.server, mib(r.idle), mib(r.peak-r.idle),
			float64(r.echoes)/r.d.Seconds(), r.failed, mib(r.after-r.idle))
	}
	tw.Flush()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

var seq atomic.Uint32

// diag is the -diag flag.
var diag bool

// metricsAddr is where a -diag run's netstackd serves /metrics, on its
// namespace's loopback.
const metricsAddr = "127.0.0.1:9477"

// runOne floods one server.
func runOne(server, flood, hpArgs string, d time.Duration, clients int, self, nsd string) (r result) {
	r = result{server: server, flood: flood, d: d}
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, seq.Add(1))
	srvNS, cliNS := "zcfs"+id, "zcfc"+id
	dev := "zft" + id
	for _, ns := range []string{srvNS, cliNS} {
		if err := sh("ip", "netns", "add", ns); err != nil {
			r.err = err
			return r
		}
		defer sh("ip", "netns", "del", ns)
		sh("ip", "-n", ns, "link", "set", "lo", "up")
	}
	// A TAP device lives in the namespace of the process that made it,
	// so for the TAP servers the kernel side (hping3, the echo client)
	// is that namespace, srvNS; the kernel server gets a veth pair, its
	// end in srvNS and the flooding side in cliNS.
	kernelNS := srvNS
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cmd *exec.Cmd
	switch server {
	case "zcnet":
		args := []string{"netns", "exec", srvNS, nsd, "serve", "-tap", dev, "-addr", serverAddr + "/24", "-addr6", serverAddr6 + "/64", "-services", "echo"}
		if diag {
			args = append(args, "-metrics", metricsAddr)
		}
		cmd = exec.CommandContext(ctx, "ip", args...)
	case "stock":
		if flood == "frag6" {
			r.err = fmt.Errorf("the stock server here has no IPv6 address")
			return r
		}
		cmd = exec.CommandContext(ctx, "ip", "netns", "exec", srvNS, self, "stock-serve", dev)
	case "kernel":
		kernelNS = cliNS
		if err := vethPair(cliNS, srvNS, dev); err != nil {
			r.err = err
			return r
		}
		cmd = exec.CommandContext(ctx, "ip", "netns", "exec", srvNS, self, "kernel-serve")
	default:
		r.err = fmt.Errorf("unknown server %q", server)
		return r
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		r.err = err
		return r
	}
	defer func() {
		cancel()
		cmd.Wait()
	}()
	if server != "kernel" {
		if err := waitFor(10*time.Second, func() bool { return sh("ip", "-n", srvNS, "link", "show", dev) == nil }); err != nil {
			r.err = fmt.Errorf("%s made no device %s: %s", server, dev, logs.String())
			return r
		}
		for _, c := range [][]string{{"addr", "add", kernelAddr + "/24", "dev", dev}, {"addr", "add", kernelAddr6 + "/64", "dev", dev, "nodad"}, {"link", "set", dev, "up"}} {
			if err := sh("ip", append([]string{"-n", srvNS}, c...)...); err != nil {
				r.err = err
				return r
			}
		}
	}
	pid := cmd.Process.Pid
	// Ready when an echo works.
	if err := waitFor(20*time.Second, func() bool {
		return exec.Command("ip", "netns", "exec", kernelNS, self, "echo-client", "0s").Run() == nil
	}); err != nil {
		r.err = fmt.Errorf("no echo from %s: %s", server, logs.String())
		return r
	}
	idle, err := sampleMax(pid, 3*time.Second)
	if err != nil {
		r.err = err
		return r
	}
	r.idle = idle
	var before counters
	dodiag := diag && server == "zcnet"
	if dodiag {
		memAfter("idle", self, srvNS, pid, fmt.Sprintf("flood-%s-%s-idle.heap", server, flood))
		before = snapshot(self, srvNS, dev)
	}
	fctx, fcancel := context.WithTimeout(ctx, d)
	defer fcancel()
	hp := exec.CommandContext(fctx, "ip", append([]string{"netns", "exec", kernelNS}, floodCmd(flood, hpArgs)...)...)
	if err := hp.Start(); err != nil {
		r.err = err
		return r
	}
	cl := exec.Command("ip", "netns", "exec", kernelNS, self, "echo-client", d.String(), strconv.Itoa(clients))
	var clOut bytes.Buffer
	cl.Stdout = &clOut
	if dodiag {
		cl.Stderr = os.Stderr
		cl.Env = append(os.Environ(), "ZCNET_FLOOD_DIAG=1")
	}
	if err := cl.Start(); err != nil {
		r.err = err
		return r
	}
	if dodiag {
		go profile(self, srvNS, fmt.Sprintf("flood-%s-%s.pprof", server, flood), d)
	}
	r.peak, err = sampleMax(pid, d)
	hp.Wait()
	cl.Wait()
	if dodiag {
		snapshot(self, srvNS, dev).printDiff(os.Stderr, before)
	}
	if err != nil {
		r.err = err
		return r
	}
	fmt.Sscanf(clOut.String(), "%d %d", &r.echoes, &r.failed)
	time.Sleep(10 * time.Second) // the figure is RSS 10 s after the flood, by definition
	r.after, r.err = procstat.RSS(pid)
	if dodiag {
		memAfter("after", self, srvNS, pid, fmt.Sprintf("flood-%s-%s-after.heap", server, flood))
		// What a collection now would leave: the live heap.
		memAfter("after+gc", self, srvNS, pid, fmt.Sprintf("flood-%s-%s-after-gc.heap?gc=1", server, flood))
	}
	return r
}

// sampleMax samples pid's RSS every second for d and returns the largest.
func sampleMax(pid int, d time.Duration) (int64, error) {
	end := time.Now().Add(d)
	var m int64
	for {
		v, err := procstat.RSS(pid)
		if err != nil {
			return 0, err
		}
		m = max(m, v)
		if !time.Now().Before(end) {
			return m, nil
		}
		time.Sleep(min(time.Second, time.Until(end)))
	}
}

func waitFor(d time.Duration, cond func() bool) error {
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			return errors.New("timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func sh(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// floodCmd returns the command line of a flood: hping3 with args, or for
// frag6 socat sending 3000-byte UDP datagrams to the echo port over IPv6,
// which the kernel cuts into fragments at the link's MTU (1500).
func floodCmd(flood, args string) []string {
	if flood == "frag6" {
		return []string{"socat", "-u", "-b", "3000", "OPEN:/dev/zero", "UDP6-SENDTO:[" + serverAddr6 + "]:" + echoPort}
	}
	return append(append([]string{"hping3", "--flood", "-q"}, strings.Fields(args)...), serverAddr)
}

// vethPair joins cliNS (the kernel side, 192.0.2.1) and srvNS (the
// kernel server, 192.0.2.2) with a veth pair.
func vethPair(cliNS, srvNS, dev string) error {
	peer := dev + "p"
	for _, c := range [][]string{
		{"ip", "link", "add", dev, "netns", cliNS, "type", "veth", "peer", "name", peer, "netns", srvNS},
		{"ip", "-n", cliNS, "addr", "add", kernelAddr + "/24", "dev", dev},
		{"ip", "-n", srvNS, "addr", "add", serverAddr + "/24", "dev", peer},
		{"ip", "-n", cliNS, "addr", "add", kernelAddr6 + "/64", "dev", dev, "nodad"},
		{"ip", "-n", srvNS, "addr", "add", serverAddr6 + "/64", "dev", peer, "nodad"},
		{"ip", "-n", cliNS, "link", "set", dev, "up"},
		{"ip", "-n", srvNS, "link", "set", peer, "up"},
	} {
		if err := sh(c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// echoClient runs in the kernel side's namespace: with d zero it does one
// echo and fails if it fails; otherwise it echoes on fresh connections, n
// at a time, for d and prints "successes failures" (an echo still running
// when d ends counts as neither). With ZCNET_FLOOD_DIAG set it also
// prints, to standard error, why echoes failed and how long their
// connects and whole echoes took.
func echoClient(d time.Duration, n int) error {
	data := make([]byte, echoSize)
	rand.Read(data)
	if d == 0 {
		return contenders.EchoOnce(net.JoinHostPort(serverAddr, echoPort), data, 5*time.Second)
	}
	end := time.Now().Add(d)
	type tally struct {
		ok, failed int
		errs       map[string]int
		dials, all []time.Duration
	}
	res := make(chan tally, n)
	for range n {
		go func() {
			t := tally{errs: map[string]int{}}
			for time.Now().Before(end) {
				start := time.Now()
				dial, err := timedEcho(data, min(10*time.Second, time.Until(end)))
				switch {
				case !time.Now().Before(end):
					// Cut off by the end of the flood (or
					// finished after it): neither.
				case err == nil:
					t.ok++
					t.dials = append(t.dials, dial)
					t.all = append(t.all, time.Since(start))
				default:
					t.failed++
					t.errs[errClass(err, dial)]++
				}
			}
			res <- t
		}()
	}
	sum := tally{errs: map[string]int{}}
	for range n {
		t := <-res
		sum.ok += t.ok
		sum.failed += t.failed
		for k, v := range t.errs {
			sum.errs[k] += v
		}
		sum.dials = append(sum.dials, t.dials...)
		sum.all = append(sum.all, t.all...)
	}
	fmt.Println(sum.ok, sum.failed)
	if os.Getenv("ZCNET_FLOOD_DIAG") != "" {
		fmt.Fprintf(os.Stderr, "flood: diag: echoes: %d ok, %d failed %v\n", sum.ok, sum.failed, sum.errs)
		fmt.Fprintf(os.Stderr, "flood: diag: connect time of good echoes: %s\n", quantiles(sum.dials))
		fmt.Fprintf(os.Stderr, "flood: diag: whole time of good echoes:   %s\n", quantiles(sum.all))
	}
	return nil
}

// errClass names an echo's failure for the -diag tally: where it failed
// and the error without addresses.
func errClass(err error, dial time.Duration) string {
	where := "connect"
	if dial > 0 {
		where = "echo"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return where + ": " + msg
}

// quantiles formats the median, 90th percentile and maximum of ds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[int(f*float64(len(ds)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("n=%d median %v p90 %v max %v", len(ds), q(0.5), q(0.9), q(1))
}

// timedEcho is contenders.EchoOnce to the echo port that also returns how
// long the connect took (zero if it failed), which -diag reports.
func timedEcho(data []byte, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(serverAddr, echoPort), timeout)
	if err != nil {
		return 0, err
	}
	dial := time.Since(start)
	defer c.Close()
	c.SetDeadline(start.Add(timeout))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		return dial, err
	}
	if err := <-errc; err != nil {
		return dial, err
	}
	if !bytes.Equal(got, data) {
		return dial, errors.New("echo differs")
	}
	return dial, nil
}

// kernelServe is the kernel's echo server: TCP and UDP port 7.
func kernelServe() error {
	ln, err := net.Listen("tcp", net.JoinHostPort(serverAddr, echoPort))
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", net.JoinHostPort(serverAddr, echoPort))
	if err != nil {
		return err
	}
	go contenders.EchoUDP(pc)
	return contenders.EchoTCP(ln)
}
