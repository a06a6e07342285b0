package apitest_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/stack/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNet carries a stream between the adapters apitest.Net builds on the
// two stacks of a pair; its cleanup then checks that no pool buffer leaked.
func TestNet(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	na, nb := apitest.Net(t, p.A), apitest.Net(t, p.B)
	ln, err := nb.Listen("tcp", "192.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := na.DialContext(ctx, "tcp", "192.0.2.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := bytes.Repeat([]byte("apitest "), 1<<14)
	if err := <-apitest.SendAll(c.(*api.TCPConn), data); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("received %d bytes, want the %d sent", len(b), len(data))
	}
}
