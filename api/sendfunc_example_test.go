package api_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/evchan"
)

// An asynchronous zero-copy send: Fill writes into the stack's send buffer
// when it has room, and the completion comes on the event channel, so the
// loop that submitted it never waits for the peer.
func Example_sendFuncOp() {
	client, server, done := exampleStacks()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ln, _ := server.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7"))
	conn, _ := client.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:7"))
	peer, _ := ln.Accept(ctx)

	ec, _ := evchan.New(evchan.Config{Capacity: 16})
	defer ec.Close()
	msg := []byte("filled in place")
	op := &api.Op{Kind: api.OpSendFunc, Sock: conn, EC: ec, Len: len(msg),
		Fill: func(p []byte) int { n := copy(p, msg); msg = msg[n:]; return n }}
	if err := client.Submit(ctx, false, op); err != nil {
		fmt.Println(err)
		return
	}
	evs := make([]evchan.Event, 1)
	ec.Next(ctx, evs)
	fmt.Println(api.OpKind(evs[0].Op), evs[0].Result, "bytes sent")

	b, _ := peer.Recv(ctx)
	fmt.Printf("%s\n", b.Bytes())
	b.Release()
	fmt.Println("copied by the sender:", client.Counters().TxCopied)
	// Output:
	// sendfunc 15 bytes sent
	// filled in place
	// copied by the sender: 0
}
