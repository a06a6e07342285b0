//go:build linux

package zcnet_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api/zcnet"
	"github.com/zcnet/zcnet/integration/nstest"
)

// TestOpenTAPReadmeDevice: the README's device (`ip tuntap add dev NAME
// mode tap`), one call with the default config, an echo server on the
// node's net.Listener, and the kernel side talking to it.
func TestOpenTAPReadmeDevice(t *testing.T) {
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zn")
	ns.MustRun("ip", "tuntap", "add", "dev", name, "mode", "tap")
	var n *zcnet.Node
	logs := &syncBuffer{}
	if err := ns.Do(func() (err error) {
		n, err = zcnet.OpenTAP(name, zcnet.Config{
			Addrs:  []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")},
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
		return err
	}); err != nil {
		t.Fatalf("OpenTAP: %v", err)
	}
	defer func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if info := n.TAP().Info(); info.Queues != 1 || info.MultiQueue || info.Created {
		t.Errorf("TAP info %v, want one queue on the existing single-queue device", info)
	}
	if runtime.GOMAXPROCS(0) > 1 && !strings.Contains(logs.String(), "without multi_queue") {
		t.Errorf("the node did not log why it took one queue; log:\n%s", logs.String())
	}
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", name)
	ns.MustRun("ip", "link", "set", name, "up")

	ln, err := n.Net().Listen("tcp", "192.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", "192.0.2.2:7", 10*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := make([]byte, 256<<10)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	go func() {
		c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != string(msg) {
		t.Fatalf("echo: %d bytes back of %d, %v", len(got), len(msg), err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
