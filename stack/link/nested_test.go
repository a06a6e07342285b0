package link_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/netip"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/buffer"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/impair"
	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/link/pcap"
	"github.com/zcnet/zcnet/stack/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hookRecorder is an inner link that records the hooks it is given.
type hookRecorder struct {
	gstack.LinkEndpoint
	payload  link.PayloadHook
	lookup   link.ConnLookup
	pressure link.SYNPressure
}

func (h *hookRecorder) SetPayloadHook(fn link.PayloadHook) { h.payload = fn }
func (h *hookRecorder) SetConnLookup(fn link.ConnLookup)   { h.lookup = fn }
func (h *hookRecorder) SetSYNPressure(fn link.SYNPressure) { h.pressure = fn }
func (h *hookRecorder) Totals() link.Totals {
	return link.Totals{RxFrames: 1, RxBytes: 2, TxFrames: 3, TxBytes: 4}
}

// wrapper is a link built on link.Nested that overrides nothing.
type wrapper struct{ link.Nested }

// TestNestedForwardsEveryHook checks that a wrapper embedding link.Nested
// passes each of the stack's hooks to the inner link, and that removing
// them (nil) is forwarded too.
func TestNestedForwardsEveryHook(t *testing.T) {
	inner := &hookRecorder{}
	w := &wrapper{}
	w.Init(inner, w)
	if w.Inner() != inner {
		t.Fatal("Inner is not the wrapped link")
	}
	if got := w.Totals(); got != inner.Totals() {
		t.Fatalf("Totals %+v, inner's %+v", got, inner.Totals())
	}
	var gotOff int
	var gotKind link.ConnKind = link.ConnNone
	var gotOn bool
	w.SetPayloadHook(func(_ []byte, _ *buffer.View, off int) { gotOff = off })
	w.SetConnLookup(func([]byte) link.ConnKind { return link.ConnListener })
	w.SetSYNPressure(func(on bool) { gotOn = on })
	if inner.payload == nil || inner.lookup == nil || inner.pressure == nil {
		t.Fatalf("hooks not forwarded: payload %v, lookup %v, pressure %v", inner.payload != nil, inner.lookup != nil, inner.pressure != nil)
	}
	inner.payload(nil, nil, 7)
	gotKind = inner.lookup(nil)
	inner.pressure(true)
	if gotOff != 7 || gotKind != link.ConnListener || !gotOn {
		t.Fatalf("forwarded hooks are not the stack's: off %d, kind %d, pressure %v", gotOff, gotKind, gotOn)
	}
	w.SetPayloadHook(nil)
	w.SetConnLookup(nil)
	w.SetSYNPressure(nil)
	if inner.payload != nil || inner.lookup != nil || inner.pressure != nil {
		t.Fatal("removing a hook was not forwarded")
	}
	// An inner link without hooks takes nothing and nothing breaks.
	bare := &wrapper{}
	bare.Init(struct{ gstack.LinkEndpoint }{}, bare)
	bare.SetPayloadHook(func([]byte, *buffer.View, int) {})
	bare.SetConnLookup(nil)
	bare.SetSYNPressure(nil)
	if got := bare.Totals(); got != (link.Totals{}) {
		t.Fatalf("Totals of a link that keeps none: %+v", got)
	}
}

// TestNestedInitTwicePanics checks that a live wrapper cannot be rewired.
func TestNestedInitTwicePanics(t *testing.T) {
	w := &wrapper{}
	w.Init(&hookRecorder{}, w)
	defer func() {
		if recover() == nil {
			t.Fatal("second Init did not panic")
		}
	}()
	w.Init(&hookRecorder{}, w)
}

// TestWrappersKeepZeroCopy streams TCP data through a stack whose link is
// the in-process pair wrapped by each zcnet wrapper, and checks that at
// least 99% of the received bytes were handed over in the link's receive
// memory rather than copied: the wrapper passed the stack's payload hook
// to the pair. "pair" is the unwrapped baseline.
func TestWrappersKeepZeroCopy(t *testing.T) {
	const size = 4 << 20
	for _, tc := range []struct {
		name string
		wrap func(t *testing.T, inner gstack.LinkEndpoint) gstack.LinkEndpoint
	}{
		{"pair", func(_ *testing.T, inner gstack.LinkEndpoint) gstack.LinkEndpoint { return inner }},
		{"impair", func(t *testing.T, inner gstack.LinkEndpoint) gstack.LinkEndpoint {
			e, err := impair.New(inner, impair.Config{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			return e
		}},
		{"pcap", func(t *testing.T, inner gstack.LinkEndpoint) gstack.LinkEndpoint {
			l, err := pcap.New(inner, io.Discard, pcap.MaxSnapLen)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wrapped gstack.LinkEndpoint
			p := apitest.NewPair(t, apitest.PairConfig{
				Stacks: stacktest.Config{WrapB: func(l *pair.Endpoint) gstack.LinkEndpoint {
					wrapped = tc.wrap(t, l)
					return wrapped
				}},
				PoolA: 32 << 20,
				PoolB: 32 << 20,
			})
			st := transfer(t, p.A, p.B, netip.MustParseAddrPort("192.0.2.2:5001"), size)
			if st.RxHandedOver+st.RxCopied != size {
				t.Fatalf("handed over %d + copied %d != %d received", st.RxHandedOver, st.RxCopied, size)
			}
			if frac := float64(st.RxHandedOver) / size; frac < 0.99 {
				t.Fatalf("behind %s only %.2f%% handed over without a copy (copied %d bytes)", tc.name, 100*frac, st.RxCopied)
			}
			if tot := wrapped.(link.Counted).Totals(); tot.RxBytes < size || tot.RxFrames == 0 {
				t.Fatalf("behind %s the link's totals %+v miss the %d bytes received", tc.name, tot, size)
			}
		})
	}
}

// transfer sends size random bytes from a to a listener of b at addr,
// receives them with Recv, checks them, and returns the receiving
// socket's counters.
func transfer(t *testing.T, a, b *api.Stack, addr netip.AddrPort, size int) api.SocketStats {
	t.Helper()
	ctx := evchantest.Context(t)
	ln, err := b.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *api.Socket, 1)
	go func() {
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- s
	}()
	data := make([]byte, size)
	rand.Read(data)
	conn, err := a.Net().DialContext(ctx, "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	werr := apitest.SendAll(conn.(*api.TCPConn), data)
	sock := <-accepted
	if sock == nil {
		t.FailNow()
	}
	defer sock.Close()
	h := sha256.New()
	got, err := apitest.Drain(ctx, sock, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); got != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("received %d bytes of %d, data intact %v", got, size, bytes.Equal(h.Sum(nil), want[:]))
	}
	return sock.Stats()
}
