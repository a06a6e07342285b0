package evchan

import (
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// A re-executed test binary acting as another process (see
	// mqueue_linux_test.go) does its job and exits before any test runs.
	if runHelperProcess() {
		return
	}
	goleak.VerifyTestMain(m)
}

// helperModes maps an EVCHAN_HELPER value to the job a re-executed test
// binary does; platform files add entries in init.
var helperModes = map[string]func() int{}

func runHelperProcess() bool {
	mode := os.Getenv("EVCHAN_HELPER")
	if mode == "" {
		return false
	}
	f, ok := helperModes[mode]
	if !ok {
		os.Stderr.WriteString("evchan test helper: unknown mode " + mode + "\n")
		os.Exit(2)
	}
	os.Exit(f())
	return true
}

// waitFor is evchantest.Eventually for evchan's own tests, which cannot
// import evchantest (it imports evchan; the import would be a cycle).
// Every other package's tests use evchantest.Eventually.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func mustNew(t testing.TB, capacity int) *Channel {
	t.Helper()
	c, err := New(Config{Capacity: capacity})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
