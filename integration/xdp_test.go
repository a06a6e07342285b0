package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/integration/nstest"
)

// TestServeXDP runs `netstackd serve -xdp` on one end of a veth pair
// between two namespaces, the kernel on the other: ping, a TCP echo with
// a hash check, UDP echo, the link's counters in the metrics, the host's
// own address on the interface still answered; SIGTERM detaches the
// program, and so does SIGKILL of a second daemon.
func TestServeXDP(t *testing.T) {
	needDaemon(t)
	zns, kns := nstest.New(t), nstest.New(t)
	if fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and no AF_XDP sockets: %v", err)
		}
		t.Skipf("skipping: no AF_XDP sockets here: %v", err)
	} else {
		unix.Close(fd)
	}
	zdev, kdev := nstest.UniqueName(t, "xz"), nstest.UniqueName(t, "xk")
	zns.MustRun("ip", "link", "add", zdev, "type", "veth", "peer", "name", kdev, "netns", kns.Name())
	zns.MustRun("ip", "addr", "add", "192.0.2.9/24", "dev", zdev) // the host's own address
	zns.MustRun("ip", "link", "set", zdev, "up")
	kns.MustRun("ip", "addr", "add", peer4+"/24", "dev", kdev)
	kns.MustRun("ip", "-6", "addr", "add", peer6+"/64", "dev", kdev, "nodad")
	// Complete checksums from the kernel peer, as from a wire (package
	// stack/link/xdp's doc says why).
	kns.MustRun("ethtool", "-K", kdev, "tx", "off")
	kns.MustRun("ip", "link", "set", kdev, "up")

	start := func(extra ...string) (*exec.Cmd, *lockedLog, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		args := []string{netstackd, "serve", "-xdp", zdev, "-addr", stack4 + "/24", "-addr6", stack6 + "/64",
			"-metrics", "127.0.0.1:9109", "-services", "echo,http"}
		cmd := zns.Cmd(ctx, append(args, extra...)...)
		cmd.Cancel = func() error { return cmd.Process.Kill() }
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logs := &lockedLog{}
		ready := make(chan struct{})
		exited := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			closed := false
			for sc.Scan() {
				logs.add(sc.Text())
				if !closed && strings.Contains(sc.Text(), "service=http") {
					close(ready)
					closed = true
				}
			}
			exited <- cmd.Wait()
		}()
		select {
		case <-ready:
		case err := <-exited:
			t.Fatalf("netstackd exited: %v\n%s", err, logs.String())
		case <-time.After(30 * time.Second):
			t.Fatalf("netstackd not ready after 30 s:\n%s", logs.String())
		}
		return cmd, logs, exited
	}
	detached := func(after string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); ; {
			show := zns.MustRun("ip", "-d", "link", "show", "dev", zdev)
			if !strings.Contains(show, "prog/xdp") {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("XDP program still attached 10 s after %s:\n%s", after, show)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	cmd, logs, exited := start()
	if !strings.Contains(logs.String(), "program=") || !strings.Contains(logs.String(), "socket=") {
		t.Fatalf("the attach log says neither program mode nor socket mode:\n%s", logs.String())
	}
	for _, dst := range []string{stack4, stack6, "192.0.2.9"} {
		if out, err := kns.Run(30*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "5", dst); err != nil {
			t.Fatalf("ping %s: %v\n%s", dst, err, out)
		}
	}
	// TCP echo with a hash check, from the kernel peer.
	if err := kns.Do(func() error { return echoHash(stack4+":7", 4<<20) }); err != nil {
		t.Fatalf("TCP echo: %v\n%s", err, logs.String())
	}
	if err := kns.Do(func() error { return udpEchoes("["+stack6+"]:7", 50) }); err != nil {
		t.Fatalf("UDP echo: %v", err)
	}
	out, err := zns.Run(10*time.Second, "curl", "-sf", "http://127.0.0.1:9109/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for _, m := range []string{"zcnet_link_xdp_native", "zcnet_link_xdp_zerocopy", "zcnet_link_xdp_umem_frames", "zcnet_link_xdp_tx_kicks_total"} {
		if !strings.Contains(out, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	if rx := metricValue(out, `zcnet_link_rx_frames_total{nic="`+zdev+`"}`); rx < 1000 {
		t.Errorf("zcnet_link_rx_frames_total %v, want the echo's frames", rx)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("netstackd after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("netstackd still running 20 s after SIGTERM")
	}
	detached("SIGTERM")

	// A second daemon, completing the partial checksums of a peer that
	// keeps its checksum offload on; then killed: the kernel detaches the
	// program itself.
	kns.MustRun("ethtool", "-K", kdev, "tx", "on")
	cmd, logs, exited = start("-xdp-partial-csum")
	if show := zns.MustRun("ip", "-d", "link", "show", "dev", zdev); !strings.Contains(show, "prog/xdp") {
		t.Fatalf("no program attached:\n%s", show)
	}
	if err := kns.Do(func() error { return echoHash(stack4+":7", 1<<20) }); err != nil {
		t.Fatalf("TCP echo with partial checksums: %v\n%s", err, logs.String())
	}
	out, err = zns.Run(10*time.Second, "curl", "-sf", "http://127.0.0.1:9109/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	if v := metricValue(out, `zcnet_link_xdp_rx_csum_completed_total{nic="`+zdev+`"}`); v < 100 {
		t.Errorf("zcnet_link_xdp_rx_csum_completed_total %v, want the echo's segments", v)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	detached("SIGKILL")
}

// echoHash sends n bytes to an echo server and checks the hash of what
// comes back.
func echoHash(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	want := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", got, err)
	}
	if got != int64(n) || [32]byte(h.Sum(nil)) != want {
		return fmt.Errorf("echoed %d bytes of %d, hash match %v", got, n, [32]byte(h.Sum(nil)) == want)
	}
	return nil
}

// udpEchoes sends count datagrams to a UDP echo server, each awaited;
// at most a tenth may be lost.
func udpEchoes(addr string, count int) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	b := make([]byte, 2048)
	got := 0
	for i := 0; i < count; i++ {
		msg := fmt.Appendf(nil, "datagram %d", i)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(b)
		if err != nil {
			continue
		}
		if string(b[:n]) != string(msg) {
			return fmt.Errorf("datagram %d echoed as %q", i, b[:n])
		}
		got++
	}
	if got < count*9/10 {
		return fmt.Errorf("%d of %d datagrams echoed", got, count)
	}
	return nil
}

// metricValue finds the sample named name (with its labels) in a
// Prometheus text exposition; -1 if absent.
func metricValue(expo, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindStringSubmatch(expo)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// lockedLog collects a process's log lines for a test to read while they
// come.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
