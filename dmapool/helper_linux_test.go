package dmapool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Some tests need a process of their own: to lower RLIMIT_MEMLOCK, or to be
// the peer that maps a shared region. They re-run the test binary with
// helperEnv set to a mode; TestMain calls runHelper first, which does the
// mode's work, prints one JSON object on stdout and exits.
const helperEnv = "DMAPOOL_TEST_HELPER"

// memlockLimit is what the memlock helper lowers RLIMIT_MEMLOCK to.
const memlockLimit = 256 << 10

// helperResult is what a helper reports.
type helperResult struct {
	CapDropped        bool   // CAP_IPC_LOCK was effective and is now dropped
	Err               string // New's error
	ErrIsPin          bool
	Pinned            bool
	Warnings          int // records at Warn or above
	WarningText       string
	Works             bool // a reserve/write/release round trip
	WarningsAfterGrow int
	BytesPinned       int64
	SawParent         bool   // peer: the parent's bytes were there
	TruncateErr       string // peer: ftruncate of the sealed memfd
}

func runHelper() bool {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return false
	}
	var res helperResult
	var err error
	switch mode {
	case "memlock":
		err = helperMemlock(&res)
	case "peer":
		err = helperPeer(&res)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
	return true
}

// runChild runs a helper mode and decodes its report.
func runChild(t *testing.T, mode string, env []string, files ...*os.File) helperResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.ExtraFiles = files
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, stderr.String())
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper %s: %v in %q", mode, err, out)
	}
	return res
}

// dropIPCLock removes CAP_IPC_LOCK from the calling thread's effective set
// (root has it, and it lifts RLIMIT_MEMLOCK). Capabilities are per thread,
// so the caller must hold runtime.LockOSThread while it relies on this.
func dropIPCLock() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	const bit = 1 << unix.CAP_IPC_LOCK
	if data[0].Effective&bit == 0 {
		return false, nil
	}
	data[0].Effective &^= bit
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capset: %w", err)
	}
	return true, nil
}

// countHandler is a slog.Handler that keeps warning records.
type countHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countHandler) WithGroup(string) slog.Handler            { return h }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return nil
	}
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, b.String())
	h.mu.Unlock()
	return nil
}

func (h *countHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.msgs)
}

// helperMemlock lowers RLIMIT_MEMLOCK to memlockLimit, drops CAP_IPC_LOCK,
// and builds a 1 MiB pool with the pin mode in DMAPOOL_PIN ("default": the
// zero Config.Pin).
func helperMemlock(res *helperResult) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return err
	}
	rl.Cur = memlockLimit
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	runtime.LockOSThread() // New's mlock must run on this thread
	dropped, err := dropIPCLock()
	if err != nil {
		return err
	}
	res.CapDropped = dropped
	cfg := Config{Size: 1 << 20, HugePages: HugeOff}
	switch m := os.Getenv("DMAPOOL_PIN"); m {
	case "require":
		cfg.Pin = PinRequire
	case "prefer":
		cfg.Pin = PinPrefer
	case "default":
		// Config.Pin left at its zero value.
	default:
		return fmt.Errorf("DMAPOOL_PIN %q", m)
	}
	h := &countHandler{}
	cfg.Logger = slog.New(h)
	p, err := New(cfg)
	if err != nil {
		res.Err, res.ErrIsPin = err.Error(), errors.Is(err, ErrPin)
		return nil
	}
	res.Pinned = p.Pinned()
	res.Warnings = h.count()
	if res.Warnings > 0 {
		res.WarningText = h.msgs[0]
	}
	b, err := p.Reserve(5000)
	if err == nil {
		b.Bytes()[4999] = 1
		res.Works = b.Release() == nil
	}
	if err := p.Grow(1 << 20); err != nil {
		return err
	}
	res.WarningsAfterGrow = h.count()
	res.BytesPinned = p.Stats().BytesPinned
	return p.Close()
}

// helperPeer maps fd 3 (a region's memfd) as a peer process would, checks
// that the parent's bytes are there, writes its own, and tries to shrink
// the memfd.
func helperPeer(res *helperResult) error {
	size, _ := strconv.Atoi(os.Getenv("DMAPOOL_PEER_SIZE"))
	off, _ := strconv.Atoi(os.Getenv("DMAPOOL_PEER_OFF"))
	n, _ := strconv.Atoi(os.Getenv("DMAPOOL_PEER_LEN"))
	m, err := MapShared(3, size)
	if err != nil {
		return err
	}
	b, err := m.Slice(off, n)
	if err != nil {
		return err
	}
	res.SawParent = true
	for _, c := range b {
		if c != 0xA1 {
			res.SawParent = false
		}
	}
	for i := range b {
		b[i] = 0xB2
	}
	if err := unix.Ftruncate(3, 0); err != nil {
		res.TruncateErr = err.Error()
	}
	return m.Close()
}
