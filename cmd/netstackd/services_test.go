package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"
)

// TestEchoBackpressure sends to the event-loop echo service from a peer
// that does not read: the daemon must stop taking data (the sender stalls
// well short of what it wants to send: the daemon's queue of received Bufs
// is bounded by the socket's association), and once the peer reads, every
// byte sent must come back in order.
func TestEchoBackpressure(t *testing.T) {
	env := inprocEnv(t)
	server := env.stacks[1]
	svc := newServices(server, slog.New(slog.DiscardHandler))
	if err := svc.start([]string{"echo"}, iperf3.Port, nil, false); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := env.stacks[0].API.DialTCP(ctx, netip.AddrPortFrom(env.serverAddr, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Send a pattern far beyond every buffer on the way (two send buffers,
	// two receive buffers, the daemon's association) without reading.
	const want = 256 << 20
	pattern := func(off, i int) byte { return byte((off + i) * 7 / 5) }
	sent := 0
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	for sent < want {
		off := sent // fill gets consecutive parts of the chunk
		n, err := c.SendFunc(sctx, min(want-sent, 64<<10), func(p []byte) int {
			for i := range p {
				p[i] = pattern(off, i)
			}
			off += len(p)
			return len(p)
		})
		sent += n
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("send: %v", err)
			}
			break
		}
	}
	scancel()
	if sent >= want {
		t.Fatalf("sent all %d bytes to a peer that does not read: no backpressure", sent)
	}
	t.Logf("stalled after %.1f MiB", float64(sent)/(1<<20))

	// Now read: everything sent comes back, in order.
	got := 0
	for got < sent {
		b, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, sent, err)
		}
		for i, x := range b.Bytes() {
			if x != pattern(got, i) {
				b.Release()
				t.Fatalf("byte %d: %#x, sent %#x", got+i, x, pattern(got, i))
			}
		}
		got += len(b.Bytes())
		b.Release()
	}
	if got != sent {
		t.Fatalf("echoed %d bytes, sent %d", got, sent)
	}
	if v := svc.echoBytes.Load(); v < uint64(sent) {
		t.Errorf("echo counted %d bytes, sent back %d", v, sent)
	}
}
