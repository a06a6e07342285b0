package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/integration/procstat"
)

// Targets of netstackd's event-loop services.
const (
	idleConns         = 10000
	idleMaxGoroutines = 64
	idleMaxRSSPerConn = 12 << 10
)

// TestDaemonIdleConnections opens 10 000 TCP connections from the kernel
// side of a TAP device to netstackd serve's echo service and leaves them
// idle: the daemon must hold them with at most 64 goroutines and at most
// 12 KiB of resident memory each (not checked under -race, whose shadow
// memory inflates it), and a sample of them must still echo.
func TestDaemonIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short: 10 000 connections")
	}
	need(t, "curl")
	d := startDaemon(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if want := uint64(idleConns + 1024); lim.Cur < want {
		old := lim
		lim.Cur = max(lim.Cur, want)
		lim.Max = max(lim.Max, want)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raising RLIMIT_NOFILE to %d: %v", want, err)
		}
		defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	type statusDoc struct {
		Goroutines  int              `json:"goroutines"`
		Connections map[string]int64 `json:"connections"`
	}
	tryStatus := func() (st statusDoc, err error) {
		out, err := d.run(t, 30*time.Second, nil, "curl", "-sS", "--fail", "--max-time", "20", "http://"+stack4+"/status.json")
		if err != nil {
			return st, err
		}
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("status.json: %v", err)
		}
		return st, nil
	}
	status := func() statusDoc {
		st, err := tryStatus()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	before := daemonRSS(t, d.cmd.Process.Pid)
	st0 := status()

	// The sockets are made in the namespace (a socket belongs to the
	// namespace of the thread that creates it); they connect from any
	// thread, a few at a time.
	fds := make([]int, idleConns)
	for i := range fds {
		fds[i] = -1
	}
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	if err := d.ns.Do(func() error {
		for i := range fds {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket %d: %w", i, err)
			}
			fds[i] = fd
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Sec: 20}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	const parallel = 32
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Connect writes into the sockaddr: one per goroutine.
			to := &unix.SockaddrInet4{Port: 7, Addr: netip.MustParseAddr(stack4).As4()}
			for i := w; i < idleConns; i += parallel {
				unix.SetsockoptTimeval(fds[i], unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv) // bounds connect
				if err := connectFD(fds[i], to); err != nil {
					select {
					case errs <- fmt.Errorf("connect %d: %w", i, err):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	st := status()
	for deadline := time.Now().Add(time.Minute); st.Connections["echo/tcp"] < idleConns && time.Now().Before(deadline); st = status() {
		time.Sleep(100 * time.Millisecond) // polling the daemon's count, bounded by deadline
	}
	if got := st.Connections["echo/tcp"]; got != idleConns {
		t.Fatalf("daemon holds %d echo connections, want %d\n%s", got, idleConns, d.log())
	}
	after := daemonRSS(t, d.cmd.Process.Pid)
	perConn := (after - before) / idleConns
	t.Logf("%d idle kernel connections: daemon goroutines %d (before %d), RSS %.1f MiB -> %.1f MiB, %.1f KiB per connection (race %v)",
		idleConns, st.Goroutines, st0.Goroutines, float64(before)/(1<<20), float64(after)/(1<<20), float64(perConn)/1024, raceEnabled)
	if st.Goroutines > idleMaxGoroutines {
		t.Errorf("daemon runs %d goroutines with %d connections, want at most %d", st.Goroutines, idleConns, idleMaxGoroutines)
	}
	if !raceEnabled && perConn > idleMaxRSSPerConn {
		t.Errorf("daemon's resident memory grew %d bytes per connection, want at most %d", perConn, idleMaxRSSPerConn)
	}
	// A sample still echoes.
	rtv := unix.Timeval{Sec: 10}
	for i := 0; i < idleConns; i += idleConns / 10 {
		msg := []byte("idle " + strconv.Itoa(i))
		unix.SetsockoptTimeval(fds[i], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &rtv)
		if _, err := unix.Write(fds[i], msg); err != nil {
			t.Fatalf("write on connection %d: %v", i, err)
		}
		got := make([]byte, 0, len(msg))
		buf := make([]byte, 64)
		for len(got) < len(msg) {
			n, err := unix.Read(fds[i], buf)
			if err != nil || n == 0 {
				t.Fatalf("read on connection %d: %d %v", i, n, err)
			}
			got = append(got, buf[:n]...)
		}
		if string(got) != string(msg) {
			t.Errorf("connection %d echoed %q, sent %q", i, got, msg)
		}
	}
	// The peers close: the daemon lets every connection go.
	for i, fd := range fds {
		unix.Close(fd)
		fds[i] = -1
	}
	// While it takes 10 000 FINs (the race detector's daemon on a loaded
	// machine needed over 20 s) a status request may go unanswered; that
	// is the daemon busy, and only the deadline fails the test.
	var err error
	st, err = tryStatus()
	for deadline := time.Now().Add(2 * time.Minute); (err != nil || st.Connections["echo/tcp"] > 0) && time.Now().Before(deadline); st, err = tryStatus() {
		time.Sleep(100 * time.Millisecond) // polling the daemon's count, bounded by deadline
	}
	if err != nil {
		t.Errorf("status after the peers closed: %v", err)
	} else if got := st.Connections["echo/tcp"]; got != 0 {
		t.Errorf("daemon still holds %d echo connections after the peers closed them", got)
	}
}

// connectFD connects a blocking socket; a connect interrupted by a signal
// (the Go runtime's preemption) goes on in the kernel, so it waits for the
// socket to turn writable and reads the outcome.
func connectFD(fd int, to unix.Sockaddr) error {
	err := unix.Connect(fd, to)
	if err != unix.EINTR {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		n, err := unix.Poll(pfd, 20_000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		break
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		return fmt.Errorf("connect: %v (SO_ERROR %d)", err, e)
	}
	return nil
}

// daemonRSS returns a process's resident memory (VmRSS).
func daemonRSS(t *testing.T, pid int) int64 {
	t.Helper()
	v, err := procstat.RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
