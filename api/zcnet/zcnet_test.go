package zcnet_test

import (
	"errors"
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/zcnet"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connect makes a TCP connection from a to b's port 7 and returns both
// sockets.
func connect(t *testing.T, a, b *zcnet.Node) (client, server *api.Socket) {
	t.Helper()
	ctx := evchantest.Context(t)
	ln, err := b.API().ListenTCP(netip.MustParseAddrPort("192.0.2.2:7"))
	if err != nil {
		t.Fatal(err)
	}
	if client, err = a.API().DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:7")); err != nil {
		t.Fatal(err)
	}
	if server, err = ln.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	return client, server
}

// TestPairClose: a pair carries data both ways over v4 and v6, and Close
// of both nodes leaves no goroutine (TestMain checks) and returns nil.
func TestPairClose(t *testing.T) {
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Pool().Stats().BytesMapped != zcnet.DefaultPairPoolSize || a.TAP() != nil || a.Stack().NICs()[a.NIC()] != "pair-a" {
		t.Errorf("node A: pool %d bytes, TAP %v, NICs %v", a.Pool().Stats().BytesMapped, a.TAP(), a.Stack().NICs())
	}
	ctx := evchantest.Context(t)
	for _, addr := range []string{"192.0.2.2:80", "[2001:db8::2]:80"} {
		ln, err := b.Net().Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("pong"))
			c.Close()
		}()
		c, err := a.Net().DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("%s: read %q, %v", addr, buf[:n], err)
		}
		c.Close()
		ln.Close()
	}
	// Sockets left open on purpose: Close closes them.
	connect(t, a, b)
	if err := a.Close(); err != nil {
		t.Errorf("Close A: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close B: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseWithHeldBuf: Close with a received Buf still held closes
// everything but the pool, and says so; once the Buf is released the pool
// closes.
func TestCloseWithHeldBuf(t *testing.T) {
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	client, server := connect(t, a, b)
	msg := "held"
	if _, err := client.SendFunc(evchantest.Context(t), len(msg), func(p []byte) int { return copy(p, msg) }); err != nil {
		t.Fatal(err)
	}
	buf, err := server.Recv(evchantest.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	// A received Buf in the stack's memory holds no pool slot; Reserve
	// one as well, which does.
	res, err := b.API().Reserve(100)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Close()
	if !errors.Is(err, dmapool.ErrBusy) {
		t.Fatalf("Close with a reserved Buf held: %v, want ErrBusy", err)
	}
	if string(buf.Bytes()) != msg {
		t.Errorf("held Buf %q after Close, want %q", buf.Bytes(), msg)
	}
	if _, err := server.Recv(evchantest.Context(t)); err == nil {
		t.Error("socket still receives after Close")
	}
	buf.Release()
	res.Release()
	if err := b.Pool().Close(); err != nil {
		t.Fatalf("pool Close after the release: %v", err)
	}
}

// TestOwnPool: a pool the caller passes in is used and left open.
func TestOwnPool(t *testing.T) {
	pool, err := dmapool.New(dmapool.Config{Size: 1 << 20, Pin: dmapool.PinOff})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, b, err := zcnet.NewPair(zcnet.PairConfig{A: zcnet.Config{Pool: pool}})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if a.Pool() != pool || a.API().Pool() != pool {
		t.Fatal("node A does not use the pool it was given")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := pool.Reserve(10)
	if err != nil {
		t.Fatalf("the caller's pool after Close: %v", err)
	}
	r.Release()
}

// TestConfigErrors: a node without addresses, or with the API's pool set,
// is refused at once, and the link New was given is closed.
func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]zcnet.Config{
		"no addrs": {},
		"api pool": {Addrs: zcnet.PairAddrsA, API: api.Options{FilesOnly: true}},
		"bad addr": {Addrs: []netip.Prefix{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			la, lb, err := pair.New(pair.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer lb.Close()
			if n, err := zcnet.New(la, cfg); n != nil || !errors.Is(err, zcnet.ErrConfig) {
				t.Fatalf("New: %v, %v; want ErrConfig", n, err)
			}
			if la.IsAttached() {
				t.Error("link attached after a failed New")
			}
			if len(cfg.Addrs) == 0 {
				return // NewPair fills in the pair's addresses
			}
			if _, _, err := zcnet.NewPair(zcnet.PairConfig{B: cfg}); !errors.Is(err, zcnet.ErrConfig) {
				t.Fatalf("NewPair: %v; want ErrConfig", err)
			}
		})
	}
	if _, err := zcnet.OpenTAP("zcnever0", zcnet.Config{}); !errors.Is(err, zcnet.ErrConfig) {
		t.Fatalf("OpenTAP without addresses: %v, want ErrConfig before the device is touched", err)
	}
}

// TestRoutes: Config.Routes go into the node's table on its NIC.
func TestRoutes(t *testing.T) {
	def := stack.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.2")}
	a, b, err := zcnet.NewPair(zcnet.PairConfig{A: zcnet.Config{Routes: []stack.Route{def}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer a.Close()
	found := false
	for _, r := range a.Stack().Routes() {
		if r.Dst == def.Dst && r.Gateway == def.Gateway && r.NIC == a.NIC() {
			found = true
		}
	}
	if !found {
		t.Fatalf("routes %v lack %v on NIC %d", a.Stack().Routes(), def, a.NIC())
	}
}
