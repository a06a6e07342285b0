// Package procstat reads what the tests and harnesses measure of a server
// process from /proc: its resident memory. It owns parsing
// /proc/PID/status; sampling over time (peaks, rates) stays with the
// callers, which sample at the moments their measurement needs.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// RSS returns the resident memory of process pid (VmRSS), in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	v, err := ParseVmRSS(b)
	if err != nil {
		return 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return v, nil
}

// ParseVmRSS reads the VmRSS line of a /proc/PID/status file ("VmRSS:
// 123 kB"; the kernel's kB are KiB) and returns it in bytes.
func ParseVmRSS(status []byte) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want a number and kB", line)
		}
		kib, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kib < 0 || kib > 1<<40 {
			return 0, fmt.Errorf("VmRSS line %q: bad size", line)
		}
		return kib << 10, nil
	}
	return 0, fmt.Errorf("no VmRSS line (a kernel thread, or a zombie)")
}
