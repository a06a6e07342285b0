package api_test

import (
	"net/netip"
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestRecvMsgSenders: datagrams from several senders, received in one
// RecvMsg batch and one by one with Recv, each carry their own sender in
// Buf.From (and RecvMsg returns the first one's).
func TestRecvMsgSenders(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	defer p.B.Close()
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5010"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := evchantest.Context(t)
	const senders, rounds = 3, 4
	var cls []*api.Socket
	for range senders {
		cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:5010"))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		primeUDP(t, ctx, p, cl, srv)
		cls = append(cls, cl)
	}
	send := func() map[byte]netip.AddrPort {
		want := map[byte]netip.AddrPort{}
		for r := range rounds {
			for i, cl := range cls {
				b, err := p.A.Reserve(1)
				if err != nil {
					t.Fatal(err)
				}
				tag := byte(r*senders + i)
				b.Bytes()[0] = tag
				want[tag] = cl.LocalAddr()
				if _, err := cl.Send(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
		}
		return want
	}
	check := func(b api.Buf, want map[byte]netip.AddrPort) {
		t.Helper()
		tag := b.Bytes()[0]
		if b.From() != want[tag] {
			t.Fatalf("datagram %d: From %v, sent by %v", tag, b.From(), want[tag])
		}
		delete(want, tag)
		b.Release()
	}

	want := send()
	bufs := make([]api.Buf, senders*rounds)
	for len(want) > 0 {
		n, first, err := srv.RecvMsg(ctx, bufs)
		if err != nil {
			t.Fatal(err)
		}
		if first != bufs[0].From() {
			t.Fatalf("RecvMsg returned %v, the first datagram's From is %v", first, bufs[0].From())
		}
		for _, b := range bufs[:n] {
			check(b, want)
		}
	}

	want = send()
	for len(want) > 0 {
		b, err := srv.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		check(b, want)
	}
}
