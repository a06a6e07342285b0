package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDemoChildDiesWithParent runs the demo in a process of its own (this
// test binary as netstackd) and ends that process: with SIGKILL, which it
// cannot catch, its child must be gone soon after all the same; with
// SIGINT, it must also have removed its temporary directory.
func TestDemoChildDiesWithParent(t *testing.T) {
	for _, sig := range []unix.Signal{unix.SIGKILL, unix.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := t.TempDir()
			cmd := exec.Command(os.Args[0], "demo", "-duration", "1h")
			cmd.Env = append(os.Environ(), demoChildEnv+"=1", "TMPDIR="+tmp)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			m := regexp.MustCompile(`\(child, pid ([0-9]+)\)`).FindStringSubmatch(line)
			if err != nil || m == nil {
				t.Fatalf("demo's first line %q, %v", line, err)
			}
			child, _ := strconv.Atoi(m[1])
			// A pidfd turns readable when its process exits, child of ours
			// or not.
			pfd, err := unix.PidfdOpen(child, 0)
			if err != nil {
				t.Fatalf("child %d not running while the demo runs: %v", child, err)
			}
			defer unix.Close(pfd)
			cmd.Process.Signal(sig)
			cmd.Wait()
			fds := []unix.PollFd{{Fd: int32(pfd), Events: unix.POLLIN}}
			for {
				n, err := unix.Poll(fds, 10_000)
				if err == unix.EINTR {
					continue
				}
				if err != nil || n != 1 {
					unix.PidfdSendSignal(pfd, unix.SIGKILL, nil, 0)
					t.Fatalf("child %d still running 10 s after its parent got %v (%v)", child, sig, err)
				}
				break
			}
			if sig == unix.SIGKILL {
				return // nothing ran to clean up; t.TempDir removes the rest
			}
			if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
				t.Errorf("temporary files left behind after %v: %v %v", sig, left, err)
			}
		})
	}
}
