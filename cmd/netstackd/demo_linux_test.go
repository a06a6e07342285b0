package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestDemoNoticesChildDeath kills the demo's child (SIGKILL) during the
// throughput phase of a run meant to last an hour: the demo must say so,
// having reaped the child (no zombie), and exit with status 1.
func TestDemoNoticesChildDeath(t *testing.T) {
	cmd := exec.Command(os.Args[0], "demo", "-duration", "1h", "-rounds", "10")
	cmd.Env = append(os.Environ(), demoChildEnv+"=1", "TMPDIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Kill()
		for range lines {
		}
		<-exited
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before %s", what)
			}
			return l
		case <-time.After(60 * time.Second):
			t.Fatalf("no %s from the demo in 60 s", what)
		}
		return ""
	}
	m := regexp.MustCompile(`\(child, pid ([0-9]+)\)`).FindStringSubmatch(next("first line"))
	if m == nil {
		t.Fatal("the demo's first line names no child")
	}
	child, _ := strconv.Atoi(m[1])
	for l := next("progress line"); !strings.Contains(l, "[  1 s]"); l = next("progress line") {
	}
	killed := time.Now()
	if err := unix.Kill(child, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var said string
	for l := next("word of the death"); ; l = next("word of the death") {
		if strings.Contains(l, "died") {
			said = l
			break
		}
	}
	noticed := time.Since(killed)
	// The demo reaps the child before it says so.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child)); err == nil {
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			t.Errorf("child %d is a zombie after the demo said it died", child)
		}
	}
	want := fmt.Sprintf("demo: the peer process (pid %d) died: signal: killed; stopping", child)
	if said != want {
		t.Errorf("demo said %q, want %q", said, want)
	}
	t.Logf("noticed %v after the kill", noticed)
	if noticed > 5*time.Second {
		t.Errorf("demo noticed the death %v after it, want about a second", noticed)
	}
	for range lines {
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("demo exit: %v, want status 1\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "netstackd demo: the peer process") {
			t.Errorf("demo's error does not name the death:\n%s", stderr.String())
		}
		exited <- err
	case <-time.After(30 * time.Second):
		t.Fatal("demo still running 30 s after its child died")
	}
}

// TestDemoQuietWithoutMemlock runs the demo as an ordinary user meets it:
// RLIMIT_MEMLOCK far below its pools and the ring's 32 MiB, and no
// CAP_IPC_LOCK (as root, every capability dropped with setpriv(1)). It
// must print what the README shows and nothing on stderr; before, each of
// the three pools (the ring's through the default logger, in another
// format) warned that its memory was not pinned.
func TestDemoQuietWithoutMemlock(t *testing.T) {
	var args []string
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err != nil {
			t.Skip("skipping: setpriv(1) is not installed to drop root's CAP_IPC_LOCK")
		}
		args = []string{"setpriv", "--bounding-set=-all", "--inh-caps=-all"}
	}
	args = append(args, os.Args[0], "demo", "-duration", "300ms", "-rounds", "20")
	// The child inherits the limit at fork; the test's own is put back.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = min(lim.Max, 1<<20)
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), demoChildEnv+"=1", "TMPDIR="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if rerr := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); rerr != nil {
		t.Errorf("restoring RLIMIT_MEMLOCK: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("demo still running after 90 s:\n%s\n%s", stdout.String(), stderr.String())
	}
	if err != nil {
		t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("demo wrote to stderr:\n%s", stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "every byte received") || !strings.Contains(out, "came back intact") {
		t.Errorf("demo's output lacks its summary:\n%s", out)
	}
}
