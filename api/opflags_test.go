package api_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestFlagsString: the package's flags print by name.
func TestFlagsString(t *testing.T) {
	for _, tc := range []struct {
		f    evchan.Flags
		want string
	}{
		{api.FlagEOF, "eof"},
		{api.FlagAcked, "acked"},
		{evchan.FlagInline | api.FlagEOF, "inline|eof"},
		{evchan.FlagMore | api.FlagAcked, "more|acked"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint32(tc.f), got, tc.want)
		}
	}
}

// TestRecvMultiEndsAtFIN: a multishot receive posts a completion per
// hand-off with FlagMore, and at the peer's FIN a last one flagged FlagEOF,
// without FlagMore or a Buffer; Err is then io.EOF.
func TestRecvMultiEndsAtFIN(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	ctx := evchantest.Context(t)
	accepted := accept(t, p.B, "192.0.2.2:7")
	c, err := p.A.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:7"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := <-accepted
	if srv == nil {
		t.FailNow()
	}
	defer srv.Close()
	ec := evchantest.New(t, 64)
	op := &api.Op{Kind: api.OpRecvMulti, Sock: srv, EC: ec}
	if err := p.B.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	const size = 100 << 10
	if n, err := c.SendFunc(ctx, size, func(b []byte) int { return len(b) }); err != nil || n != size {
		t.Fatalf("SendFunc: %d, %v", n, err)
	}
	// Close after sending: a FIN once the stack has sent every byte.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var got int64
	for {
		ev := evchantest.Next(t, ec)
		b, hasBuf := api.BufOf(ev)
		if hasBuf {
			got += int64(b.Len())
			b.Release()
		}
		if ev.Flags&evchan.FlagMore != 0 {
			if !hasBuf || ev.Flags&api.FlagEOF != 0 {
				t.Fatalf("a FlagMore completion without a Buf or with FlagEOF: %v", ev.Flags)
			}
			continue
		}
		if ev.Flags&api.FlagEOF == 0 || hasBuf || ev.Result != 0 || ev.Errno != 0 {
			t.Fatalf("last completion %v (Result %d, Errno %v, Buf %v), want FlagEOF, Result 0, no Buf", ev.Flags, ev.Result, ev.Errno, hasBuf)
		}
		break
	}
	if got != size {
		t.Errorf("received %d bytes, want %d", got, size)
	}
	if err := op.Err(); !errors.Is(err, io.EOF) {
		t.Errorf("Err after FIN: %v, want io.EOF", err)
	}
}

// TestCancelReportsECANCELED: a cancelled op's Err matches the errno its
// completion carries (ECANCELED) and, as before, context.Canceled.
func TestCancelReportsECANCELED(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	ctx := evchantest.Context(t)
	ln, err := p.B.ListenTCP(netip.MustParseAddrPort("192.0.2.2:8"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ec := evchantest.New(t, 4)
	op := &api.Op{Kind: api.OpAccept, Sock: ln, EC: ec}
	if err := p.B.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	if err := op.Cancel(); err != nil {
		t.Fatal(err)
	}
	ev := evchantest.Next(t, ec)
	if ev.Errno != unix.ECANCELED {
		t.Errorf("completion errno %v, want ECANCELED", ev.Errno)
	}
	err = op.Err()
	if !errors.Is(err, unix.ECANCELED) || !errors.Is(err, context.Canceled) || !errors.Is(err, api.ErrCanceled) {
		t.Errorf("Err after Cancel: %v; want it to match ECANCELED, context.Canceled and ErrCanceled", err)
	}
}
