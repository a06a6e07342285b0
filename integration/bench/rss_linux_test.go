//go:build linux

package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tbench\nVmPeak:\t  999 kB\nVmHWM:\t   800 kB\nVmRSS:\t    1536 kB\nRssAnon:\t 100 kB\n"
	if v, err := parseVmRSS([]byte(status)); err != nil || v != 1536<<10 {
		t.Errorf("parseVmRSS = %d, %v; want %d", v, err, 1536<<10)
	}
	for _, bad := range []string{
		"Name:\tkworker\nState:\tI (idle)\n", // kernel threads have no VmRSS
		"VmRSS:\t12 MB\n",
		"VmRSS:\tx kB\n",
		"VmRSS:\t\n",
		"VmRSS:\t99999999999999999999 kB\n",
	} {
		if v, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) = %d, no error", bad, v)
		}
	}
}

func TestRSSSamplerSeesGrowth(t *testing.T) {
	s := startRSSSampler(os.Getpid(), time.Millisecond)
	// Touch 64 MiB of a fresh mapping (not the Go heap, which may hold
	// resident memory already): resident at stop's last sample at the
	// latest.
	grow, err := unix.Mmap(-1, 0, 64<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(grow)
	for i := 0; i < len(grow); i += 4096 {
		grow[i] = 1
	}
	first, peak, err := s.stop()
	if err != nil {
		t.Fatal(err)
	}
	if first == 0 || peak < first+48<<20 {
		t.Errorf("first %d, peak %d: want the peak at least 48 MiB above the first", first, peak)
	}
	if _, _, err := s.stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}

	s = startRSSSampler(-1, time.Millisecond)
	if _, _, err := s.stop(); err == nil || !strings.Contains(err.Error(), "PID -1") {
		t.Errorf("no such process: %v", err)
	}
}
