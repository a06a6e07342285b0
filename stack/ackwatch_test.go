package stack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// rawConn is one end of a TCP connection made with gVisor's endpoints
// directly, as the socket layers above this package do.
type rawConn struct {
	ep tcpip.Endpoint
	wq *waiter.Queue
}

// wait blocks until the endpoint reports one of mask or ctx ends.
func (c rawConn) wait(ctx context.Context, mask waiter.EventMask) error {
	entry, ch := waiter.NewChannelEntry(mask)
	c.wq.EventRegister(&entry)
	defer c.wq.EventUnregister(&entry)
	if c.ep.Readiness(mask) != 0 {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connectRaw connects A to a listener on B (192.0.2.2:port) and returns both
// ends; both are closed at the end of the test.
func connectRaw(ctx context.Context, t *testing.T, p *stacktest.Pair, port uint16) (a, b rawConn) {
	t.Helper()
	return connectRawTB(ctx, t, p, port)
}

func connectRawTB(ctx context.Context, t testing.TB, p *stacktest.Pair, port uint16) (a, b rawConn) {
	t.Helper()
	newEP := func(st *stack.Stack) rawConn {
		wq := new(waiter.Queue)
		ep, err := st.Netstack().NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, wq)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ep.Close)
		return rawConn{ep, wq}
	}
	addr := netip.AddrPortFrom(stacktest.AddrB, port)
	ln := newEP(p.B)
	if err := ln.ep.Bind(stack.FullAddress(addr, 0)); err != nil {
		t.Fatal(err)
	}
	if err := ln.ep.Listen(1); err != nil {
		t.Fatal(err)
	}
	a = newEP(p.A)
	if err := a.ep.Connect(stack.FullAddress(addr, 0)); err != nil {
		if _, ok := err.(*tcpip.ErrConnectStarted); !ok {
			t.Fatal(err)
		}
		if err := a.wait(ctx, waiter.WritableEvents); err != nil {
			t.Fatal(err)
		}
		if err := a.ep.LastError(); err != nil {
			t.Fatal(err)
		}
	}
	for {
		ep, wq, err := ln.ep.Accept(nil)
		if err == nil {
			t.Cleanup(ep.Close)
			return a, rawConn{ep, wq}
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			t.Fatal(err)
		}
		if err := ln.wait(ctx, waiter.ReadableEvents); err != nil {
			t.Fatal(err)
		}
	}
}

// writeAll writes n bytes through w, waiting for room in the send buffer.
func writeAll(ctx context.Context, c rawConn, w *stack.AckWatch, n int) error {
	data := bytes.Repeat([]byte{0x5a}, n)
	for len(data) > 0 {
		var r bytes.Reader
		r.Reset(data)
		m, err := w.Write(&r, tcpip.WriteOptions{})
		data = data[m:]
		if err == nil {
			continue
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return fmt.Errorf("write: %v", err)
		}
		if err := c.wait(ctx, waiter.WritableEvents); err != nil {
			return err
		}
	}
	return nil
}

func TestWatchAcksNeedsTheOption(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{})
	if p.A.TCPAckEvents() {
		t.Fatal("TCPAckEvents is on without the option")
	}
	a, _ := connectRaw(evchantest.Context(t), t, p, 9)
	if _, err := p.A.WatchAcks(a.ep, nil); !errors.Is(err, stack.ErrAckEventsOff) {
		t.Fatalf("WatchAcks on a stack without TCPAckEvents: %v, want ErrAckEventsOff", err)
	}
}

func TestWatchAcksRejects(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{Stack: stack.Options{TCPAckEvents: true}})
	if !p.A.TCPAckEvents() {
		t.Fatal("TCPAckEvents is off with the option")
	}
	var wq waiter.Queue
	uep, terr := p.A.Netstack().NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	defer uep.Close()
	if _, err := p.A.WatchAcks(uep, nil); !errors.Is(err, stack.ErrInvalidOptions) {
		t.Errorf("WatchAcks(UDP endpoint) = %v, want ErrInvalidOptions", err)
	}
	tep, terr := p.A.Netstack().NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	defer tep.Close()
	if _, err := p.A.WatchAcks(tep, nil); !errors.Is(err, stack.ErrInvalidOptions) {
		t.Errorf("WatchAcks(unconnected endpoint) = %v, want ErrInvalidOptions", err)
	}
	a, _ := connectRaw(evchantest.Context(t), t, p, 9)
	w, err := p.A.WatchAcks(a.ep, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.A.WatchAcks(a.ep, nil); !errors.Is(err, stack.ErrInvalidOptions) {
		t.Errorf("second WatchAcks of one connection = %v, want ErrInvalidOptions", err)
	}
	w.Close()
	w.Close()
	w2, err := p.A.WatchAcks(a.ep, nil)
	if err != nil {
		t.Fatalf("WatchAcks after Close: %v", err)
	}
	w2.Close()
}

// TestAckWatchNeverAhead streams into a peer that does not read, over a
// receive window much smaller than what is written: the peer can only
// acknowledge what its receive queue holds, so Acked must never exceed that
// queue, and must reach it exactly once the window is full.
func TestAckWatchNeverAhead(t *testing.T) {
	const window = 64 << 10
	small := stack.BufferSizes{Min: 4 << 10, Default: window, Max: window}
	p := stacktest.NewPair(t, stacktest.Config{Stack: stack.Options{TCPAckEvents: true, TCPReceiveBuffer: small, DisableReceiveAutoTuning: true}})
	ctx := evchantest.Context(t)
	a, b := connectRaw(ctx, t, p, 9)
	var ahead atomic.Int64 // the worst lead of Acked over Written seen by notify
	notified := make(chan struct{}, 1)
	var w *stack.AckWatch
	var ready atomic.Bool
	w, err := p.A.WatchAcks(a.ep, func() {
		if ready.Load() {
			if d := int64(w.Acked()) - int64(w.Written()); d > ahead.Load() {
				ahead.Store(d)
			}
		}
		select {
		case notified <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	ready.Store(true)
	defer w.Close()
	// More than the peer's window and our send buffer can take, so the
	// writer stops at a closed window; write it from a goroutine.
	const total = 1 << 20
	werr := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-werr }()
	go func() { werr <- writeAll(wctx, a, w, total) }()
	for {
		acked := w.Acked()
		queued, terr := b.ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
		if terr != nil {
			t.Fatal(terr)
		}
		if acked > uint64(queued) {
			t.Fatalf("Acked %d, but the peer holds only %d bytes", acked, queued)
		}
		if acked > 0 && acked == uint64(queued) && w.Written() > acked {
			// The peer's window is full and all of it is acknowledged.
			break
		}
		select {
		case <-notified:
		case <-ctx.Done():
			t.Fatalf("Acked %d, peer holds %d, Written %d: %v", acked, queued, w.Written(), ctx.Err())
		}
	}
	if d := ahead.Load(); d > 0 {
		t.Errorf("Acked ran %d bytes ahead of Written", d)
	}
	if acked, failed := w.Progress(); failed || acked == 0 {
		t.Errorf("Progress = %d, %v on a live connection", acked, failed)
	}
}

// TestAckWatchCountsToTheFIN writes, shuts the sending side down and has
// the peer read everything: Acked ends equal to Written (the FIN's sequence
// number is not a byte), and the watch reports a live connection until it
// closes.
func TestAckWatchCountsToTheFIN(t *testing.T) {
	p := stacktest.NewPair(t, stacktest.Config{Stack: stack.Options{TCPAckEvents: true}})
	ctx := evchantest.Context(t)
	a, b := connectRaw(ctx, t, p, 9)
	notified := make(chan struct{}, 1)
	w, err := p.A.WatchAcks(a.ep, func() {
		select {
		case notified <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const total = 3<<20 + 17
	if err := writeAll(ctx, a, w, total); err != nil {
		t.Fatal(err)
	}
	if w.Written() != total {
		t.Fatalf("Written = %d, want %d", w.Written(), total)
	}
	if err := a.ep.Shutdown(tcpip.ShutdownWrite); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		var buf bytes.Buffer
		res, err := b.ep.Read(&buf, tcpip.ReadOptions{})
		got += res.Count
		if _, ok := err.(*tcpip.ErrClosedForReceive); ok {
			break
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); ok {
			if err := b.wait(ctx, waiter.ReadableEvents); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != total {
		t.Fatalf("peer read %d bytes, want %d", got, total)
	}
	for w.Acked() < total {
		select {
		case <-notified:
		case <-ctx.Done():
			t.Fatalf("Acked %d of %d: %v", w.Acked(), total, ctx.Err())
		}
	}
	if acked, failed := w.Progress(); acked != total || failed {
		t.Errorf("Progress = %d, %v; want %d, false", acked, failed, total)
	}
}

// BenchmarkTCPAckEvents measures what Options.TCPAckEvents costs a bulk TCP
// stream over the in-process pair, with gVisor's endpoints used directly:
// "off" is the baseline; "probe" turns the option on for both stacks, so
// gVisor copies an endpoint's state after every segment it receives, but
// writes as before; "watched" also writes through an AckWatch, as every
// api socket on such a stack does (the copy into the send buffer then
// happens with the endpoint locked). Nobody asks for acknowledgement
// completions: this is the price of having them available.
func BenchmarkTCPAckEvents(b *testing.B) {
	for _, tc := range []struct {
		name      string
		on, watch bool
	}{{"off", false, false}, {"probe", true, false}, {"watched", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			p := stacktest.NewPair(b, stacktest.Config{Stack: stack.Options{TCPAckEvents: tc.on}})
			ctx := context.Background()
			a, peer := connectRawTB(ctx, b, p, 9)
			write := a.ep.Write
			if tc.watch {
				w, err := p.A.WatchAcks(a.ep, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				write = w.Write
			}
			got := make(chan int, 1)
			go func() {
				n := 0
				for {
					res, err := peer.ep.Read(io.Discard, tcpip.ReadOptions{})
					n += res.Count
					if _, ok := err.(*tcpip.ErrWouldBlock); ok {
						if peer.wait(ctx, waiter.ReadableEvents) == nil {
							continue
						}
					}
					if err != nil {
						got <- n
						return
					}
				}
			}()
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				data := chunk
				for len(data) > 0 {
					var r bytes.Reader
					r.Reset(data)
					m, err := write(&r, tcpip.WriteOptions{})
					data = data[m:]
					if _, ok := err.(*tcpip.ErrWouldBlock); ok {
						a.wait(ctx, waiter.WritableEvents)
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
			a.ep.Shutdown(tcpip.ShutdownWrite)
			if n := <-got; n != b.N*len(chunk) {
				b.Fatalf("received %d of %d bytes", n, b.N*len(chunk))
			}
			b.StopTimer()
		})
	}
}
