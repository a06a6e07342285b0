package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClearStaleRing: a ring socket a killed daemon left (nothing listens
// on it) is removed so serve can listen again; a live one, or a path that
// is not a socket, is refused with a message that says so and left alone.
func TestClearStaleRing(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)

	// Nothing there: fine.
	if err := clearStaleRing(filepath.Join(dir, "none.sock"), log); err != nil {
		t.Errorf("no file: %v", err)
	}

	// Stale: a listener closed without removing its file, as SIGKILL leaves it.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(stale); err != nil {
		t.Fatalf("the stale socket is not there to clear: %v", err)
	}
	if err := clearStaleRing(stale, log); err != nil {
		t.Errorf("stale socket: %v", err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale socket still there: %v", err)
	}
	// And a ring listens there again.
	ln2, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatalf("listening after clearing: %v", err)
	}
	defer ln2.Close()

	// Live: refused, left alone.
	if err := clearStaleRing(stale, log); err == nil || !strings.Contains(err.Error(), "another process serves a ring") {
		t.Errorf("live socket: %v, want refused", err)
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Errorf("the live socket was removed: %v", err)
	}

	// Not a socket: refused, left alone.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := clearStaleRing(file, log); err == nil || !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("regular file: %v, want refused", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("the file was touched: %q %v", b, err)
	}
	if err := clearStaleRing(dir, log); err == nil || !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("directory: %v, want refused", err)
	}
}
