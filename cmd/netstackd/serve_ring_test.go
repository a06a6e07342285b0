package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// logWatch is a log sink that closes seen the first time a line holding
// want is written, so a test can wait for what the daemon says it did.
type logWatch struct {
	want string
	seen chan struct{}
	once sync.Once
	mu   sync.Mutex
	buf  bytes.Buffer // +checklocks:mu
}

func newLogWatch(want string) *logWatch { return &logWatch{want: want, seen: make(chan struct{})} }

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte(w.want)) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *logWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestServeRing runs serve on a ring, configured from a TOML file, and
// connects two peers in turn, each a stack of its own on the ring's peer
// side: both get verified TCP and UDP echoes from serve's services.
func TestServeRing(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ring.sock")
	conf := writeConfig(t, fmt.Sprintf("ring = %q\naddr = [\"192.0.2.2/24\"]\nservices = \"echo,discard\"\npool-size = \"16MiB\"\n", sock))
	cfg, err := parseServe([]string{"-config", conf}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if s.ring != sock || s.ringDial || len(s.addrs) != 1 || s.addrs[0] != demoServer {
		t.Fatalf("setup from the file: ring %q dial %v addrs %v", s.ring, s.ringDial, s.addrs)
	}
	logw := newLogWatch("service=discard")
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, s, log) }()
	select {
	case <-logw.seen:
	case err := <-done:
		t.Fatalf("serve ended before it listened: %v\n%s", err, logw)
	case <-time.After(20 * time.Second):
		t.Fatalf("serve not listening after 20 s:\n%s", logw)
	}

	sf := newStackFlags(toolPoolSize)
	peer, err := sf.resolve(false)
	if err != nil {
		t.Fatal(err)
	}
	peer.addrs = []netip.Prefix{demoClient}
	for i := 0; i < 2; i++ { // the second peer gets a fresh session
		z, err := zcstack.DialRing(peer.config(nil), sock, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("peer %d: %v", i, err)
		}
		ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
		n := z.API.Net()
		if _, err := echoRounds(ectx, n, 100, 1000); err != nil {
			t.Errorf("peer %d: TCP echo: %v", i, err)
		}
		if err := echoUDP(ectx, n); err != nil {
			t.Errorf("peer %d: UDP echo: %v", i, err)
		}
		ecancel()
		if st, ok := z.RingStats(); !ok || st.RxFrames == 0 || st.TxFrames == 0 || st.PeersUp != 1 {
			t.Errorf("peer %d: ring stats %+v", i, st)
		}
		if err := z.Close(); err != nil {
			t.Errorf("peer %d: close: %v", i, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, logw)
	}
	out := logw.String()
	if c := bytes.Count([]byte(out), []byte("ring peer connected")); c != 2 {
		t.Errorf("serve logged %d peers connecting, want 2:\n%s", c, out)
	}
	if c := bytes.Count([]byte(out), []byte("ring peer gone")); c < 1 {
		t.Errorf("serve logged no peer going:\n%s", out)
	}
}
