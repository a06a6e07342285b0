package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTCPEchoIntegrity sends random data through an echo server on B and
// checks every byte that comes back, over IPv4 and IPv6.
func TestTCPEchoIntegrity(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	na, nb := p.A.Net(), p.B.Net()
	for _, tc := range []struct{ name, listen, dial string }{
		{"v4", "192.0.2.2:7", "192.0.2.2:7"},
		{"v6", "[2001:db8::2]:7", "[2001:db8::2]:7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := nb.Listen("tcp", tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer c.Close()
				_, err = io.Copy(c, c)
				done <- err
			}()
			c, err := na.DialContext(evchantest.Context(t), "tcp", tc.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const size = 4 << 20
			data := make([]byte, size)
			rand.Read(data)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(data)
				if err == nil {
					err = c.(*api.TCPConn).CloseWrite()
				}
				werr <- err
			}()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if n != size {
				t.Fatalf("echoed %d bytes, want %d", n, size)
			}
			if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("echoed data differs from what was sent")
			}
			if err := <-done; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}
}

func TestHTTPOverZcnet(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	na, nb := p.A.Net(), p.B.Net()
	ln, err := nb.Listen("tcp", "192.0.2.2:80")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s from %s", r.RemoteAddr, r.Host)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	tr := &http.Transport{DialContext: na.DialContext}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for i := 0; i < 3; i++ { // keep-alive reuses the connection
		resp, err := cl.Get("http://192.0.2.2/")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("hello 192.0.2.1:")) {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
}

func TestUDPPacketConn(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	na, nb := p.A.Net(), p.B.Net()
	for _, tc := range []struct{ name, srv string }{{"v4", "192.0.2.2:9000"}, {"v6", "[2001:db8::2]:9000"}} {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := nb.ListenPacket("udp", tc.srv)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			c, err := na.DialContext(evchantest.Context(t), "udp", tc.srv)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := []byte("datagram " + tc.name)
			// UDP may lose the first datagram while ARP/NDP resolves; resend
			// until the server has it, a bounded number of times.
			pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 1500)
			var n int
			var from net.Addr
			got := make(chan error, 1)
			go func() {
				var err error
				n, from, err = pc.ReadFrom(buf)
				got <- err
			}()
			var rerr error
		send:
			for i := 0; i < 50; i++ {
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				select {
				case rerr = <-got:
					break send
				case <-time.After(200 * time.Millisecond):
				}
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
			if !bytes.Equal(buf[:n], msg) {
				t.Fatalf("got %q want %q", buf[:n], msg)
			}
			if from.String() != c.LocalAddr().String() {
				t.Fatalf("sender %v, want %v", from, c.LocalAddr())
			}
			// Reply with WriteTo and read it on the connected socket.
			if _, err := pc.WriteTo([]byte("reply"), from); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err = c.Read(buf)
			if err != nil || string(buf[:n]) != "reply" {
				t.Fatalf("reply: %q, %v", buf[:n], err)
			}
		})
	}
}

func TestErrorsLikeNet(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	na, nb := p.A.Net(), p.B.Net()

	t.Run("refused", func(t *testing.T) {
		_, err := na.DialContext(evchantest.Context(t), "tcp", "192.0.2.2:1")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial closed port: %v, want ECONNREFUSED", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "dial" {
			t.Fatalf("want *net.OpError with Op dial, got %#v", err)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct{ network, addr string }{
			{"tcp", "example.com:80"}, {"tcp", "192.0.2.2"}, {"tcp", "192.0.2.2:http"},
			{"sctp", "192.0.2.2:1"}, {"tcp4", "[2001:db8::2]:1"}, {"tcp6", "192.0.2.2:1"}, {"tcp", ":80"},
		} {
			if _, err := na.DialContext(evchantest.Context(t), tc.network, tc.addr); !errors.Is(err, api.ErrAddress) && !errors.Is(err, api.ErrNetwork) {
				t.Errorf("Dial(%q, %q) = %v, want ErrAddress or ErrNetwork", tc.network, tc.addr, err)
			}
		}
	})

	ln, err := nb.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	t.Run("address in use", func(t *testing.T) {
		if _, err := nb.Listen("tcp", ":7"); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("second listen: %v, want EADDRINUSE", err)
		}
	})
	t.Run("read deadline", func(t *testing.T) {
		c, err := na.DialContext(evchantest.Context(t), "tcp", "192.0.2.2:7")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srv := <-accepted
		defer srv.Close()
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err = c.Read(make([]byte, 10))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past deadline: %v", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("deadline error is not a net.Error timeout: %#v", err)
		}
		// Clearing the deadline makes the conn usable again.
		c.SetReadDeadline(time.Time{})
		srv.Write([]byte("x"))
		if n, err := c.Read(make([]byte, 10)); n != 1 || err != nil {
			t.Fatalf("read after clearing deadline: %d, %v", n, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, err := na.DialContext(evchantest.Context(t), "tcp", "192.0.2.2:7")
		if err != nil {
			t.Fatal(err)
		}
		srv := <-accepted
		defer srv.Close()
		blocked := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			blocked <- err
		}()
		c.Close()
		if err := <-blocked; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read after Close: %v, want net.ErrClosed", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after Close: %v, want net.ErrClosed", err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("eof and reset", func(t *testing.T) {
		c, err := na.DialContext(evchantest.Context(t), "tcp", "192.0.2.2:7")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srv := <-accepted
		srv.Close()
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("read after peer close: %v, want io.EOF", err)
		}
	})
	t.Run("dial context deadline", func(t *testing.T) {
		// 192.0.2.3 is on-link but nobody answers ARP: the dial must end
		// with the context.
		c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := na.DialContext(c, "tcp", "192.0.2.3:7")
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("dial with expired context: %v", err)
		}
	})
	t.Run("udp closed", func(t *testing.T) {
		pc, err := na.ListenPacket("udp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		pc.Close()
		if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.2:9"))); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WriteTo after Close: %v", err)
		}
	})
}

var os_ErrDeadlineExceeded = os.ErrDeadlineExceeded

// TestUDPEmptyDatagram checks that an empty datagram is received as one, of
// no bytes, in its place between its neighbours, as in package net.
func TestUDPEmptyDatagram(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	pc, err := p.B.Net().ListenPacket("udp", "192.0.2.2:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := p.A.Net().DialContext(evchantest.Context(t), "udp", "192.0.2.2:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	// The first datagram may be lost while ARP resolves: send "first" until
	// one arrives (a bounded number of times), then the empty one and a
	// last one, which the in-process link keeps in order.
	got := make(chan string, 64)
	go func() {
		for i := 0; i < 64; i++ {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				close(got)
				return
			}
			got <- fmt.Sprintf("%q", buf[:n])
		}
	}()
	var first string
	for i := 0; i < 50 && first == ""; i++ {
		if _, err := c.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		select {
		case first = <-got:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if first != `"first"` {
		t.Fatalf("first datagram: %s", first)
	}
	for _, m := range []string{"", "last"} {
		if n, err := c.Write([]byte(m)); err != nil || n != len(m) {
			t.Fatalf("Write(%q) = %d, %v", m, n, err)
		}
	}
	var seq []string
	for len(seq) < 2 {
		s, ok := <-got
		if !ok {
			t.Fatalf("reader stopped after %v", seq)
		}
		if s == `"first"` { // a duplicate of the priming datagram
			continue
		}
		seq = append(seq, s)
	}
	if seq[0] != `""` || seq[1] != `"last"` {
		t.Fatalf("received %v, want the empty datagram and then \"last\"", seq)
	}
}
