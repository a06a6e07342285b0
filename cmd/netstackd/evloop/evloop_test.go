package evloop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/zcnet"
)

// TestEventLoopRefusesWhenChannelFull gives one loop a channel of 512
// events, keeping Headroom of them free for sends and accepts: of 400
// idle connections, those beyond the room are closed at accept and
// counted as refused, the others are held and still echo.
func TestEventLoopRefusesWhenChannelFull(t *testing.T) {
	client, server := pair(t)
	srv, err := New(server.API(), 1, 512, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var echoed atomic.Uint64
	ln, err := srv.Listen("echo/tcp", 7, true, &echoed)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 400
	conns := dialMany(ctx, t, client.API(), netip.AddrPortFrom(zcnet.PairAddrsB[0].Addr(), 7), n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for ln.conns.Load()+int64(ln.refused.Load()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the loop's counts, bounded by deadline
	}
	held, refused := ln.conns.Load(), ln.refused.Load()
	t.Logf("%d held, %d refused", held, refused)
	if held+int64(refused) != n || refused == 0 || held < 512-Headroom-8 || held > 512-Headroom+1 {
		t.Fatalf("%d held and %d refused of %d, want about %d held", held, refused, n, 512-Headroom)
	}
	if err := echoOnce(ctx, conns[0], "still here"); err != nil {
		t.Errorf("the first connection: %v", err)
	}
}

// pair builds two zcnet nodes on an in-process wire and closes them with
// t.Cleanup.
func pair(t *testing.T) (client, server *zcnet.Node) {
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
	return a, b
}

// dialMany opens n connections to to.
func dialMany(ctx context.Context, t *testing.T, zs *api.Stack, to netip.AddrPort, n int) []*api.Socket {
	t.Helper()
	conns := make([]*api.Socket, 0, n)
	for i := 0; i < n; i++ {
		c, err := zs.DialTCP(ctx, to)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// echoOnce sends msg on c and reads it back.
func echoOnce(ctx context.Context, c *api.Socket, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.SendFunc(ctx, len(msg), func(p []byte) int { return copy(p, msg) }); err != nil {
		return err
	}
	var got []byte
	for len(got) < len(msg) {
		b, err := c.Recv(ctx)
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("EOF after %q", got)
			}
			return err
		}
		got = append(got, b.Bytes()...)
		b.Release()
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, sent %q", got, msg)
	}
	return nil
}
