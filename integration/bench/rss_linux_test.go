//go:build linux

package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

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
