// Package nodetest holds the test helpers netstackd's packages share: two
// zcnet nodes on an in-process wire, and one echo round trip on a socket.
// It owns no transport or service; each test builds those on the nodes.
package nodetest

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/zcnet"
)

// Pair builds two zcnet nodes on an in-process wire and closes them with
// t.Cleanup. The second node holds zcnet.PairAddrsB.
func Pair(t testing.TB) (a, b *zcnet.Node) {
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

// EchoOnce sends msg on c and checks that the peer echoes it back, within
// ten seconds.
func EchoOnce(ctx context.Context, c *api.Socket, msg string) error {
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
