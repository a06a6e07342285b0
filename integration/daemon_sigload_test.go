package integration

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestDaemonSIGTERMUnderLoad: SIGTERM while hping3 floods the echo port
// with SYNs and 1000 kernel connections are open to the daemon's HTTP and
// echo services (what `wrk -c 2000` leaves open mid-run): the daemon exits
// 0 within the bound, logs its summary last, removes the device it made,
// and every held connection ends at once (a reset, or the device gone)
// rather than hanging.
func TestDaemonSIGTERMUnderLoad(t *testing.T) {
	need(t, "hping3")
	d := startDaemon(t, "-queues", "1")
	const conns = 1000
	held := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range conns {
		port := []string{"80", "7"}[i%2]
		var c net.Conn
		if err := d.ns.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", stack4+":"+port, 10*time.Second)
			return err
		}); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		held = append(held, c)
	}
	// A bounded flood: hping3 is killed after 10 s whatever happens.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flood := d.ns.Cmd(ctx, "hping3", "--flood", "-q", "-S", "-p", "7", stack4)
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	defer flood.Wait()
	defer cancel()
	// Wait until the flood runs: the kernel has put 2000 frames more into
	// the device's queue, or dropped them there with the queue full (a
	// race-built daemon on a loaded machine reads slowly).
	base := tapTxFrames(t, d)
	if !evchantest.Poll(10*time.Second, func() bool { return tapTxFrames(t, d) > base+2000 }) {
		t.Fatalf("the flood did not reach the device in 10 s:\n%s", d.log())
	}
	start := time.Now()
	if code := d.stopWith(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM under load, want 0:\n%s", code, d.log())
	}
	took := time.Since(start)
	t.Logf("exited %v after SIGTERM with %d connections open and a SYN flood running", took.Round(time.Millisecond), conns)
	log := d.log()
	noCrash(t, log)
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "msg=stopped") || !strings.Contains(last, "exit_status=0") {
		t.Errorf("the log does not end with the summary:\n%s", last)
	}
	deviceGone(t, d.ns, d.tap)
	// Every held connection ends promptly: a read returns (the reset the
	// daemon sent each on its way out), none waits out the deadline.
	deadline := time.Now().Add(3 * time.Second)
	hung := 0
	for _, c := range held {
		c.SetReadDeadline(deadline)
	}
	for _, c := range held {
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			hung++
		}
	}
	t.Logf("%d of %d held connections ended by the daemon's exit, %d still open 3 s later", conns-hung, conns, hung)
	if hung > 0 {
		t.Errorf("%d of %d held connections still open 3 s after the daemon exited", hung, conns)
	}
}

// tapTxFrames reads the frames the kernel has sent through d's device or
// dropped at its full queue.
func tapTxFrames(t *testing.T, d *daemon) uint64 {
	t.Helper()
	var sum uint64
	for _, f := range []string{"tx_packets", "tx_dropped"} {
		out, err := d.ns.Run(5*time.Second, "cat", "/sys/class/net/"+d.tap+"/statistics/"+f)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}
