package api_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api/apitest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// BenchmarkHTTP serves net/http (a 1 KiB body, the bench's http_1k) over
// zcnet's net.Conn adapters and over gVisor's gonet, on the in-process
// link, and requests it from 8 kept-alive connections of an http.Client on
// the other stack of the pair (the same adapters). The client shares the
// server's process, so this is for profiling and allocation counts only;
// integration/bench's http_1k, with wrk in its own process, is the figure.
// net/http moves the read deadline several times per request and aborts a
// background Read with one: the path this exercises beside Read and Write.
// cpu-ns/op is the process's CPU per request, client and server together.
//
//	go test -run x -bench HTTP -benchmem -count 5 ./api/
func BenchmarkHTTP(b *testing.B) {
	body := bytes.Repeat([]byte("z"), 1024)
	for _, mode := range []string{"zcnet-netconn", "gonet"} {
		b.Run(mode, func(b *testing.B) {
			p := apitest.NewPair(b, apitest.PairConfig{})
			addr := netip.MustParseAddrPort("192.0.2.2:5013")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var ln net.Listener
			var err error
			var dial func(ctx context.Context, network, a string) (net.Conn, error)
			if mode == "gonet" {
				ln, err = gonet.ListenTCP(p.Pair.B.Netstack(), tcpip.FullAddress{Port: addr.Port()}, ipv4.ProtocolNumber)
				dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
					return gonet.DialContextTCP(ctx, p.Pair.A.Netstack(), tcpip.FullAddress{Addr: tcpip.AddrFrom4(addr.Addr().As4()), Port: addr.Port()}, ipv4.ProtocolNumber)
				}
			} else {
				ln, err = p.B.Net().Listen("tcp", addr.String())
				dial = p.A.Net().DialContext
			}
			if err != nil {
				b.Fatal(err)
			}
			hs := &http.Server{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "application/octet-stream")
					w.Write(body)
				}),
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       time.Minute,
			}
			served := make(chan error, 1)
			go func() { served <- hs.Serve(ln) }()
			tr := &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 8}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "http://" + addr.String() + "/"
			b.SetParallelism(4) // 4 × GOMAXPROCS clients
			cpu := startCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					n, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || n != int64(len(body)) {
						b.Errorf("body: %d bytes, %v", n, err)
						return
					}
				}
			})
			b.StopTimer()
			cpu.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			tr.CloseIdleConnections()
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			defer scancel()
			if err := hs.Shutdown(sctx); err != nil {
				b.Fatal(err)
			}
			if err := <-served; err != http.ErrServerClosed {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkNetConnSetReadDeadline moves a conn's read deadline as net/http
// does around each request (a time ahead, cleared, one in the past to abort
// a background Read, cleared), and reports what that costs per request.
//
//	go test -run x -bench NetConnSetReadDeadline -benchmem ./api/
func BenchmarkNetConnSetReadDeadline(b *testing.B) {
	p := apitest.NewPair(b, apitest.PairConfig{})
	addr := netip.MustParseAddrPort("192.0.2.2:5014")
	ln, err := p.B.Net().Listen("tcp", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := p.A.Net().DialContext(context.Background(), "tcp", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if s, ok := <-accepted; ok {
		defer s.Close()
	}
	past := time.Unix(1, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		c.SetReadDeadline(time.Time{})
		c.SetReadDeadline(past)
		c.SetReadDeadline(time.Time{})
	}
}
