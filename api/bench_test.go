package api_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan"
)

// BenchmarkReceive compares ways of receiving one TCP stream over the same
// in-process link, with the same sender (zcnet's net.Conn Write): zcnet's
// hand-off (Recv + Release, no copy), zcnet's net.Conn Read on the Socket
// core (the hand-off, then one copy into the caller's 64 KiB slice), and
// gVisor's gonet adapter Read (the baseline, and the path zcnet's net.Conn
// took before it was rebuilt on the Socket core: endpoint Read straight
// into the caller's slice). MB/s is received payload; allocs/op are per MiB
// received; cpu-ns/op is the process's CPU per MiB, sender and receiver
// together (steadier than MB/s on a shared machine).
//
//	go test -run x -bench Receive -benchmem -count 5 ./api/
func BenchmarkReceive(b *testing.B) {
	const mib = 1 << 20
	for _, mode := range []string{"zcnet-handoff", "zcnet-netconn", "gonet"} {
		b.Run(mode, func(b *testing.B) {
			p := apitest.NewPair(b, apitest.PairConfig{})
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
				nln, err = p.B.Net().Listen("tcp", addr.String())
			case "gonet":
				nln, err = gonet.ListenTCP(p.Pair.B.Netstack(), tcpip.FullAddress{Port: addr.Port()}, ipv4.ProtocolNumber)
			}
			if err != nil {
				b.Fatal(err)
			}
			total := int64(b.N) * mib
			sent := make(chan error, 1)
			go func() {
				c, err := p.A.Net().DialContext(context.Background(), "tcp", addr.String())
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
			cpu := startCPU()
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
			cpu.report(b)
			if err := <-sent; err != nil {
				b.Fatal(err)
			}
			if got != total {
				b.Fatalf("received %d of %d bytes", got, total)
			}
		})
	}
}

// BenchmarkRoundTrip measures 1-byte request/response round trips over the
// in-process link: zcnet's sockets (Recv + SendFunc on the server, the
// net.Conn adapter as client), zcnet's net.Conn adapters on both sides
// (Read + Write), and gVisor's gonet on both sides (the baseline).
// cpu-ns/op is the process's CPU per round trip, both ends together.
//
//	go test -run x -bench RoundTrip -count 5 ./api/
func BenchmarkRoundTrip(b *testing.B) {
	for _, mode := range []string{"zcnet", "zcnet-netconn", "gonet"} {
		b.Run(mode, func(b *testing.B) {
			p := apitest.NewPair(b, apitest.PairConfig{})
			addr := netip.MustParseAddrPort("192.0.2.2:5011")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			served := make(chan error, 1)
			var dial func() (net.Conn, error)
			switch mode {
			case "zcnet":
				ln, err := p.B.ListenTCP(addr)
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					s, err := ln.Accept(ctx)
					if err != nil {
						served <- err
						return
					}
					defer s.Close()
					for {
						buf, err := s.Recv(ctx)
						if err != nil {
							served <- err
							return
						}
						n := buf.Len()
						buf.Release()
						if _, err := s.SendFunc(ctx, n, func(p []byte) int { p[0] = 'y'; return len(p) }); err != nil {
							served <- err
							return
						}
					}
				}()
				dial = func() (net.Conn, error) { return p.A.Net().DialContext(ctx, "tcp", addr.String()) }
			case "zcnet-netconn", "gonet":
				var ln net.Listener
				var err error
				if mode == "gonet" {
					ln, err = gonet.ListenTCP(p.Pair.B.Netstack(), tcpip.FullAddress{Port: addr.Port()}, ipv4.ProtocolNumber)
				} else {
					ln, err = p.B.Net().Listen("tcp", addr.String())
				}
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				go func() {
					c, err := ln.Accept()
					if err != nil {
						served <- err
						return
					}
					defer c.Close()
					one := make([]byte, 1)
					for {
						if _, err := c.Read(one); err != nil {
							served <- err
							return
						}
						if _, err := c.Write(one); err != nil {
							served <- err
							return
						}
					}
				}()
				if mode == "zcnet-netconn" {
					dial = func() (net.Conn, error) { return p.A.Net().DialContext(ctx, "tcp", addr.String()) }
					break
				}
				dial = func() (net.Conn, error) {
					return gonet.DialContextTCP(ctx, p.Pair.A.Netstack(), tcpip.FullAddress{Addr: tcpip.AddrFrom4(addr.Addr().As4()), Port: addr.Port()}, ipv4.ProtocolNumber)
				}
			}
			c, err := dial()
			if err != nil {
				b.Fatal(err)
			}
			if tc, ok := c.(interface{ SetNoDelay(bool) error }); ok {
				tc.SetNoDelay(true)
			}
			one := make([]byte, 1)
			cpu := startCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rt/s")
			c.Close()
			<-served
		})
	}
}

// BenchmarkIdleConnections opens 10 000 connections that wait for data and
// reports memory (heap and goroutine stacks) and goroutines per connection: zcnet's event style (a
// pending receive op on a shared channel, no goroutine) against gonet's (a
// goroutine blocked in Read per connection, the way net.Conn code waits).
//
//	go test -run x -bench IdleConnections -benchtime 1x -count 3 ./api/
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 10000
	for _, mode := range []string{"zcnet", "gonet"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				idle(b, mode, conns)
			}
		})
	}
}

func idle(b *testing.B, mode string, conns int) {
	p := apitest.NewPair(b, apitest.PairConfig{AssocA: 64 << 10, AssocB: 64 << 10})
	defer p.B.Close()
	defer p.A.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	addr := netip.MustParseAddrPort("192.0.2.2:5012")
	ec, err := evchan.New(evchan.Config{Capacity: 2 * conns})
	if err != nil {
		b.Fatal(err)
	}
	defer ec.Close()
	var (
		zln *api.Socket
		gln net.Listener
	)
	if mode == "zcnet" {
		zln, err = p.B.ListenTCP(addr)
		defer zln.Close()
	} else {
		gln, err = gonet.ListenTCP(p.Pair.B.Netstack(), tcpip.FullAddress{Port: addr.Port()}, ipv4.ProtocolNumber)
		defer gln.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	var clients []*api.Socket
	var servers []io.Closer
	for i := 0; i < conns; i++ {
		c, err := p.A.DialTCP(ctx, addr)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		if mode == "zcnet" {
			s, err := zln.Accept(ctx)
			if err != nil {
				b.Fatal(err)
			}
			servers = append(servers, s)
			if err := p.B.Submit(ctx, false, &api.Op{Kind: api.OpRecv, Sock: s, EC: ec}); err != nil {
				b.Fatal(err)
			}
		} else {
			s, err := gln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			servers = append(servers, s)
			go func() { s.Read(make([]byte, 1)) }()
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// Goroutine stacks are not heap: count both.
	used := func(m *runtime.MemStats) float64 { return float64(m.HeapInuse + m.StackInuse) }
	b.ReportMetric((used(&after)-used(&before))/float64(conns), "B/conn")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(conns), "goroutines/conn")
	for _, s := range servers {
		s.Close()
	}
	for _, c := range clients {
		c.Close()
	}
}

// cpuMeter reports the process's CPU time per operation of a benchmark
// (cpu-ns/op), server and client together: start it after the set-up,
// report after the timed loop.
type cpuMeter struct{ start time.Duration }

func startCPU() cpuMeter {
	t, _ := processCPU()
	return cpuMeter{start: t}
}

func (m cpuMeter) report(b *testing.B) {
	t, ok := processCPU()
	if !ok || b.N == 0 {
		return
	}
	b.ReportMetric(float64((t-m.start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
