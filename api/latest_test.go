package api_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestLatestWins: a UDP receiver in latest-wins mode that does not keep up
// keeps the newest datagrams and drops (and counts) the oldest.
func TestLatestWins(t *testing.T) {
	const size, total = 100, 100
	p := apitest.NewPair(t, apitest.PairConfig{AssocA: 10 * size, AssocB: 10 * size}) // room for ten datagrams
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5008"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5008"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := evchantest.Context(t)
	primeUDP(t, ctx, p, cl, srv)
	if err := srv.SetLatestWins(true); err != nil {
		t.Fatal(err)
	}
	tcp, _ := p.B.NewTCP(false)
	if err := tcp.SetLatestWins(true); err == nil {
		t.Fatal("latest-wins accepted on a TCP socket")
	}
	tcp.Close()
	before := srv.Stats()
	sendNumbered(t, ctx, p, cl, total, size)
	// The worker takes every datagram off the stack as it arrives.
	if !evchantest.Poll(10*time.Second, func() bool { return srv.Stats().RxHandoffs-before.RxHandoffs == total }) {
		t.Fatalf("worker took %d of %d datagrams", srv.Stats().RxHandoffs-before.RxHandoffs, total)
	}
	var got []int
	for {
		b, err := srv.TryRecv()
		if errors.Is(err, api.ErrWouldBlock) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, int(b.Bytes()[0]))
		b.Release()
	}
	if len(got) != 10 {
		t.Fatalf("kept %d datagrams %v, want the newest 10", len(got), got)
	}
	for i, v := range got {
		if v != total-10+i {
			t.Fatalf("kept %v, want %d..%d in order", got, total-10, total-1)
		}
	}
	if d := srv.Stats().DropsOldest - before.DropsOldest; d != total-10 {
		t.Fatalf("DropsOldest = %d, want %d", d, total-10)
	}
}
