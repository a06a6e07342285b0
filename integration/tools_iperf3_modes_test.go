package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Stock iperf3 against netstackd serve's perf service in the modes the
// interop matrix (tools_perf_test.go) leaves out: --bidir, a second client
// while a test runs, a client that sends garbage, and a client interrupted
// mid-test. After each, the next test must run.

// iperfBidirJSON is the part of iperf3's --bidir JSON report the test
// reads: each direction's sums as the client printed them.
type iperfBidirJSON struct {
	End struct {
		SumSent            iperfSum `json:"sum_sent"`
		SumReceived        iperfSum `json:"sum_received"`
		SumSentReverse     iperfSum `json:"sum_sent_bidir_reverse"`
		SumReceivedReverse iperfSum `json:"sum_received_bidir_reverse"`
	} `json:"end"`
	Error string `json:"error"`
}

// startIperf3 starts stock iperf3 with args in the daemon's namespace and
// waits until its streams are connected (its "connected to" line); wait
// returns its exit error and output.
func startIperf3(t *testing.T, d *daemon, args ...string) (cmd *exec.Cmd, wait func() (string, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd = d.ns.Cmd(ctx, append([]string{"iperf3", "-c", stack4, "--forceflush"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	var all strings.Builder
	connected := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "connected to") {
				once = true
				close(connected)
			}
		}
	}()
	wait = func() (string, error) {
		defer cancel()
		<-copied
		err := cmd.Wait()
		return all.String(), err
	}
	select {
	case <-connected:
	case <-copied:
		s, err := wait()
		t.Fatalf("iperf3 %q ended before connecting: %v\n%s\n%s", args, err, s, d.log())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		s, _ := wait()
		t.Fatalf("iperf3 %q not connected after 30 s:\n%s\n%s", args, s, d.log())
	}
	return cmd, wait
}

// waitLogCount waits up to limit for the daemon's log to hold s n times
// (the daemon writes a test's line before it tells the client the results,
// but the test reads the log from a pipe, which may lag) and returns how
// many times it does.
func (d *daemon) waitLogCount(s string, n int, limit time.Duration) int {
	end := time.Now().Add(limit)
	for {
		c := strings.Count(d.log(), s)
		if c >= n || time.Now().After(end) {
			return c
		}
		time.Sleep(20 * time.Millisecond) // polling the log, bounded by limit
	}
}

// iperf3OK runs a short test and fails t unless it succeeds: the server is
// free again.
func iperf3OK(t *testing.T, d *daemon, what string) {
	t.Helper()
	if out, err := d.run(t, 60*time.Second, nil, "iperf3", "-c", stack4, "-t", "1", "-b", "20M", "--connect-timeout", "10000"); err != nil {
		t.Fatalf("a test after %s: %v\n%s\n%s", what, err, out, d.log())
	}
}

func TestToolsStockIperf3Modes(t *testing.T) {
	need(t, "iperf3")
	d := startDaemon(t, "-queues", "1")

	// --bidir: each direction moves data, counted by both of its ends.
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"bidir tcp -P 2", []string{"-t", "2", "-b", "20M", "-P", "2"}},
		{"bidir udp -P 2", []string{"-t", "2", "-u", "-b", "5M", "-P", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"iperf3", "-c", stack4, "--bidir", "--json", "--connect-timeout", "10000"}, tc.args...)
			out, err := d.run(t, 60*time.Second, nil, args...)
			if err != nil {
				t.Fatalf("%v\n%s\n%s", err, out, d.log())
			}
			var j iperfBidirJSON
			if err := json.Unmarshal(out, &j); err != nil || j.Error != "" {
				t.Fatalf("iperf3 --bidir: %v %s\n%s", err, j.Error, out)
			}
			counted(t, "client to server", j.End.SumSent.Bytes, j.End.SumReceived.Bytes)
			counted(t, "server to client", j.End.SumSentReverse.Bytes, j.End.SumReceivedReverse.Bytes)
		})
	}
	if n := d.waitLogCount("bidir=true", 2, 10*time.Second); n != 2 {
		t.Errorf("the daemon logged %d bidirectional tests, want 2:\n%s", n, d.log())
	}

	// A second client while a test runs is refused as stock iperf3's
	// server refuses it (after waiting up to 2 s for the test to end);
	// the first test completes.
	t.Run("busy", func(t *testing.T) {
		_, wait := startIperf3(t, d, "-t", "6", "-b", "20M")
		out, err := d.run(t, 30*time.Second, nil, "iperf3", "-c", stack4, "-t", "1")
		if err == nil || !strings.Contains(string(out)+err.Error(), "the server is busy") {
			t.Errorf("a second client during a test: %v, want the server is busy\n%s", err, out)
		}
		if s, err := wait(); err != nil {
			t.Errorf("the first client: %v\n%s", err, s)
		}
	})

	// Garbage on the control connection, and a connection closed after a
	// few bytes: each is refused or dropped, and frees the server.
	t.Run("garbage", func(t *testing.T) {
		for _, junk := range [][]byte{
			[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("junk", 20)),
			[]byte("abc"),
			append([]byte(strings.Repeat("a", 36)+"\x00"), 0xff, 0xff, 0xff, 0xff),
		} {
			var c net.Conn
			if err := d.ns.Do(func() (err error) {
				c, err = net.DialTimeout("tcp", stack4+":5201", 10*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(junk)
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c) // the server answers, then closes
			c.Close()
		}
		iperf3OK(t, d, "garbage")
	})

	// A client interrupted (Ctrl-C) in the middle of a test, each way:
	// the server ends the test and takes the next one.
	for _, args := range [][]string{{"-t", "30", "-b", "20M"}, {"-t", "30", "-b", "20M", "-R"}, {"-t", "30", "-u", "-b", "5M"}} {
		t.Run("interrupted "+strings.Join(args, " "), func(t *testing.T) {
			cmd, wait := startIperf3(t, d, append(args, "-i", "0.2")...)
			cmd.Process.Signal(syscall.SIGINT)
			if out, err := wait(); err == nil {
				t.Errorf("iperf3 after SIGINT exited 0:\n%s", out)
			}
			iperf3OK(t, d, "an interrupted client")
		})
	}
	if d.waitLogCount("perf test ended by the client", 3, 10*time.Second) < 3 {
		t.Errorf("the daemon did not log the interrupted tests:\n%s", d.log())
	}
	noCrash(t, d.log())
}
