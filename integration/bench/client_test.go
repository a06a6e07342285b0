package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// netDialer is a dialer over zcnet's net adapters, so the client's
// measurements can be tested on two in-process stacks without privileges.
type netDialer struct{ n *api.Net }

func (d netDialer) DialTCP(ctx context.Context, to netip.AddrPort) (streamConn, error) {
	c, err := d.n.DialTCP(ctx, "tcp", netip.AddrPort{}, to)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (d netDialer) DialUDP(to netip.AddrPort) (net.Conn, error) {
	c, err := d.n.DialUDP("udp", netip.AddrPort{}, to)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// TestMeasurements runs every measurement of the client against both server
// flavours (zero-copy sockets, net.Conn adapters) on stack B of an
// in-process pair, with stack A as the client, and checks each yields a
// plausible figure and leaves the server ready for the next.
func TestMeasurements(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	pool, err := dmapool.New(dmapool.Config{Size: 16 << 20, Pin: dmapool.PinPrefer, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Errorf("pool close: %v", err)
		}
	})
	a, err := api.New(p.B, api.Options{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	const d = 150 * time.Millisecond
	for _, flavour := range []string{"zero-copy", "net.Conn"} {
		t.Run(flavour, func(t *testing.T) {
			// Ports differ: the first flavour's connections linger in
			// TIME_WAIT.
			port := uint16(portZC)
			if flavour == "net.Conn" {
				port = portNetConn
			}
			srv := newServer(netip.AddrPortFrom(stacktest.AddrB, port), 30*time.Second, time.Minute)
			defer func() {
				if err := srv.close(10 * time.Second); err != nil {
					t.Error(err)
				}
			}()
			if flavour == "zero-copy" {
				if err := srv.serveZC(a); err != nil {
					t.Fatal(err)
				}
			} else if err := zcnetNet(srv, a.Net()); err != nil {
				t.Fatal(err)
			}
			cl := &client{dial: netDialer{n: apitest.Net(t, p.A)}, grace: 10 * time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, f := range allFigures {
				if f.pinned {
					continue // pinning is tested on its own
				}
				s, err := f.measure(ctx, cl, srv, d)
				if err != nil {
					t.Fatalf("%s: %v", f.key, err)
				}
				if !(s.value > 0) || s.elapsed < d/2 {
					t.Errorf("%s: value %v over %v, want > 0 over about %v", f.key, s.value, s.elapsed, d)
				}
				if f.bulk() {
					if s.bytes <= 0 {
						t.Errorf("%s: %d bytes", f.key, s.bytes)
					}
					if got := gbits(s.bytes, s.elapsed); got != s.value {
						t.Errorf("%s: value %v, but %d bytes in %v is %v Gbit/s", f.key, s.value, s.bytes, s.elapsed, got)
					}
				}
			}
		})
	}
}

// TestDownloadWithoutStreamsLeavesNoPlans checks that a download whose
// dial fails releases its plans, so the next download is not confused.
func TestDownloadWithoutStreamsLeavesNoPlans(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	srv := newServer(netip.AddrPortFrom(stacktest.AddrB, portZC), 30*time.Second, time.Minute)
	defer srv.close(10 * time.Second)
	// Nothing listens on B: the dial is refused.
	cl := &client{dial: netDialer{n: apitest.Net(t, p.A)}, grace: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.download(ctx, srv, 2, 100*time.Millisecond); err == nil {
		t.Fatal("download with nothing listening succeeded")
	}
	if n := len(srv.plans); n != 2 {
		t.Fatalf("%d plans queued, want the 2 unused ones (drained by the next download)", n)
	}
	w := <-srv.plans
	select {
	case <-w.begin:
		if !w.until.Equal(w.start) {
			t.Errorf("abandoned window [%v, %v), want empty", w.start, w.until)
		}
	default:
		t.Error("abandoned window never opened: a handler that took it would wait")
	}
}

// TestSettle checks the drain that keeps one UDP flood's backlog out of the
// next measurement's window (two contenders share a link): settle returns
// only once the count has stopped growing, and fails rather than wait past
// its timeout or its context. Ticks and counts are scripted, so nothing
// depends on timing.
func TestSettle(t *testing.T) {
	script := func(vals ...uint64) (func() uint64, *int) {
		calls := 0
		return func() uint64 {
			v := vals[min(calls, len(vals)-1)]
			calls++
			return v
		}, &calls
	}
	ticks := func(n int) <-chan time.Time {
		ch := make(chan time.Time, n)
		for range n {
			ch <- time.Time{}
		}
		return ch
	}
	ctx := context.Background()

	// Still growing for three ticks (the backlog arriving), then quiet.
	count, calls := script(10, 20, 25, 26, 26, 99)
	if err := settle(ctx, count, ticks(10), nil); err != nil {
		t.Fatalf("settle: %v", err)
	}
	if *calls != 5 {
		t.Errorf("settle read the count %d times, want 5: it returned before the count stopped growing, or after", *calls)
	}

	// Never quiet: the timeout ends the wait with errUnsettled.
	grow := uint64(0)
	expired := make(chan time.Time)
	close(expired)
	err := settle(ctx, func() uint64 { grow++; return grow }, nil, expired)
	if !errors.Is(err, errUnsettled) {
		t.Errorf("settle with an expired timeout: %v, want errUnsettled", err)
	}

	// A cancelled context ends it too.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := settle(cctx, func() uint64 { grow++; return grow }, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("settle with a cancelled context: %v, want context.Canceled", err)
	}
}
