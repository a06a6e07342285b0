//go:build linux

package xdp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/stack/link/linktest"
)

// BenchmarkSideBySide measures, in one run, netstackd serving on an AF_XDP
// link, netstackd serving on a TAP, and the kernel's own sockets on the
// same veth as the AF_XDP link, each server in its own process and every
// load generator (this test binary re-executed) in processes of its own:
//
//   - udp64: 64-byte UDP datagrams received per second by the discard
//     service (zero-copy sockets; the kernel: a plain Go UDP socket reading
//     one datagram per call), offered by udpSenders sender processes for
//     measureFor; and the server's CPU time per datagram received;
//   - rr: 1-byte TCP round trips per second to the echo service (kernel:
//     a Go echo server);
//   - up/down: TCP bulk kernel→server and server→kernel with stock iperf3
//     against the perf service (kernel: iperf3 -s), Gbit/s.
//
// Contenders alternate within each of rounds rounds; medians are
// reported. It needs root and skips without it:
//
//	go test -run '^$' -bench SideBySide -benchtime 1x ./stack/link/xdp/
func BenchmarkSideBySide(b *testing.B) {
	for i := 0; i < b.N; i++ {
		sideBySide(b)
	}
}

const (
	rounds     = 3
	measureFor = 3 * time.Second
	udpSenders = 2
)

type contender struct {
	name    string
	ns      *nstest.NS // where its load runs
	addr    string     // its server's address
	pid     func() int // the server process, for CPU time
	metrics func() (string, error)
	kernel  *kernelServer
}

func sideBySide(b *testing.B) {
	nstest.RequireRoot(b)
	for _, tool := range []string{"iperf3", "ethtool", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("skipping: %s not installed", tool)
		}
	}
	bin := filepath.Join(b.TempDir(), "netstackd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/zcnet/zcnet/cmd/netstackd").CombinedOutput(); err != nil {
		b.Fatalf("go build netstackd: %v\n%s", err, out)
	}
	// AF_XDP: netstackd in zns on xz, the load in kns on xk; the kernel's
	// own server on 192.0.2.9, on the same xz, with the program attached.
	zns, kns := nstest.New(b), nstest.New(b)
	zdev, kdev := nstest.UniqueName(b, "xz"), nstest.UniqueName(b, "xk")
	zns.MustRun("ip", "link", "add", zdev, "type", "veth", "peer", "name", kdev, "netns", kns.Name())
	zns.MustRun("ip", "addr", "add", hostAddr4+"/24", "dev", zdev)
	zns.MustRun("ip", "link", "set", zdev, "up")
	kns.MustRun("ip", "addr", "add", kernelAddr4+"/24", "dev", kdev)
	kns.MustRun("ethtool", "-K", kdev, "tx", "off")
	kns.MustRun("ip", "link", "set", kdev, "up")
	xdpd := startDaemon(b, zns, bin, "-xdp", zdev, "-addr", stackAddr4+"/24", "-metrics", "127.0.0.1:9109")
	b.Logf("AF_XDP: %s", xdpd.attachLine())
	// TAP: netstackd in tns on a TAP whose kernel side is in tns too.
	tns := nstest.New(b)
	tdev := nstest.UniqueName(b, "zt")
	tapd := startDaemon(b, tns, bin, "-tap", tdev, "-mtu", "1500", "-addr", "198.51.100.2/24", "-metrics", "127.0.0.1:9109")
	tns.MustRun("ip", "addr", "add", "198.51.100.1/24", "dev", tdev)
	tns.MustRun("ip", "link", "set", tdev, "up")
	ks := startKernelServer(b, zns)

	cs := []*contender{
		{name: "af_xdp", ns: kns, addr: stackAddr4, pid: xdpd.pid, metrics: xdpd.scrape},
		{name: "tap", ns: tns, addr: "198.51.100.2", pid: tapd.pid, metrics: tapd.scrape},
		{name: "kernel", ns: kns, addr: hostAddr4, pid: ks.pid, kernel: ks},
	}
	res := map[string]map[string][]float64{}
	add := func(c, fig string, v float64) {
		if res[c] == nil {
			res[c] = map[string][]float64{}
		}
		res[c][fig] = append(res[c][fig], v)
	}
	for r := 0; r < rounds; r++ {
		for k := range cs {
			c := cs[(k+r)%len(cs)]
			rate, cpu, offered := measureUDP(b, c)
			add(c.name, "udp64_rx_per_s", rate)
			add(c.name, "udp64_offered_per_s", offered)
			add(c.name, "server_cpu_us_per_dgram", cpu)
			add(c.name, "rr_per_s", measureRR(b, c))
			add(c.name, "up_gbps", iperf(b, c, false))
			add(c.name, "down_gbps", iperf(b, c, true))
		}
	}
	figs := []string{"udp64_rx_per_s", "udp64_offered_per_s", "server_cpu_us_per_dgram", "rr_per_s", "up_gbps", "down_gbps"}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-26s", "figure (median of 3)")
	for _, c := range cs {
		fmt.Fprintf(&sb, "%14s", c.name)
	}
	for _, f := range figs {
		fmt.Fprintf(&sb, "\n%-26s", f)
		for _, c := range cs {
			fmt.Fprintf(&sb, "%14.3f", median(res[c.name][f]))
		}
	}
	fmt.Fprintf(&sb, "\nall runs: %v", res)
	fmt.Println(sb.String())
	for name, d := range map[string]*daemonProc{"af_xdp": xdpd, "tap": tapd} {
		out, err := d.scrape()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasSuffix(line, " 0") {
				continue
			}
			for _, p := range []string{"zcnet_link_xdp_", "zcnet_link_rx_drops_total", "zcnet_link_tx_drops_total", "zcnet_udp_socket_drops_total", "zcnet_nic_rx_packets_total"} {
				if strings.HasPrefix(line, p) {
					fmt.Println(name + ": " + line)
				}
			}
		}
	}
	b.ReportMetric(median(res["af_xdp"]["udp64_rx_per_s"]), "xdp_udp64/s")
	b.ReportMetric(median(res["tap"]["udp64_rx_per_s"]), "tap_udp64/s")
	b.ReportMetric(median(res["kernel"]["udp64_rx_per_s"]), "kernel_udp64/s")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// daemonProc is a netstackd serve process.
type daemonProc struct {
	cmd  *exec.Cmd
	ns   *nstest.NS
	mu   sync.Mutex
	logs strings.Builder
}

func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

func (d *daemonProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

func (d *daemonProc) attachLine() string {
	for _, l := range strings.Split(d.log(), "\n") {
		if strings.Contains(l, "msg=attached") {
			return l
		}
	}
	return ""
}

func (d *daemonProc) scrape() (string, error) {
	return d.ns.Run(10*time.Second, "curl", "-sf", "http://127.0.0.1:9109/metrics")
}

func startDaemon(b *testing.B, ns *nstest.NS, bin string, args ...string) *daemonProc {
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemonProc{ns: ns}
	d.cmd = ns.Cmd(ctx, append([]string{bin, "serve", "-services", "echo,discard,perf,http", "-log-level", "info"}, args...)...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		closed := false
		for sc.Scan() {
			d.mu.Lock()
			d.logs.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if !closed && strings.Contains(sc.Text(), "service=http") {
				close(ready)
				closed = true
			}
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = d.cmd.Wait()
	})
	select {
	case <-ready:
	case <-done:
		b.Fatalf("netstackd exited:\n%s", d.log())
	case <-time.After(30 * time.Second):
		b.Fatalf("netstackd not ready:\n%s", d.log())
	}
	return d
}

// kernelServer is the test binary as a kernel-socket server in zns:
// UDP discard on :9 counting datagrams, TCP echo on :7, and iperf3 -s.
type kernelServer struct {
	cmd    *exec.Cmd
	iperf  *exec.Cmd
	count  func() (uint64, error)
	ns     *nstest.NS
	stdin  *bufio.Writer
	stdout *bufio.Reader
	mu     sync.Mutex
}

func (k *kernelServer) pid() int { return k.cmd.Process.Pid }

// received asks the server how many datagrams it has counted.
func (k *kernelServer) received() (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := k.stdin.WriteString("count\n"); err != nil {
		return 0, err
	}
	if err := k.stdin.Flush(); err != nil {
		return 0, err
	}
	line, err := k.stdout.ReadString('\n')
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(line), 10, 64)
}

func startKernelServer(b *testing.B, ns *nstest.NS) *kernelServer {
	ctx, cancel := context.WithCancel(context.Background())
	k := &kernelServer{ns: ns}
	k.cmd = ns.Cmd(ctx, os.Args[0], "-test.run=^$", hostAddr4, "0s")
	k.cmd.Env = append(os.Environ(), helperEnv+"=kernel-server")
	in, err := k.cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := k.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := k.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	k.stdin, k.stdout = bufio.NewWriter(in), bufio.NewReader(out)
	if line, err := k.stdout.ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready") {
		b.Fatalf("kernel server: %q %v", line, err)
	}
	k.iperf = ns.Cmd(ctx, "iperf3", "-s", "-B", hostAddr4)
	if err := k.iperf.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		_ = k.cmd.Wait()
		_ = k.iperf.Wait()
	})
	return k
}

// received returns the datagrams the contender's server has counted.
func (c *contender) received() (uint64, error) {
	if c.kernel != nil {
		return c.kernel.received()
	}
	out, err := c.metrics()
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^zcnet_service_datagrams_total\{service="discard"\} (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no discard counter in the metrics")
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return uint64(v), err
}

// cpuTicks is the process's user+system time in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return u + st, nil
}

// measureUDP runs the senders for measureFor and returns datagrams the
// server received per second, its CPU µs per datagram, and datagrams
// offered per second.
func measureUDP(b *testing.B, c *contender) (rate, cpuPer, offered float64) {
	ctx, cancel := context.WithTimeout(context.Background(), measureFor+20*time.Second)
	defer cancel()
	var cmds []*exec.Cmd
	var outs []*bufio.Reader
	for i := 0; i < udpSenders; i++ {
		cmd := c.ns.Cmd(ctx, os.Args[0], "-test.run=^$", c.addr+":9", measureFor.String())
		cmd.Env = append(os.Environ(), helperEnv+"=udp-send")
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, bufio.NewReader(out))
	}
	// The senders say "go" when their sockets are up; the window starts
	// after every one did.
	for _, o := range outs {
		if l, err := o.ReadString('\n'); err != nil || !strings.HasPrefix(l, "go") {
			b.Fatalf("sender: %q %v", l, err)
		}
	}
	r0, err := c.received()
	if err != nil {
		b.Fatal(err)
	}
	t0, _ := cpuTicks(c.pid())
	start := time.Now()
	var sent uint64
	for _, o := range outs {
		l, err := o.ReadString('\n')
		if err != nil {
			b.Fatalf("sender: %v", err)
		}
		n, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(l, "sent ")), 10, 64)
		sent += n
	}
	el := time.Since(start)
	r1, err := c.received()
	if err != nil {
		b.Fatal(err)
	}
	t1, _ := cpuTicks(c.pid())
	for _, cmd := range cmds {
		_ = cmd.Wait()
	}
	got := float64(r1 - r0)
	rate = got / el.Seconds()
	if got > 0 {
		cpuPer = float64(t1-t0) * 1e4 / got // ticks are 10 ms: µs per datagram
	}
	return rate, cpuPer, float64(sent) / measureFor.Seconds()
}

// measureRR runs one process doing 1-byte round trips for measureFor.
func measureRR(b *testing.B, c *contender) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), measureFor+20*time.Second)
	defer cancel()
	cmd := c.ns.Cmd(ctx, os.Args[0], "-test.run=^$", c.addr+":7", measureFor.String())
	cmd.Env = append(os.Environ(), helperEnv+"=rr")
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("rr: %v %s", err, out)
	}
	v, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	return v
}

// iperf runs stock iperf3 against the contender for measureFor; reverse
// is server → kernel.
func iperf(b *testing.B, c *contender, reverse bool) float64 {
	args := []string{"iperf3", "-c", c.addr, "-t", strconv.Itoa(int(measureFor.Seconds())), "-f", "g"}
	if reverse {
		args = append(args, "-R")
	}
	out, err := c.ns.Run(measureFor+30*time.Second, args...)
	if err != nil {
		b.Logf("iperf3 %s %v: %v", c.name, reverse, err)
		return 0
	}
	m := regexp.MustCompile(`([\d.]+) Gbits/sec\s+receiver`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// runHelper is a load process: args are its address and duration.
func runHelper(mode string, args []string) int {
	addr := args[0]
	d, _ := time.ParseDuration(args[1])
	switch mode {
	case "udp-send":
		c, err := net.Dial("udp", addr)
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("go")
		msg := make([]byte, 64)
		var n uint64
		for end := time.Now().Add(d); ; n++ {
			if n&1023 == 0 && time.Now().After(end) {
				break
			}
			if _, err := c.Write(msg); err != nil {
				n-- // refused (ICMP) or no buffer: not sent
			}
		}
		fmt.Printf("sent %d\n", n)
		return 0
	case "rr":
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fmt.Println(0)
			return 1
		}
		_ = c.SetDeadline(time.Now().Add(d + 10*time.Second))
		b := []byte{1}
		n := 0
		start := time.Now()
		for end := start.Add(d); time.Now().Before(end); n++ {
			if _, err := c.Write(b); err != nil {
				break
			}
			if _, err := c.Read(b); err != nil {
				break
			}
		}
		fmt.Printf("%.0f\n", float64(n)/time.Since(start).Seconds())
		return 0
	case "kernel-server":
		return kernelServe(addr)
	}
	return 2
}

// kernelServe serves UDP discard (counting) on :9 and TCP echo on :7 of
// addr with the kernel's sockets; "count" on stdin prints the count.
func kernelServe(addr string) int {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, "9"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "7"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	var mu sync.Mutex
	var count uint64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			count++
			mu.Unlock()
		}
	}()
	go linktest.ServeConns(ln, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		mu.Lock()
		n := count
		mu.Unlock()
		fmt.Println(n)
	}
	return 0
}
