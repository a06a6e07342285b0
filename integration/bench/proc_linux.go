//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childEnv marks a process started by the bench as one of its own servers
// or clients; the test binary, which has no subcommands, looks for it in
// TestMain.
const childEnv = "ZCBENCH_CHILD"

// proc is a process the bench started inside a namespace: one of its own
// server or client subcommands, iperf3 or wrk. It runs in a process group
// of its own (a SIGINT at the terminal reaches the bench only, which then
// stops it) and gets SIGKILL if the bench dies (Pdeathsig). Its stdin is a
// pipe: the bench's own children end when it closes.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader // its stdout, a line at a time
	outR  *os.File      // the read end of its stdout; ours to close
	errb  *tailBuffer   // the end of its stderr, for error messages
	done  chan struct{} // closed once it has been reaped
	err   error         // Wait's result, set before done closes

	mu sync.Mutex // serializes request/response on stdin/stdout
}

// procs holds every live proc, so that the signal path can kill them.
var procs struct {
	mu   sync.Mutex
	live map[*proc]bool // +checklocks:mu
}

// selfExe is the bench's own executable, re-run for its subcommands.
func selfExe() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%w: own executable: %v", errSetup, err)
	}
	return exe, nil
}

// startProc starts args (args[0] a path or a command name) in ns.
func startProc(ns netns, name string, args ...string) (*proc, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name()}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, errb: &tailBuffer{max: 4 << 10}, done: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errSetup, name, err)
	}
	// A pipe of our own, not StdoutPipe: Wait would close that one's
	// read end and lose a last line not read yet.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errSetup, name, err)
	}
	cmd.Stdout = w
	p.out, p.outR = bufio.NewReaderSize(r, 64<<10), r
	cmd.Stderr = p.errb
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: start %s: %v", errSetup, name, err)
	}
	procs.mu.Lock()
	if procs.live == nil {
		procs.live = map[*proc]bool{}
	}
	procs.live[p] = true
	procs.mu.Unlock()
	go func() {
		// Wait closes stdout only after the process is gone; whoever
		// reads it sees EOF then.
		p.err = cmd.Wait()
		procs.mu.Lock()
		delete(procs.live, p)
		procs.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// pid is the process's ID: ip netns exec executes the command in its own
// process, so it is the command's.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// kill sends SIGKILL to the process's group.
func (p *proc) kill() { _ = syscall.Kill(-p.pid(), syscall.SIGKILL) }

// stop closes its stdin (the bench's children end on that), waits at most
// grace, then kills it, and waits for it to be reaped.
func (p *proc) stop(grace time.Duration) {
	defer p.outR.Close()
	p.stdin.Close()
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.kill()
	<-p.done
}

// wait waits for the process to end by itself, at most timeout (then it
// is killed), and returns an error saying how it ended, with its stderr.
func (p *proc) wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
		<-p.done
		return fmt.Errorf("%w: %s still running after %v; killed (stderr: %s)", errMeasure, p.name, timeout, p.errb.String())
	}
	if p.err != nil {
		return fmt.Errorf("%w: %s: %v (stderr: %s)", errMeasure, p.name, p.err, p.errb.String())
	}
	return nil
}

// readLine reads one line of its stdout, bounded by timeout: a process
// that stops answering is killed.
func (p *proc) readLine(timeout time.Duration) ([]byte, error) {
	type line struct {
		b   []byte
		err error
	}
	ch := make(chan line, 1)
	go func() {
		b, err := p.out.ReadBytes('\n')
		ch <- line{b, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l := <-ch:
		if l.err != nil {
			<-p.done // stdout ends when the process does
			return nil, fmt.Errorf("%w: %s ended: %v (stderr: %s)", errMeasure, p.name, p.err, p.errb.String())
		}
		return l.b, nil
	case <-t.C:
		p.kill()
		<-ch
		return nil, fmt.Errorf("%w: %s: no answer within %v; killed (stderr: %s)", errMeasure, p.name, timeout, p.errb.String())
	}
}

// readJSON reads one line of its stdout as JSON into v; a line with an
// "error" member is returned as an error, an unavailableError if it also
// has an "unavailable" member (the reason).
func (p *proc) readJSON(timeout time.Duration, v any) error {
	b, err := p.readLine(timeout)
	if err != nil {
		return err
	}
	return decodeAnswer(p.name, b, v)
}

// decodeAnswer decodes a child's JSON line b into v, or returns the error
// it reports.
func decodeAnswer(name string, b []byte, v any) error {
	var e struct {
		Error       string `json:"error"`
		Unavailable string `json:"unavailable"`
	}
	if json.Unmarshal(b, &e) == nil && e.Unavailable != "" {
		return unavailableError{reason: e.Unavailable}
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return fmt.Errorf("%w: %s: %s", errMeasure, name, e.Error)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: bad answer %q: %v", errMeasure, name, bytes.TrimSpace(b), err)
	}
	return nil
}

// request sends one command line and reads the JSON answer into v.
func (p *proc) request(cmd string, v any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%w: %s: %s: %v (stderr: %s)", errMeasure, p.name, cmd, err, p.errb.String())
	}
	return p.readJSON(30*time.Second, v)
}

// cpu returns the CPU time (user + system, all threads, including those
// that have ended) the process has used, from /proc/PID/stat.
func (p *proc) cpu() (time.Duration, error) { return pidCPU(p.pid()) }

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux ABI Go supports.
const clockTicks = 100

func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errMeasure, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: /proc/%d/stat: no command name", errMeasure, pid)
	}
	// After the command name: state (field 3) … utime (14), stime (15).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: /proc/%d/stat: %d fields", errMeasure, pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%w: /proc/%d/stat: %v", errMeasure, pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// killAllProcs kills every live proc; for the signal path.
func killAllProcs() {
	procs.mu.Lock()
	var ps []*proc
	for p := range procs.live {
		ps = append(ps, p)
	}
	procs.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// runCmd runs a command in ns to its end, bounded by ctx and timeout, and
// returns its stdout; a non-zero exit is an error carrying its stderr.
func runCmd(ctx context.Context, ns netns, timeout time.Duration, args ...string) ([]byte, error) {
	p, err := startProc(ns, args[0], args...)
	if err != nil {
		return nil, err
	}
	defer p.outR.Close()
	p.stdin.Close()
	var out []byte
	read := make(chan struct{})
	go func() { out, _ = io.ReadAll(p.out); close(read) }()
	stop := context.AfterFunc(ctx, p.kill)
	defer stop()
	werr := p.wait(timeout)
	p.outR.SetReadDeadline(time.Now().Add(time.Second)) // a grandchild may hold the pipe
	<-read
	if ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, werr
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte // +checklocks:mu
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
