package stack_test

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// BenchmarkTCPBuffer measures one TCP stream over the in-process pair with
// different default/max buffer sizes; it justifies DefaultTCPSendBuffer and
// DefaultTCPReceiveBuffer. gVisor's own defaults (1 MiB, max 4 MiB) are the
// baseline.
func BenchmarkTCPBuffer(b *testing.B) {
	for _, tc := range []struct {
		name string
		sz   stack.BufferSizes
	}{
		{"gvisor-1MiB", stack.BufferSizes{Min: 4 << 10, Default: 1 << 20, Max: 4 << 20}},
		{"4MiB", stack.BufferSizes{Min: 4 << 10, Default: 4 << 20, Max: 16 << 20}},
		{"16MiB", stack.BufferSizes{Min: 4 << 10, Default: 16 << 20, Max: 32 << 20}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := stacktest.NewPair(b, stacktest.Config{Stack: stack.Options{TCPSendBuffer: tc.sz, TCPReceiveBuffer: tc.sz}})
			benchStream(b, p)
		})
	}
}

func benchStream(b *testing.B, p *stacktest.Pair) {
	ln, err := apitest.Net(b, p.B).Listen("tcp", "192.0.2.2:9")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := apitest.Net(b, p.A).DialContext(context.Background(), "tcp", "192.0.2.2:9")
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.(*api.TCPConn).CloseWrite()
	if n := <-got; n != int64(b.N*len(chunk)) {
		b.Fatal(fmt.Sprintf("received %d of %d bytes", n, b.N*len(chunk)))
	}
	b.StopTimer()
	c.Close()
}
