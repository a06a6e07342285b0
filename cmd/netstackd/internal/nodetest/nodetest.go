// Package nodetest holds the test helpers netstackd's packages share: two
// zcnet nodes on an in-process wire. It owns no transport or service; each
// test builds those on the nodes.
package nodetest

import (
	"testing"

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
