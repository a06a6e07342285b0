package api_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/zcnet/zcnet/api"
)

// BenchmarkReceive compares ways of receiving one TCP stream over the same
// in-process link, with the same sender: zcnet's hand-off (Recv + Release,
// no copy), zcnet's net.Conn Read (one copy into the caller's slice), and
// gVisor's gonet adapter Read (the baseline). MB/s is received payload;
// allocs/op are per MiB received.
//
//	go test -run x -bench Receive -benchmem -count 5 ./api/
func BenchmarkReceive(b *testing.B) {
	const mib = 1 << 20
	for _, mode := range []string{"zcnet-handoff", "zcnet-netconn", "gonet"} {
		b.Run(mode, func(b *testing.B) {
			p := newZCPair(b, 0)
			addr := netip.MustParseAddrPort("192.0.2.2:5010")
			var (
				ln   *api.Socket
				nln  net.Listener
				err  error
				recv func() (int, error)
			)
			switch mode {
			case "zcnet-handoff":
				ln, err = p.B.ListenTCP(addr)
			case "zcnet-netconn":
				nln, err = api.NewNet(p.Pair.B).Listen("tcp", addr.String())
			case "gonet":
				nln, err = gonet.ListenTCP(p.Pair.B.Netstack(), tcpip.FullAddress{Port: addr.Port()}, ipv4.ProtocolNumber)
			}
			if err != nil {
				b.Fatal(err)
			}
			total := int64(b.N) * mib
			sent := make(chan error, 1)
			go func() {
				c, err := api.NewNet(p.Pair.A).DialContext(context.Background(), "tcp", addr.String())
				if err != nil {
					sent <- err
					return
				}
				defer c.Close()
				chunk := make([]byte, 256<<10)
				for left := total; left > 0; left -= int64(len(chunk)) {
					if _, err := c.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
						sent <- err
						return
					}
				}
				c.(*api.TCPConn).CloseWrite()
				sent <- nil
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if ln != nil {
				defer ln.Close()
				s, err := ln.Accept(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				recv = func() (int, error) {
					buf, err := s.Recv(ctx)
					if err != nil {
						return 0, err
					}
					n := buf.Len()
					buf.Release()
					return n, nil
				}
			} else {
				defer nln.Close()
				c, err := nln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				rb := make([]byte, 64<<10)
				recv = func() (int, error) { return c.Read(rb) }
			}
			b.SetBytes(mib)
			b.ReportAllocs()
			b.ResetTimer()
			var got int64
			for {
				n, err := recv()
				got += int64(n)
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := <-sent; err != nil {
				b.Fatal(err)
			}
			if got != total {
				b.Fatalf("received %d of %d bytes", got, total)
			}
		})
	}
}
