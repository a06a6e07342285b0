package stacktest_test

import (
	"testing"

	"go.uber.org/goleak"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wrapped records that the stack attached to it rather than to the pair's
// end below it.
type wrapped struct {
	*pair.Endpoint
	attached bool
}

func (w *wrapped) Attach(d gstack.NetworkDispatcher) {
	w.attached = w.attached || d != nil
	w.Endpoint.Attach(d)
}

// TestWrap: the link WrapA returns is the one A's stack attaches to, the
// pair's own end stays in LinkA, and B (not wrapped) is unaffected.
func TestWrap(t *testing.T) {
	var w *wrapped
	p := stacktest.NewPair(t, stacktest.Config{WrapA: func(l *pair.Endpoint) gstack.LinkEndpoint {
		w = &wrapped{Endpoint: l}
		return w
	}})
	if w == nil || !w.attached {
		t.Fatalf("A's stack did not attach to the wrapping link (%v)", w)
	}
	if w.Endpoint != p.LinkA || !p.LinkB.IsAttached() {
		t.Fatalf("LinkA %p (wrapped %p), B attached %v", p.LinkA, w.Endpoint, p.LinkB.IsAttached())
	}
}
