package api_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// TestDropsNoRoom: a UDP receiver whose application takes nothing fills
// its association, the socket stops taking datagrams off the stack, and
// the stack drops the ones that do not fit behind them: every datagram
// sent is either received later or counted in DropsNoRoom, per socket and
// stack-wide; and the socket's zero-copy shadows stay within what the
// stack may hold for it.
func TestDropsNoRoom(t *testing.T) {
	const size, maxSent = 1000, 20000
	p := apitest.NewPair(t, apitest.PairConfig{AssocA: 10 * size, AssocB: 10 * size})
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5009"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5009"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := evchantest.Context(t)
	primeUDP(t, ctx, p, cl, srv)
	stackBefore := p.B.Counters().DropsNoRoom
	sockBefore := srv.Stats().DropsNoRoom
	sent := 0
	for sent < maxSent && srv.Stats().DropsNoRoom == sockBefore {
		for range 100 {
			b, err := p.A.Reserve(size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Send(ctx, b); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	dropped := srv.Stats().DropsNoRoom - sockBefore
	if dropped == 0 {
		t.Fatalf("%d datagrams of %d bytes to a socket nobody reads, none counted as dropped", sent, size)
	}
	// The socket's receive queue in the stack holds at most its receive
	// buffer in payload, and twice that in the receive views the
	// datagrams sit in (one datagram may cross each bound), not the
	// default bound meant for a TCP window.
	var rbs tcpip.ReceiveBufferSizeOption
	if err := p.Pair.B.Netstack().Option(&rbs); err != nil {
		t.Fatal(err)
	}
	us := srv.Stats().UDP
	if us.QueuedBytes > rbs.Default+size || us.QueuedMem > 2*rbs.Default+64<<10 || us.DropsFull == 0 || us.Queued == 0 {
		t.Fatalf("receive queue holds %d datagrams, %d bytes in %d bytes of views (%d dropped full) after %d datagrams; receive buffer %d", us.Queued, us.QueuedBytes, us.QueuedMem, us.DropsFull, sent, rbs.Default)
	}
	received := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		b, err := srv.Recv(rctx)
		cancel()
		if err != nil {
			break
		}
		received++
		b.Release()
	}
	dropped = srv.Stats().DropsNoRoom - sockBefore
	if uint64(received)+dropped != uint64(sent) {
		t.Fatalf("sent %d: received %d + dropped %d", sent, received, dropped)
	}
	if d := p.B.Counters().DropsNoRoom - stackBefore; d != dropped {
		t.Fatalf("stack-wide DropsNoRoom moved by %d, the socket's by %d", d, dropped)
	}
	t.Logf("sent %d, received %d, dropped for lack of room %d", sent, received, dropped)
}
