package api_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// BenchmarkUDPReceive receives 64-byte datagrams over the in-process link,
// in bursts of 32 from one sender (zcnet's Send): through zcnet's zero-copy
// RecvMsg (+ Release), zcnet's net.PacketConn ReadFrom (one copy each), and
// gVisor's gonet UDPConn ReadFrom (the baseline). One op is one datagram
// received; the sender's work is in it too, so this compares receive paths,
// it is not a figure of the receive path's cost (the bench in
// integration/bench is, with the sender in its own process).
//
//	go test -run x -bench UDPReceive -benchmem -count 5 ./api/
func BenchmarkUDPReceive(b *testing.B) {
	const burst, size = 32, 64
	for _, mode := range []string{"zcnet-recvmsg", "zcnet-netconn", "gonet"} {
		b.Run(mode, func(b *testing.B) {
			p := apitest.NewPair(b, apitest.PairConfig{})
			ctx := evchantest.Context(b)
			addr := netip.MustParseAddrPort("192.0.2.2:5040")
			primeNeighbours(b, ctx, p)
			var recv func() (int, error)
			switch mode {
			case "zcnet-recvmsg":
				srv, err := p.B.ListenUDP(addr)
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				bufs := make([]api.Buf, burst)
				recv = func() (int, error) {
					n, _, err := srv.RecvMsg(ctx, bufs)
					for _, buf := range bufs[:n] {
						buf.Release()
					}
					return n, err
				}
			case "zcnet-netconn":
				pc, err := p.B.Net().ListenUDP("udp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer pc.Close()
				buf := make([]byte, 2048)
				recv = func() (int, error) {
					pc.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _, err := pc.ReadFrom(buf)
					return 1, err
				}
			case "gonet":
				pc, err := gonet.DialUDP(p.Pair.B.Netstack(), &tcpip.FullAddress{Port: addr.Port()}, nil, ipv4.ProtocolNumber)
				if err != nil {
					b.Fatal(err)
				}
				defer pc.Close()
				buf := make([]byte, 2048)
				recv = func() (int, error) {
					pc.SetReadDeadline(time.Now().Add(10 * time.Second))
					_, _, err := pc.ReadFrom(buf)
					return 1, err
				}
			}
			cl, err := p.A.DialUDP(addr)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			send := func() {
				for range burst {
					buf, err := p.A.Reserve(size)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := cl.Send(ctx, buf); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ResetTimer()
			for done := 0; done < b.N; done += burst {
				send()
				drain(b, recv, burst)
			}
		})
	}
}

func drain(b *testing.B, recv func() (int, error), n int) {
	for got := 0; got < n; {
		k, err := recv()
		if err != nil {
			b.Fatalf("received %d of a burst of %d: %v", got, n, err)
		}
		got += k
	}
}

// primeNeighbours resolves the pair's link addresses both ways (datagrams
// sent while they are resolved may be dropped), with sockets of its own.
func primeNeighbours(b *testing.B, ctx context.Context, p *apitest.Pair) {
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5041"))
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	cl, err := p.A.DialUDP(srv.LocalAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	primeUDP(b, ctx, p, cl, srv)
}
