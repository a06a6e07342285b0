//go:build linux

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/ring"
	"github.com/zcnet/zcnet/stack/link/ring/ringtest"
)

// A misbehaving ring peer: the stack under test serves on the
// stack side of a shared-memory ring; its peer is a second stack sending it
// a SHA-256-checked transfer, and the same peer writes, between its honest
// frames, every kind of malformed ring entry (ring.Fault: out-of-range
// offsets and lengths, frames of the other side, descriptors reused before
// they came back, forged returns, ring indices jumping forwards and
// backwards), over and over until the transfer is done. Each must be
// rejected and counted exactly once, nothing may read or write outside the
// segment (Go's bounds checks and the race detector would crash the test),
// the transfer must arrive byte-identical, and afterwards the stack must
// accept a fresh peer and serve it. No root needed.
func TestReliabilityRingHostilePeer(t *testing.T) {
	const port = 5301
	sock := filepath.Join(t.TempDir(), "ring.sock")
	peers := make(chan error, 16)
	link, err := ring.Listen(sock, ring.Config{OnPeer: func(up bool, err error) {
		if up {
			err = nil
		} else if err == nil {
			err = errors.New("peer down without a reason")
		}
		peers <- err
	}})
	if err != nil {
		t.Fatal(err)
	}
	served, _ := ringAPIStack(t, link, stack4)
	ringHashServer(t, served, port)

	// 1. The peer: a stack transferring, and the faults in between.
	p, err := ring.Dial(sock, ring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pa, closePeer := ringAPIStack(t, p.Endpoint(), peer4)
	ringWaitPeer(t, peers, true)
	s := newRelStream(57, relTransferSize(32<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ringTransfer(ctx, pa, port, s) }()
	if !evchantest.Poll(30*time.Second, func() bool { return link.Stats().RxBytes > 1<<20 }) {
		t.Fatal("the transfer did not start")
	}
	before := link.Stats()
	var rounds uint64
	var terr error
	for running := true; running; {
		grew, err := ringtest.InjectAll(p, link.Stats, 10*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", rounds+1, err)
		}
		rounds++
		for f, n := range grew {
			if n != 1 {
				t.Errorf("round %d: %v counted %d times, want 1", rounds, ring.Fault(f), n)
			}
		}
		select {
		case terr = <-done:
			running = false
		default:
		}
	}
	if terr != nil {
		t.Fatalf("transfer under attack: %v", terr)
	}
	after := link.Stats()
	t.Logf("%d MiB transferred intact while %d rounds of %d faults were injected; link stats %+v", s.size>>20, rounds, ring.NumFaults, after)
	for _, c := range []struct {
		name string
		got  uint64
		per  uint64 // per round
	}{
		{"BadOffset", after.BadOffset - before.BadOffset, 4},
		{"BadLength", after.BadLength - before.BadLength, 3},
		{"BadFlags", after.BadFlags - before.BadFlags, 1},
		{"NotOwned", after.NotOwned - before.NotOwned, 3},
		{"IndexOverrun", after.IndexOverrun - before.IndexOverrun, 2},
		{"IndexBackwards", after.IndexBackwards - before.IndexBackwards, 1},
	} {
		if c.got != c.per*rounds {
			t.Errorf("%s grew by %d over %d rounds, want %d", c.name, c.got, rounds, c.per*rounds)
		}
	}

	// 2. The peer goes; the stack accepts a fresh one and serves it.
	closePeer()
	ringWaitPeer(t, peers, false)
	p2, err := ring.Dial(sock, ring.Config{})
	if err != nil {
		t.Fatalf("a fresh peer after the hostile one: %v", err)
	}
	pa2, _ := ringAPIStack(t, p2.Endpoint(), peer4)
	ringWaitPeer(t, peers, true)
	if err := ringTransfer(ctx, pa2, port, newRelStream(58, 4<<20)); err != nil {
		t.Fatalf("transfer with the fresh peer: %v", err)
	}
	if st := link.Stats(); st.PeersUp != 2 || st.PeersLost != 1 {
		t.Errorf("peers up %d lost %d, want 2 and 1", st.PeersUp, st.PeersLost)
	}
}

// ringAPIStack builds a zcnet stack with zero-copy sockets on link at
// addr/24. close tears it down, the link with it; it runs in t.Cleanup
// too, and more than once does no harm.
func ringAPIStack(t *testing.T, link gstack.LinkEndpoint, addr string) (a *api.Stack, close func()) {
	t.Helper()
	pool, err := dmapool.New(dmapool.Config{Size: 16 << 20, Pin: dmapool.PinOff})
	if err != nil {
		link.Close()
		t.Fatal(err)
	}
	st, err := stack.New(stack.Options{})
	if err != nil {
		link.Close()
		pool.Close()
		t.Fatal(err)
	}
	close = sync.OnceFunc(func() {
		if a != nil {
			a.Close()
		}
		st.Close()
		if err := pool.Close(); err != nil {
			t.Errorf("pool close: %v", err)
		}
	})
	t.Cleanup(close)
	if _, err := st.AddNIC(link, stack.NICConfig{Name: "ring", Addrs: []netip.Prefix{netip.MustParsePrefix(addr + "/24")}}); err != nil {
		t.Fatal(err)
	}
	if a, err = api.New(st, api.Options{Pool: pool}); err != nil {
		t.Fatal(err)
	}
	return a, close
}

// ringWaitPeer waits for the link's next report about its peer: up, or
// gone (ring.ErrPeerGone).
func ringWaitPeer(t *testing.T, peers <-chan error, up bool) {
	t.Helper()
	select {
	case err := <-peers:
		if up && err != nil {
			t.Fatalf("peer report %v, want up", err)
		}
		if !up && !errors.Is(err, ring.ErrPeerGone) {
			t.Fatalf("peer report %v, want ring.ErrPeerGone", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no peer report (want up=%v) after 30 s", up)
	}
}

// ringHashServer serves on a's port what hashServer serves on a TAP
// stack: each connection's bytes are hashed until the FIN and the SHA-256
// is sent back. It stops in t.Cleanup, closing the connections still open
// (a failed test's peer may be gone without a FIN).
func ringHashServer(t *testing.T, a *api.Stack, port uint16) {
	t.Helper()
	ln, err := a.Net().Listen("tcp", net.JoinHostPort(stack4, relItoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				c.SetDeadline(time.Now().Add(120 * time.Second))
				_, sum, err := relHashReader(c)
				if err == nil {
					c.Write(sum[:])
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// ringTransfer sends s from a to the hash server on port and checks the
// SHA-256 it answers with.
func ringTransfer(ctx context.Context, a *api.Stack, port uint16, s relStream) error {
	c, err := a.Net().DialContext(ctx, "tcp", net.JoinHostPort(stack4, relItoa(port)))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return hashExchange(ctx, c, s)
}
