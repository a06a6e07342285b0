package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// httpConns is how many keep-alive connections TestDaemonHTTPConnections
// holds on the daemon's HTTP service at once; fewer under -race, whose
// daemon serves them several times slower.
func httpConns() int {
	if raceEnabled {
		return 1000
	}
	return 5000
}

// TestDaemonHTTPConnections holds thousands of keep-alive connections to
// the daemon's HTTP service (net/http on api.Net: a goroutine per
// connection), each having made a request, then closes them all: the
// daemon's goroutines and established connections come back to where they
// were, and its resident memory to within 32 MiB of it (not checked under
// -race, whose shadow memory the runtime does not give back).
func TestDaemonHTTPConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: thousands of connections")
	}
	need(t, "curl")
	d := startDaemon(t, "-queues", "1")
	n := httpConns()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if want := uint64(n + 1024); lim.Cur < want {
		old := lim
		lim.Cur, lim.Max = max(lim.Cur, want), max(lim.Max, want)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raising RLIMIT_NOFILE to %d: %v", want, err)
		}
		defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	type statusDoc struct {
		Goroutines int               `json:"goroutines"`
		Counters   map[string]uint64 `json:"counters"`
	}
	status := func() statusDoc {
		t.Helper()
		out, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", "http://"+stack4+"/status.json")
		if err != nil {
			t.Fatal(err)
		}
		var st statusDoc
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status.json: %v", err)
		}
		return st
	}
	st0 := status()
	rss0 := daemonRSS(t, d.cmd.Process.Pid)

	// Dial from inside the namespace (the sockets belong to it), then
	// make one request on each, 64 at a time.
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	if err := d.ns.Do(func() error {
		dl := net.Dialer{Timeout: 20 * time.Second}
		for range n {
			c, err := dl.Dial("tcp", stack4+":80")
			if err != nil {
				return fmt.Errorf("after %d connections: %w", len(conns), err)
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatalf("dial: %v\n%s", err, d.log())
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.WriteString(c, "GET /dashboard.json HTTP/1.1\r\nHost: zcnet\r\n\r\n"); err != nil {
				errs <- err
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				errs <- fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a request on a held connection: %v", err)
	}
	st1 := status()
	rss1 := daemonRSS(t, d.cmd.Process.Pid)
	t.Logf("%d connections opened and served in %v: goroutines %d -> %d, established %d, RSS %.1f -> %.1f MiB",
		n, time.Since(start).Round(time.Millisecond), st0.Goroutines, st1.Goroutines, st1.Counters["TCP.CurrentEstablished"], mib(rss0), mib(rss1))
	if got := st1.Counters["TCP.CurrentEstablished"]; got < uint64(n) {
		t.Errorf("the stack has %d established connections while %d are held", got, n)
	}
	if st1.Goroutines < st0.Goroutines+n {
		t.Errorf("goroutines %d with %d connections held, want at least %d (net/http's one each)", st1.Goroutines, n, st0.Goroutines+n)
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(30 * time.Second)
	var st2 statusDoc
	var rss2 int64
	for {
		st2, rss2 = status(), daemonRSS(t, d.cmd.Process.Pid)
		back := st2.Goroutines <= st0.Goroutines+4 && st2.Counters["TCP.CurrentEstablished"] <= st0.Counters["TCP.CurrentEstablished"]+1 &&
			(raceEnabled || rss2 <= rss0+32<<20)
		if back || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // polling the daemon's own count, bounded by deadline
	}
	t.Logf("after closing: goroutines %d, established %d, RSS %.1f MiB", st2.Goroutines, st2.Counters["TCP.CurrentEstablished"], mib(rss2))
	if st2.Goroutines > st0.Goroutines+4 {
		t.Errorf("goroutines %d 30 s after the connections closed, want at most %d", st2.Goroutines, st0.Goroutines+4)
	}
	if got := st2.Counters["TCP.CurrentEstablished"]; got > st0.Counters["TCP.CurrentEstablished"]+1 {
		t.Errorf("%d connections still established 30 s after the clients closed them", got)
	}
	if !raceEnabled && rss2 > rss0+32<<20 {
		t.Errorf("RSS %.1f MiB 30 s after the connections closed, want within 32 MiB of %.1f", mib(rss2), mib(rss0))
	}
}
