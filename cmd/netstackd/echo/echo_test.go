package echo

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api/zcnet"
	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// pair builds two zcnet nodes on an in-process wire and returns the
// client's and the server's sockets and the server's address.
func pair(t *testing.T) (client, server transport.Transport, serverAddr netip.Addr) {
	t.Helper()
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range []*zcnet.Node{a, b} {
			if err := n.Close(); err != nil {
				t.Errorf("closing a node: %v", err)
			}
		}
	})
	return transport.NewZC(a.API(), a.Stack()), transport.NewZC(b.API(), b.Stack()), zcnet.PairAddrsB[0].Addr()
}

// changes one is caught, with the round and the offset.
func TestEchoDetectsCorruption(t *testing.T) {
	client, server, serverAddr := pair(t)
	ln, err := server.ListenTCP(netip.AddrPortFrom(netip.Addr{}, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Echoes, but flips a bit of the 1000th byte of the stream.
		transport.AcceptLoop(ctx, ln, &wg, func(c transport.Conn) {
			seen := 0
			for {
				ch, err := c.Recv(ctx)
				if err != nil {
					return
				}
				p := append([]byte(nil), ch.Bytes()...)
				ch.Release()
				if i := 999 - seen; i >= 0 && i < len(p) {
					p[i] ^= 0x20
				}
				seen += len(p)
				if _, err := transport.SendBytes(ctx, c, p); err != nil {
					return
				}
			}
		})
	}()
	res, err := Run(ctx, client, netip.AddrPortFrom(serverAddr, 7), Config{Count: 10, Size: 300, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "round 3: byte 99 differs") {
		t.Fatalf("err = %v; want round 3 (bytes 900-1199), byte 99", err)
	}
	if res == nil || res.OK != 3 {
		t.Fatalf("result %+v: want the 3 good rounds counted", res)
	}
}
