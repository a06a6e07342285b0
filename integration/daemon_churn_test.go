package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestDaemonConnectionChurn: thousands of short-lived TCP connections from
// the kernel side, one after another, 32 at a time, both ways of ending
// them:
//
//   - the client closes first (TIME-WAIT in the kernel): connect to echo,
//     one byte each way, close;
//   - the daemon closes first (TIME-WAIT in the stack): an HTTP/1.1 GET
//     of /status.json with "Connection: close", read to the end.
//
// Every connection must be served, and afterwards the daemon must be back
// where it started: no connection established, no pool buffer held, its
// goroutines and file descriptors as before, and every accept counted.
func TestDaemonConnectionChurn(t *testing.T) {
	need(t, "curl")
	const metrics = "127.0.0.1:9100"
	d := startDaemon(t, "-metrics", metrics)
	n := 10000
	if raceEnabled {
		n = 2000 // the race-built daemon serves about a tenth as fast
	}
	scrape := func() string {
		t.Helper()
		out, err := d.ns.Run(10*time.Second, "curl", "-sf", "http://"+metrics+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := scrape()
	opened := metricValue(before, "zcnet_stack_tcp_passive_connection_openings_total")

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		one  func(net.Conn, int) error
		port string
	}{
		{"client closes first", echoOneByte, "7"},
		{"daemon closes first", getClose, "80"},
	} {
		start := time.Now()
		served, err := churn(ctx, d, stack4+":"+tc.port, n, 32, tc.one)
		t.Logf("%s: %d of %d connections served in %v", tc.name, served, n, time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("%s: %d of %d served, then: %v", tc.name, served, n, err)
		}
	}

	// Back to idle: the bounds are what an idle daemon has, read again
	// until they hold (TIME-WAIT endpoints are not established ones).
	var after string
	settled := evchantest.Poll(20*time.Second, func() bool {
		after = scrape()
		return metricValue(after, "zcnet_stack_tcp_current_established") == 0 &&
			metricValue(after, "zcnet_pool_slots_in_use") == 0 &&
			metricValue(after, "go_goroutines") <= metricValue(before, "go_goroutines")+2 &&
			metricValue(after, "process_open_fds") <= metricValue(before, "process_open_fds")
	})
	for _, m := range []string{"zcnet_stack_tcp_current_established", "zcnet_stack_tcp_current_connected",
		"zcnet_pool_slots_in_use", "go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
		t.Logf("%s: %v before, %v after", m, metricValue(before, m), metricValue(after, m))
	}
	if !settled {
		t.Errorf("daemon not back to idle 20 s after the churn (see the figures above)")
	}
	if got := metricValue(after, "zcnet_stack_tcp_passive_connection_openings_total") - opened; got < float64(2*n) {
		t.Errorf("%v passive openings counted for %d connections", got, 2*n)
	}
	echoThrough(t, d)
}

// churn makes n connections to addr from d's namespace, par at a time,
// each handed to one, and returns how many one served before the first
// failure.
func churn(ctx context.Context, d *daemon, addr string, n, par int, one func(net.Conn, int) error) (int, error) {
	var next, served atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, par)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := dialOne(ctx, d, addr, i, one); err != nil {
					errc <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				served.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return int(served.Load()), err
	default:
	}
	if ctx.Err() != nil {
		return int(served.Load()), ctx.Err()
	}
	return int(served.Load()), nil
}

// dialOne connects to addr from d's namespace and runs one on the
// connection, with a 10 s bound on the whole.
func dialOne(ctx context.Context, d *daemon, addr string, i int, one func(net.Conn, int) error) error {
	var c net.Conn
	if err := d.ns.Do(func() (err error) {
		c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return one(c, i)
}

// echoOneByte sends one byte and reads it back; the caller closes first.
func echoOneByte(c net.Conn, i int) error {
	b := []byte{byte(i)}
	if _, err := c.Write(b); err != nil {
		return err
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if got[0] != b[0] {
		return fmt.Errorf("echoed %#x, sent %#x", got[0], b[0])
	}
	return nil
}

// getClose sends a GET with "Connection: close" and reads the response to
// the end of the connection, which the daemon closes first.
func getClose(c net.Conn, _ int) error {
	if _, err := io.WriteString(c, "GET /status.json HTTP/1.1\r\nHost: "+stack4+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"uptime"`) {
		return fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(body))
	}
	// The daemon closes: the next read finds the end.
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("after the response: %v, want EOF (the daemon closing)", err)
	}
	return nil
}
