package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/tap"
)

// tapStack is a zcnet stack with the socket API on a fresh TAP device in a
// private namespace whose kernel side is 192.0.2.1 and 2001:db8::1.
type tapStack struct {
	ns   *nstest.NS
	link *tap.Link
	st   *stack.Stack
	api  *api.Stack
}

func newTAPStack(t *testing.T, cfg tap.Config) *tapStack {
	t.Helper()
	ns := nstest.New(t)
	cfg.Name = nstest.UniqueName(t, "zc")
	ts := &tapStack{ns: ns}
	if err := ns.Do(func() (err error) { ts.link, err = tap.Open(cfg); return err }); err != nil {
		t.Fatal(err)
	}
	var err error
	if ts.st, err = stack.New(stack.Options{}); err != nil {
		ts.link.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.st.Close() })
	if _, err := ts.st.AddNIC(ts.link, stack.NICConfig{Addrs: []netip.Prefix{
		netip.MustParsePrefix(stack4 + "/24"), netip.MustParsePrefix(stack6 + "/64"),
	}}); err != nil {
		t.Fatal(err)
	}
	pool, err := dmapool.New(dmapool.Config{Size: 64 << 20, Pin: dmapool.PinPrefer, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(); err != nil {
			t.Errorf("pool: %v", err)
		}
	})
	if ts.api, err = api.New(ts.st, api.Options{Pool: pool}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.api.Close() })
	ns.MustRun("ip", "addr", "add", peer4+"/24", "dev", cfg.Name)
	ns.MustRun("ip", "-6", "addr", "add", peer6+"/64", "dev", cfg.Name, "nodad")
	ns.MustRun("ip", "link", "set", cfg.Name, "up")
	return ts
}

// dialKernel opens a kernel TCP connection from the namespace's kernel side.
func (ts *tapStack) dialKernel(t *testing.T, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := ts.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 20*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func transferSize() int {
	if raceEnabled {
		return 16 << 20
	}
	return 64 << 20
}

// TestZeroCopyOverTAP: the kernel sends a TCP stream through a TAP device
// with offloads (GSO super-frames of up to 64 KiB); the zero-copy socket
// hands at least 99% of it over in the link's own receive buffers, and the
// reverse direction sent with SendFunc copies nothing in user space. IPv4 and
// IPv6, SHA-256 checked.
func TestZeroCopyOverTAP(t *testing.T) {
	ts := newTAPStack(t, tap.Config{Queues: 1})
	size := transferSize()
	for _, tc := range []struct{ name, addr string }{{"v4", stack4 + ":5001"}, {"v6", "[" + stack6 + "]:5001"}} {
		t.Run(tc.name+" kernel to stack", func(t *testing.T) {
			ln, err := ts.api.ListenTCP(netip.MustParseAddrPort(tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			data := make([]byte, size)
			rand.Read(data)
			c := ts.dialKernel(t, tc.addr)
			werr := apitest.SendAll(c.(*net.TCPConn), data)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			sock, err := ln.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sock.Close()
			gsoBefore := ts.link.Stats().RxGSOFrames
			apitest.ReceiveAll(t, ctx, sock, data, werr)
			st := sock.Stats()
			frac := float64(st.RxHandedOver) / float64(size)
			t.Logf("handed over %.3f%% (%d bytes copied) in %d hand-offs; %d GSO super-frames", 100*frac, st.RxCopied, st.RxHandoffs, ts.link.Stats().RxGSOFrames-gsoBefore)
			if frac < 0.99 {
				t.Fatalf("only %.2f%% handed over without a copy: %+v", 100*frac, st)
			}
			if ts.link.Stats().RxGSOFrames == gsoBefore {
				t.Fatal("no GSO super-frame received: offloads are not in effect")
			}
		})
		t.Run(tc.name+" stack to kernel", func(t *testing.T) {
			var ln net.Listener
			kaddr := netip.AddrPortFrom(netip.MustParseAddr(peer4), 5002)
			if tc.name == "v6" {
				kaddr = netip.AddrPortFrom(netip.MustParseAddr(peer6), 5002)
			}
			if err := ts.ns.Do(func() (err error) { ln, err = net.Listen("tcp", kaddr.String()); return err }); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			sum := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					sum <- nil
					return
				}
				defer c.Close()
				h := sha256.New()
				io.Copy(h, c)
				sum <- h.Sum(nil)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			sock, err := ts.api.DialTCP(ctx, kaddr)
			if err != nil {
				t.Fatal(err)
			}
			pos := 0
			n, err := sock.SendFunc(ctx, size, func(p []byte) int {
				for i := range p {
					p[i] = byte((pos + i) % 251)
				}
				pos += len(p)
				return len(p)
			})
			if err != nil || n != size {
				t.Fatalf("SendFunc = %d, %v", n, err)
			}
			st := sock.Stats()
			sock.Close()
			want := make([]byte, size)
			for i := range want {
				want[i] = byte(i % 251)
			}
			ws := sha256.Sum256(want)
			if got := <-sum; !bytes.Equal(got, ws[:]) {
				t.Fatal("kernel received different data")
			}
			if st.TxCopied != 0 || st.TxInPlace != uint64(size) {
				t.Fatalf("SendFunc copy budget: %+v", st.Counters)
			}
		})
	}
}

// TestZeroCopyUDPOverTAP: datagrams of many sizes from a kernel socket
// arrive through the TAP intact, each as one Buf, handed over without a
// copy when it fits one receive view; v4 and v6.
func TestZeroCopyUDPOverTAP(t *testing.T) {
	ts := newTAPStack(t, tap.Config{Queues: 1})
	for _, tc := range []struct{ name, addr string }{{"v4", stack4 + ":5003"}, {"v6", "[" + stack6 + "]:5003"}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := ts.api.ListenUDP(netip.MustParseAddrPort(tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			var c net.Conn
			if err := ts.ns.Do(func() (err error) { c, err = net.Dial("udp", tc.addr); return err }); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// The first datagram may wait for neighbour resolution (and
			// for IPv6 duplicate address detection); each try sends
			// another, and all may arrive.
			primes := 0 // sent after the first
			for i := 0; ; i++ {
				primes = i
				c.Write([]byte("prime"))
				rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
				b, err := srv.Recv(rctx)
				rcancel()
				if err == nil {
					b.Release()
					break
				}
				if i == 20 {
					t.Fatalf("no datagram through: %v", err)
				}
			}
			before := srv.Stats()
			sizes := []int{1, 18, 100, 512, 1000, 1400}
			sent, late := 0, 0
			for round := 0; round < 50; round++ {
				for _, n := range sizes {
					msg := make([]byte, n)
					rand.Read(msg)
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					b, err := srv.Recv(ctx)
					if err != nil {
						t.Fatal(err)
					}
					// A prime the loop above gave up waiting for may
					// arrive now, ahead of msg (no size here is a prime's).
					for string(b.Bytes()) == "prime" {
						late++
						sent += b.Len()
						b.Release()
						if b, err = srv.Recv(ctx); err != nil {
							t.Fatal(err)
						}
					}
					if !bytes.Equal(b.Bytes(), msg) {
						t.Fatalf("datagram of %d bytes arrived as %d different bytes", n, b.Len())
					}
					b.Release()
					sent += n
				}
			}
			if late > primes {
				t.Errorf("%d late primes, but only %d were sent after the first", late, primes)
			}
			st := srv.Stats()
			if got := st.RxHandedOver - before.RxHandedOver; got != uint64(sent) || st.RxCopied != before.RxCopied {
				t.Fatalf("UDP copy budget over %d bytes: handed over %d, copied %d", sent, got, st.RxCopied-before.RxCopied)
			}
		})
	}
}
