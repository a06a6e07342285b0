package leakcheck_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/refs"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	goleak.VerifyTestMain(m)
}

// checkLeaks fails t if any reference-counted gVisor object is still
// alive; run it once everything the test made is closed.
func checkLeaks(t *testing.T) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("reference leak: %v", fmt.Sprint(r))
		}
	}()
	refs.DoRepeatedLeakCheck()
}

// TestUDPCloseNoLeak: a UDP socket closed while datagrams wait in its
// receive queue in the stack, in its pending hand-offs and in the
// application's hands (released after the Close), and with datagrams still
// arriving from several senders, leaves no packet, chunk or view alive
// once the stacks are closed.
func TestUDPCloseNoLeak(t *testing.T) {
	t.Cleanup(func() { checkLeaks(t) }) // runs last: after the pair's cleanup
	p := apitest.NewPair(t, apitest.PairConfig{})
	ctx := evchantest.Context(t)
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:5030"))
	if err != nil {
		t.Fatal(err)
	}
	var cls []*api.Socket
	for range 3 {
		cl, err := p.A.DialUDP(srv.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		cls = append(cls, cl)
	}
	send := func(n int) {
		for i := range n {
			b, err := p.A.Reserve(200)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cls[i%len(cls)].Send(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(60)
	// All 60 queued before the first receive, so that it takes a batch
	// and leaves some pending behind the datagrams it hands over.
	if !evchantest.Poll(10*time.Second, func() bool { return srv.Stats().UDP.Queued >= 60 }) {
		t.Fatalf("%d of 60 datagrams queued in 10 s", srv.Stats().UDP.Queued)
	}
	deadline := time.Now().Add(10 * time.Second)
	var held []api.Buf
	for len(held) < 5 {
		b, err := srv.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
		if time.Now().After(deadline) {
			t.Fatal("5 datagrams not received in 10 s")
		}
	}
	for srv.Stats().UDP.Queued == 0 && time.Now().Before(deadline) {
		send(10)
	}
	st := srv.Stats()
	if st.UDP.Queued == 0 || st.HeldBytes <= 5*200 {
		t.Fatalf("before Close: %+v: want datagrams queued in the stack and pending", st)
	}
	done := make(chan struct{})
	go func() {
		// Still arriving while the socket closes: once it has, the
		// senders learn of the closed port (ECONNREFUSED) and stop.
		defer close(done)
		for i := range 100 {
			b, err := p.A.Reserve(200)
			if err != nil {
				return
			}
			if _, err := cls[i%len(cls)].Send(ctx, b); err != nil {
				return
			}
		}
	}()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	for _, b := range held {
		if err := b.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if st := srv.Stats(); st.HeldBytes != 0 || st.UDP.Queued != 0 {
		t.Fatalf("after Close and Release: %+v", st)
	}
}
