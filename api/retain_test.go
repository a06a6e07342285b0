package api_test

import (
	"context"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// gVisor's TCP endpoint keeps the last reader a write gave it (a reused
// io.LimitedReader) for as long as the endpoint lives, which after a close
// includes 60 s of TIME-WAIT. These tests hold that what a closed socket's
// writes handed the endpoint lets go of the socket and the caller's memory.

// collected polls, collecting garbage, until n cleanups have run.
func collected(n int64, ran *atomic.Int64) bool {
	return evchantest.Poll(10*time.Second, func() bool {
		runtime.GC()
		return ran.Load() >= n
	})
}

// TestTCPConnNotKeptInTimeWait: conns the server closes first (their
// endpoints wait in TIME-WAIT, gVisor's default 60 s) are garbage once
// closed. Before, the endpoint's last reader was embedded in the TCPConn
// and kept it, its socket and its deadlines, about 3 KiB per connection,
// for the whole TIME-WAIT.
func TestTCPConnNotKeptInTimeWait(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	ln, err := p.B.Net().Listen("tcp", "192.0.2.2:80")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const n = 50
	var ran atomic.Int64
	served := make(chan error, 1)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			runtime.AddCleanup(c.(*api.TCPConn), func(*atomic.Int64) { ran.Add(1) }, &ran)
			buf := make([]byte, 1)
			if _, err := io.ReadFull(c, buf); err != nil {
				served <- err
				return
			}
			if _, err := c.Write(buf); err != nil {
				served <- err
				return
			}
			c.Close() // first: this side's endpoint goes to TIME-WAIT
		}
		served <- nil
	}()
	for i := range n {
		c, err := p.A.Net().DialContext(context.Background(), "tcp", "192.0.2.2:80")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(c); err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("connection %d: read %v, %v", i, b, err)
		}
		c.Close()
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if !collected(n, &ran) {
		t.Fatalf("%d of %d closed conns collected in 10 s: the stack keeps the rest", ran.Load(), n)
	}
}

// TestSendFuncFillNotKept: the fill function of a finished SendFunc, and of
// a finished OpSendFunc, and what it holds, is garbage once the send is
// over, although the socket's endpoint lives on.
func TestSendFuncFillNotKept(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	client, server := dialPair(t, p.A, p.B, 5301)
	ctx := evchantest.Context(t)
	var ran atomic.Int64
	send := func(async bool) {
		msg := make([]byte, 1<<20)
		runtime.AddCleanup(&msg[0], func(*atomic.Int64) { ran.Add(1) }, &ran)
		rest := msg
		fill := func(b []byte) int { k := copy(b, rest); rest = rest[k:]; return k }
		if !async {
			if n, err := client.SendFunc(ctx, len(msg), fill); err != nil || n != len(msg) {
				t.Fatalf("SendFunc: %d, %v", n, err)
			}
			return
		}
		ec := evchantest.New(t, 8)
		op := &api.Op{Kind: api.OpSendFunc, Sock: client, EC: ec, Len: len(msg), Fill: fill}
		if err := p.A.Submit(ctx, false, op); err != nil {
			t.Fatal(err)
		}
		if err := api.Suspend(ctx, 0, op); err != nil {
			t.Fatal(err)
		}
		if n, err := op.Result(); err != nil || n != int64(len(msg)) {
			t.Fatalf("OpSendFunc: %d, %v", n, err)
		}
	}
	got := make(chan int64, 1)
	go func() {
		var total int64
		for total < 2<<20 {
			b, err := server.Recv(ctx)
			if err != nil {
				break
			}
			total += int64(b.Len())
			b.Release()
		}
		got <- total
	}()
	send(false)
	if !collected(1, &ran) {
		t.Fatalf("SendFunc's message not collected in 10 s: the endpoint keeps the fill function")
	}
	send(true)
	if total := <-got; total != 2<<20 {
		t.Fatalf("received %d bytes, want %d", total, 2<<20)
	}
	if !collected(2, &ran) {
		t.Fatalf("%d of 2 sent messages collected in 10 s: the endpoint keeps the fill functions", ran.Load())
	}
}
