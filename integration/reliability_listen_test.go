package integration

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// TestReliabilityListenUnspecified: "0.0.0.0:port" and "[::]:port" are
// wildcard addresses in package net (http.ListenAndServe("0.0.0.0:8080")
// is everyday code), so the net-shaped adapters and the socket API must
// take them as "every address", as they take an empty host; and a
// connection accepted on such a listener must still be received without a
// copy (its zero-copy flow must match).
//
// It fails today: the unspecified address reaches gVisor's Bind as a
// specific address, which no NIC has (EADDRNOTAVAIL), and the zero-copy
// flow is registered under it, which no packet's key names.
func TestReliabilityListenUnspecified(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{PoolB: 16 << 20})
	n := p.B.Net()
	for i, addr := range []string{"0.0.0.0", "::"} {
		port := 7440 + 2*i
		hp := net.JoinHostPort(addr, relItoa(uint16(port)))
		t.Run("Listen "+hp, func(t *testing.T) {
			ln, err := n.Listen("tcp", hp)
			if err != nil {
				t.Fatalf("Listen(tcp, %q): %v; package net listens on every address", hp, err)
			}
			ln.Close()
		})
		t.Run("ListenPacket "+hp, func(t *testing.T) {
			pc, err := n.ListenPacket("udp", hp)
			if err != nil {
				t.Fatalf("ListenPacket(udp, %q): %v; package net listens on every address", hp, err)
			}
			pc.Close()
		})
		t.Run("ListenTCP zero-copy "+hp, func(t *testing.T) {
			ln, err := p.B.ListenTCP(netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port+1)))
			if err != nil {
				t.Fatalf("api ListenTCP(%s): %v", hp, err)
			}
			defer ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s := newRelStream(7, 4<<20)
			sent := make(chan error, 1)
			go func() {
				c, err := p.A.Net().DialContext(ctx, "tcp", net.JoinHostPort(stacktest.AddrB.String(), relItoa(uint16(port+1))))
				if err != nil {
					sent <- err
					return
				}
				defer c.Close()
				if _, err = s.writeTo(c); err == nil {
					err = c.(*api.TCPConn).CloseWrite()
				}
				sent <- err
			}()
			sock, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sock.Close()
			got, sum, err := relRecvAll(ctx, sock)
			if err != nil || got != int64(s.size) || sum != s.sum() {
				t.Fatalf("received %d of %d bytes, hash equal %v, %v", got, s.size, sum == s.sum(), err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			st := sock.Stats()
			if handed := float64(st.RxHandedOver) / float64(got); handed < 0.99 {
				t.Errorf("only %.1f%% of the bytes handed over without a copy (%d copied)", 100*handed, st.RxCopied)
			}
		})
	}
}
