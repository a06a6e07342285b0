package main

import (
	"bytes"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the force-exit goroutine and the
// test to share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecondSignalForcesExit: once armed (serve arms it at the first
// shutdown signal), a second signal after the grace ends the process with
// 128 + its number and a line that says why; one within the grace is the
// first delivered twice and ignored; disarmed, it does nothing.
func TestSecondSignalForcesExit(t *testing.T) {
	codes := make(chan int, 1)
	defer func(f func(int)) { forceExit = f }(forceExit)
	forceExit = func(code int) { codes <- code }

	defer func(g time.Duration) { forceExitGrace = g }(forceExitGrace)
	forceExitGrace = 300 * time.Millisecond

	var stderr lockedBuffer
	disarm := armForceExit(&stderr)
	// At once: the same request delivered twice (timeout(1) signals the
	// process and its group), ignored.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-codes:
		t.Fatalf("a signal within the grace forced exit %d", code)
	case <-time.After(forceExitGrace + 100*time.Millisecond):
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-codes:
		if code != 128+int(syscall.SIGHUP) {
			t.Errorf("forced exit status %d, want %d", code, 128+int(syscall.SIGHUP))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second signal did not force the exit")
	}
	disarm()
	if want := "second signal (hangup) during shutdown: exiting now, status 129"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q does not say %q", stderr.String(), want)
	}

	// Disarmed without a signal: returns, and forces nothing.
	armForceExit(&stderr)()
	select {
	case code := <-codes:
		t.Errorf("forced exit %d with no signal", code)
	default:
	}
}
