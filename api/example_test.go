package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
)

// exampleStacks builds two stacks joined in-process, 192.0.2.1 and
// 192.0.2.2, each with the socket API over its own pool.
func exampleStacks() (client, server *api.Stack, done func()) {
	la, lb, _ := pair.New(pair.Config{})
	var closers []func()
	mk := func(link *pair.Endpoint, addr string) *api.Stack {
		st, _ := stack.New(stack.Options{})
		st.AddNIC(link, stack.NICConfig{Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}})
		pool, _ := dmapool.New(dmapool.Config{Size: 16 << 20, Pin: dmapool.PinPrefer, Logger: slog.New(slog.DiscardHandler)})
		s, _ := api.New(st, api.Options{Pool: pool})
		closers = append(closers, func() { s.Close(); st.Close(); pool.Close() })
		return s
	}
	client, server = mk(la, "192.0.2.1/24"), mk(lb, "192.0.2.2/24")
	return client, server, func() {
		for _, c := range closers {
			c()
		}
	}
}

// An echo server in the event style: one event channel carries every
// completion — accepted connections, received buffers, finished sends — and
// one loop handles them. Received data is echoed from the buffer it arrived
// in: no copy in user space.
func Example_echoServer() {
	client, server, done := exampleStacks()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ec, _ := evchan.New(evchan.Config{Capacity: 1024})
	defer ec.Close()
	ln, _ := server.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7"))
	server.Submit(ctx, false, &api.Op{Kind: api.OpAccept, Sock: ln, EC: ec})
	go func() {
		evs := make([]evchan.Event, 64)
		for {
			n, err := ec.Next(ctx, evs)
			if err != nil {
				return
			}
			for _, ev := range evs[:n] {
				switch api.OpKind(ev.Op) {
				case api.OpAccept:
					conn, _ := api.SocketOf(ev)
					server.Submit(ctx, false, &api.Op{Kind: api.OpRecvMulti, Sock: conn, EC: ec, Data: conn})
				case api.OpRecvMulti:
					conn := ev.Data.(*api.Socket)
					if b, ok := api.BufOf(ev); ok {
						server.Submit(ctx, false, &api.Op{Kind: api.OpSend, Sock: conn, EC: ec, Buf: b})
					}
					if ev.Flags&api.FlagEOF != 0 {
						server.Submit(ctx, false, &api.Op{Kind: api.OpClose, Sock: conn, EC: ec})
					}
				}
			}
		}
	}()

	c, _ := client.Net().DialContext(ctx, "tcp", "192.0.2.2:7")
	defer c.Close()
	c.Write([]byte("hello, zero-copy world"))
	c.(*api.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(c)
	fmt.Printf("%s\n", reply)
	// Output: hello, zero-copy world
}

// A UDP receiver that wants only the freshest data — sensor readings, game
// state — turns on latest-wins: when it falls behind, the oldest queued
// datagrams are dropped, not the newest.
func Example_latestWins() {
	client, server, done := exampleStacks()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rx, _ := server.ListenUDP(netip.MustParseAddrPort("192.0.2.2:9000"))
	tx, _ := client.DialUDP(netip.MustParseAddrPort("192.0.2.2:9000"))
	send := func(s string) {
		b, _ := client.Reserve(len(s))
		copy(b.Bytes(), s)
		tx.Send(ctx, b)
	}
	// The first datagram may wait for ARP: send it and receive it first.
	send("reading 0")
	b, _ := rx.Recv(ctx)
	b.Release()

	// Shrink the socket's association from the default 4 MiB to room for
	// three readings, and keep the latest.
	rx.Disassoc(server.Pool(), api.DefaultAssoc-3*len("reading 0"))
	rx.SetLatestWins(true)
	for i := 1; i <= 9; i++ {
		send(fmt.Sprintf("reading %d", i))
	}
	evchantest.Poll(10*time.Second, func() bool { return rx.Stats().RxHandoffs == 10 })
	for {
		b, err := rx.TryRecv()
		if err != nil {
			break
		}
		fmt.Println(string(b.Bytes()))
		b.Release()
	}
	fmt.Println("dropped:", rx.Stats().DropsOldest)
	// Output:
	// reading 7
	// reading 8
	// reading 9
	// dropped: 6
}
