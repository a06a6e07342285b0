//go:build linux

package ring

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link/pair"
)

// benchKinds are the links the benchmarks compare, in one run: the ring
// without and with GSO (peer stack in a second process), two TAP devices
// joined by a kernel bridge, without and with offloads (peer in a second
// process; root only, see bench_root_test.go), and pair.New (both
// stacks in this process, a baseline that needs no root). "ring" and "tap"
// move a frame per MSS; "ring-gso" and "tap-offload" up to 64 KiB.
var benchKinds = []string{"ring", "ring-gso", "tap", "tap-offload", "pair"}

// benchDial returns a dialer to the peer stack over the link kind. With a
// ring, each benchmark reports the kicks and wake-ups of this side per op
// (reportRing).
func benchDial(b *testing.B, kind string) func(port uint16) net.Conn {
	var s *stack.Stack
	switch kind {
	case "tap", "tap-offload":
		s = tapStacks(b, kind)
	case "ring", "ring-gso":
		ss := newStackSide(b, Config{GSO: kind == "ring-gso"})
		withHelper(b, ss)
		s = ss.s
		before := ss.link.Stats()
		b.Cleanup(func() {
			st := ss.link.Stats()
			n := float64(max(b.N, 1))
			b.ReportMetric(float64(st.Kicks-before.Kicks)/n, "kicks/op")
			b.ReportMetric(float64(st.Wakeups-before.Wakeups)/n, "wakeups/op")
			b.ReportMetric(float64(st.TxFrames-before.TxFrames+st.RxFrames-before.RxFrames)/n, "frames/op")
		})
	case "pair":
		ea, eb, err := pair.New(pair.Config{})
		if err != nil {
			b.Fatal(err)
		}
		sa, err := newTestStack(b, ea, stackAddr)
		if err != nil {
			b.Fatal(err)
		}
		sb, err := newTestStack(b, eb, peerAddr)
		if err != nil {
			b.Fatal(err)
		}
		stop, err := serveEcho(sb, peerAddr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			stop()
			sa.Close()
			sb.Close()
			// Links first: gVisor's Stack.Wait holds the stack's lock
			// while it waits for them, and a receive loop delivering a
			// last frame needs that lock.
			ea.Close()
			eb.Close()
			ea.Wait()
			eb.Wait()
			sa.Wait()
			sb.Wait()
		})
		s = sa
	}
	return func(port uint16) net.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: peerAddr, Port: port}, ipv4.ProtocolNumber)
		if err != nil {
			b.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(60 * time.Second)) // fail, never hang
		return c
	}
}

// BenchmarkTCPThroughput sends b.N × 64 KiB one way to the peer's sink.
func BenchmarkTCPThroughput(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			dial := benchDial(b, kind)
			c := dial(sinkTCPPort)
			defer c.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(*gonet.TCPConn).CloseWrite()
			var got [8]byte
			if _, err := io.ReadFull(c, got[:]); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if n := binary.LittleEndian.Uint64(got[:]); n != uint64(b.N*len(buf)) {
				b.Fatalf("sink got %d bytes, sent %d", n, b.N*len(buf))
			}
		})
	}
}

// BenchmarkTCPRoundTrip bounces one byte off the peer's echo per op.
func BenchmarkTCPRoundTrip(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(kind, func(b *testing.B) {
			dial := benchDial(b, kind)
			c := dial(echoTCPPort)
			defer c.Close()
			var one [1]byte
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(one[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
