package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// Resource limits: what happens when the pool, an event channel
// or a socket's association is full, and whether 10 000 connections opened
// and closed leave anything behind. These run on the in-process pair link
// and need no privileges.

// sendDatagram sends n bytes of value v from sock, a socket of s.
func sendDatagram(t *testing.T, ctx context.Context, s *api.Stack, sock *api.Socket, n int, v byte) {
	t.Helper()
	b, err := s.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.Bytes() {
		b.Bytes()[i] = v
	}
	if _, err := sock.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// TestReliabilityPoolExhausted: with every slot of B's pool held by the
// application, (1) Reserve fails with dmapool.ErrExhausted; (2) datagrams
// and a TCP stream the link hands over without a copy still arrive, since
// they need no pool memory; (3) a datagram that must be copied (IP
// fragments, reassembled by the stack) makes Recv fail at once with an
// error wrapping dmapool.ErrExhausted — no hang, no crash; (4) once the
// slots are released the next such datagram arrives intact; and (5) the
// datagram that found no memory is delivered late or counted as dropped,
// never lost without a trace.
func TestReliabilityPoolExhausted(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{PoolB: 64 << 10})
	ctx := evchantest.Context(t)
	srv, err := p.B.ListenUDP(netip.MustParseAddrPort("192.0.2.2:7400"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := p.A.DialUDP(netip.MustParseAddrPort("192.0.2.2:7400"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// (1) Hold every slot.
	var held []api.Buf
	for {
		b, err := p.B.Reserve(p.PoolB.SlotSize())
		if err != nil {
			if !errors.Is(err, dmapool.ErrExhausted) {
				t.Fatalf("Reserve on a full pool: %v, want ErrExhausted", err)
			}
			break
		}
		held = append(held, b)
		if len(held) > 1<<16 {
			t.Fatal("pool never ran out")
		}
	}
	releaseHeld := func() {
		for _, b := range held {
			if err := b.Release(); err != nil {
				t.Error(err)
			}
		}
		held = nil
	}
	defer releaseHeld()
	t.Logf("holding all %d slots of B's pool", len(held))

	// (2) Zero-copy traffic needs no pool memory.
	sendDatagram(t, ctx, p.A, cl, 100, 1)
	b, err := srv.Recv(ctx)
	if err != nil {
		t.Fatalf("small datagram with the pool exhausted: %v", err)
	}
	if b.Len() != 100 || b.Copied() || b.Bytes()[99] != 1 {
		t.Errorf("small datagram: %d bytes, copied %v", b.Len(), b.Copied())
	}
	b.Release()
	ln, err := p.B.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7401"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tcpDone := make(chan error, 1)
	data := bytes.Repeat([]byte("zcnet pool exhausted "), (4<<20)/21)
	go func() {
		c, err := p.A.Net().DialContext(ctx, "tcp", "192.0.2.2:7401")
		if err != nil {
			tcpDone <- err
			return
		}
		defer c.Close()
		if _, err := c.Write(data); err != nil {
			tcpDone <- err
			return
		}
		tcpDone <- c.(*api.TCPConn).CloseWrite()
	}()
	sock, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, sum, err := relRecvAll(ctx, sock)
	sock.Close()
	if err != nil || n != int64(len(data)) || sum != sha256.Sum256(data) {
		t.Fatalf("TCP with the pool exhausted: %d of %d bytes, hash equal %v, err %v", n, len(data), sum == sha256.Sum256(data), err)
	}
	if err := <-tcpDone; err != nil {
		t.Fatal(err)
	}

	// (3) A datagram that must be copied.
	dropsBefore := srv.Stats().DropsNoPool
	sendDatagram(t, ctx, p.A, cl, 4000, 2)
	start := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	b, err = srv.Recv(rctx)
	rcancel()
	if err == nil {
		b.Release()
		t.Fatalf("a fragmented datagram arrived with no pool memory to copy it into (copied %v)", b.Copied())
	}
	if !errors.Is(err, dmapool.ErrExhausted) {
		t.Fatalf("Recv with the pool exhausted: %v after %v, want an error wrapping dmapool.ErrExhausted", err, time.Since(start))
	}
	t.Logf("Recv of a datagram to copy with the pool exhausted: %v (after %v)", err, time.Since(start).Round(time.Microsecond))

	// (4) Memory back: the next one arrives intact.
	releaseHeld()
	sendDatagram(t, ctx, p.A, cl, 4000, 3)
	var got []byte
	lateDelivered := false
	for got == nil {
		b, err := srv.Recv(ctx)
		if err != nil {
			t.Fatalf("after releasing the pool: %v", err)
		}
		switch {
		case b.Len() == 4000 && b.Bytes()[0] == 2:
			lateDelivered = true
		case b.Len() == 4000 && b.Bytes()[0] == 3:
			got = append([]byte(nil), b.Bytes()...)
		default:
			t.Errorf("unexpected %d-byte datagram", b.Len())
		}
		b.Release()
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{3}, 4000)) {
		t.Fatal("datagram after the release not intact")
	}

	// (5) The one that found no memory.
	t.Run("undeliverable datagram is accounted for", func(t *testing.T) {
		drops := srv.Stats().DropsNoPool - dropsBefore
		if !lateDelivered && drops == 0 {
			t.Errorf("the datagram Recv could not copy was neither delivered later nor counted (DropsNoPool +%d, stack Counters %+v)",
				drops, p.B.Counters())
		}
	})
}

// TestReliabilityChannelFull: an event channel of 8 slots takes 8
// submitted receives (each reserves its completion's slot); the 9th Submit
// fails at once with an error wrapping evchan.ErrFull and queues nothing,
// and a waiting Submit waits (until its context ends). The 8 completions
// all arrive with their data, no overflow; then there is room again.
func TestReliabilityChannelFull(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{PoolB: 16 << 20})
	ctx := evchantest.Context(t)
	ec, err := evchan.New(evchan.Config{Capacity: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.CloseFunc(func(ev evchan.Event) {
		if b, ok := api.BufOf(ev); ok {
			b.Release()
		}
	})
	const n = 9
	var srvs, cls []*api.Socket
	for i := range n {
		ap := netip.AddrPortFrom(stacktest.AddrB, uint16(7410+i))
		s, err := p.B.ListenUDP(ap)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c, err := p.A.DialUDP(ap)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srvs, cls = append(srvs, s), append(cls, c)
	}
	ops := make([]*api.Op, n)
	for i := range n - 1 {
		ops[i] = &api.Op{Kind: api.OpRecv, Sock: srvs[i], EC: ec, Cookie: uint64(i)}
		if err := p.B.Submit(ctx, false, ops[i]); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	ops[n-1] = &api.Op{Kind: api.OpRecv, Sock: srvs[n-1], EC: ec, Cookie: n - 1}
	if err := p.B.Submit(ctx, false, ops[n-1]); !errors.Is(err, evchan.ErrFull) {
		t.Fatalf("9th Submit on an 8-slot channel: %v, want ErrFull", err)
	}
	if err := ops[n-1].Err(); !errors.Is(err, api.ErrInvalidOp) {
		t.Fatalf("the refused op: Err() = %v, want it never submitted", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = p.B.Submit(wctx, true, ops[n-1])
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting Submit on a full channel: %v, want it to wait until its context ends", err)
	}

	for i := range n - 1 {
		sendDatagram(t, ctx, p.A, cls[i], 64+i, byte(i))
	}
	evs := make([]evchan.Event, 16)
	seen := 0
	for seen < n-1 {
		k, err := ec.Next(ctx, evs)
		if err != nil {
			t.Fatalf("after %d completions: %v", seen, err)
		}
		for _, ev := range evs[:k] {
			if ev.Source == evchan.SourceOverflow {
				t.Fatal("the completion channel overflowed")
			}
			b, ok := api.BufOf(ev)
			if !ok || ev.Errno != 0 {
				t.Fatalf("completion %+v", ev)
			}
			i := int(ev.Cookie)
			if b.Len() != 64+i || b.Bytes()[0] != byte(i) {
				t.Errorf("op %d completed with %d bytes", i, b.Len())
			}
			b.Release()
			seen++
		}
	}
	if st := ec.Stats(); ec.Len() != 0 {
		t.Fatalf("channel still holds %d events: %+v", ec.Len(), st)
	}
	// Room again: the refused op goes in, and completes.
	if err := p.B.Submit(ctx, false, ops[n-1]); err != nil {
		t.Fatalf("Submit after the channel drained: %v", err)
	}
	sendDatagram(t, ctx, p.A, cls[n-1], 10, 9)
	if k, err := ec.Next(ctx, evs[:1]); err != nil || k != 1 || evs[0].Cookie != n-1 {
		t.Fatalf("last completion: %d %v %+v", k, err, evs[0])
	}
	if b, ok := api.BufOf(evs[0]); ok {
		b.Release()
	}
}

// TestReliabilityAssocFull: eight TCP connections into multishot receives
// on one channel, each socket associated with 64 KiB, and an application
// that holds every buffer it gets. Every sender must stall (its write times
// out) with no socket holding more than its association; once the
// application releases, every stream completes byte-identical: the full
// association stopped the flow and lost nothing.
func TestReliabilityAssocFull(t *testing.T) {
	const (
		conns = 8
		assoc = 64 << 10
		size  = 2 << 20
	)
	small := stack.BufferSizes{Min: 4 << 10, Default: 128 << 10, Max: 128 << 10}
	p := apitest.NewPair(t, apitest.PairConfig{
		Stacks: stacktest.Config{Stack: stack.Options{TCPSendBuffer: small, TCPReceiveBuffer: small, DisableReceiveAutoTuning: true}},
		PoolB:  16 << 20,
		AssocB: assoc,
	})
	ctx := evchantest.Context(t)
	ec, err := evchan.New(evchan.Config{Capacity: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.CloseFunc(func(ev evchan.Event) {
		if b, ok := api.BufOf(ev); ok {
			b.Release()
		}
	})
	ln, err := p.B.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7420"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	data := make([][]byte, conns)
	clients := make([]net.Conn, conns)
	socks := make([]*api.Socket, conns)
	for i := range conns {
		data[i] = newRelStream(byte(i), size).bytes()
		c, err := p.A.Net().DialContext(ctx, "tcp", "192.0.2.2:7420")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
		if socks[i], err = ln.Accept(ctx); err != nil {
			t.Fatal(err)
		}
		defer socks[i].Close()
		if err := p.B.Submit(ctx, false, &api.Op{Kind: api.OpRecvMulti, Sock: socks[i], EC: ec, Cookie: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Senders write until their writes time out, then report how far
	// they got.
	type stall struct {
		i, n int
		err  error
	}
	stalled := make(chan stall, conns)
	for i, c := range clients {
		go func() {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Write(data[i])
			stalled <- stall{i, n, err}
		}()
	}
	var held []api.Buf
	got := make([]int, conns)
	recvd := make([]bytes.Buffer, conns)
	take := func(ev evchan.Event) (eof bool) {
		i := int(ev.Cookie)
		if ev.Errno != 0 {
			t.Fatalf("connection %d: %v", i, ev.Errno)
		}
		if b, ok := api.BufOf(ev); ok {
			recvd[i].Write(b.Bytes())
			got[i] += b.Len()
			held = append(held, b)
		}
		return ev.Flags&api.FlagEOF != 0
	}
	evs := make([]evchan.Event, 256)
	written := make([]int, conns)
	for nStalled := 0; nStalled < conns; {
		select {
		case s := <-stalled:
			if !errors.Is(s.err, os.ErrDeadlineExceeded) {
				t.Fatalf("sender %d was not stopped: wrote %d of %d, %v", s.i, s.n, size, s.err)
			}
			written[s.i] = s.n
			nStalled++
			continue
		default:
		}
		nctx, ncancel := context.WithTimeout(ctx, 100*time.Millisecond)
		k, err := ec.Next(nctx, evs)
		ncancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		for _, ev := range evs[:k] {
			take(ev)
		}
	}
	for i, s := range socks {
		if st := s.Stats(); st.HeldBytes > assoc {
			t.Errorf("socket %d holds %d bytes over its %d-byte association", i, st.HeldBytes, assoc)
		}
	}
	t.Logf("all %d senders stalled after %v bytes; the application holds %v", conns, written, got)

	// Release everything; the senders finish.
	for _, b := range held {
		b.Release()
	}
	held = nil
	for i, c := range clients {
		go func() {
			c.SetWriteDeadline(time.Time{})
			_, err := c.Write(data[i][written[i]:])
			if err == nil {
				err = c.(*api.TCPConn).CloseWrite()
			}
			stalled <- stall{i: i, err: err}
		}()
	}
	eofs := 0
	for eofs < conns {
		k, err := ec.Next(ctx, evs)
		if err != nil {
			t.Fatalf("after %d streams ended: %v (received %v)", eofs, err, got)
		}
		for _, ev := range evs[:k] {
			if take(ev) {
				eofs++
			}
		}
		for _, b := range held {
			b.Release()
		}
		held = held[:0]
	}
	for range conns {
		if s := <-stalled; s.err != nil {
			t.Errorf("sender %d: %v", s.i, s.err)
		}
	}
	for i := range conns {
		want := sha256.Sum256(data[i])
		h := sha256.Sum256(recvd[i].Bytes())
		if got[i] != size || h != want {
			t.Errorf("connection %d: received %d of %d bytes, hash equal %v", i, got[i], size, h == want)
		}
	}
}

// bytes returns the whole stream.
func (s relStream) bytes() []byte {
	var b bytes.Buffer
	s.writeTo(&b)
	return b.Bytes()
}

// churnConns is the number of connections TestReliabilityConnectionChurn
// opens and closes.
const churnConns = 10000

// TestReliabilityConnectionChurn opens 10 000 TCP connections between the
// two stacks and closes them again, 100 at a time: each sends 64 bytes from
// a pool buffer and the server checks them (zero-copy Recv). Afterwards the
// pools hold no buffer, the goroutines return to their starting count and
// the file descriptors to theirs: churn leaves nothing behind.
func TestReliabilityConnectionChurn(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{PoolB: 16 << 20})
	ctx := evchantest.Context(t)
	ln, err := p.B.ListenTCP(netip.MustParseAddrPort("192.0.2.2:7430"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raddr := netip.MustParseAddrPort("192.0.2.2:7430")

	// One connection first, so that lazily started goroutines (none
	// expected) and pools are warm before the baseline.
	batch := func(n int) error {
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			wg.Add(2)
			go func() {
				defer wg.Done()
				c, err := p.A.DialTCP(ctx, raddr)
				if err != nil {
					errs <- fmt.Errorf("dial: %w", err)
					return
				}
				defer c.Close()
				b, err := p.A.Reserve(64)
				if err != nil {
					errs <- err
					return
				}
				copy(b.Bytes(), fmt.Sprintf("%064d", i))
				if _, err := c.Send(ctx, b); err != nil {
					errs <- fmt.Errorf("send: %w", err)
				}
			}()
			go func() {
				defer wg.Done()
				s, err := ln.Accept(ctx)
				if err != nil {
					errs <- fmt.Errorf("accept: %w", err)
					return
				}
				defer s.Close()
				var got []byte
				for {
					b, err := s.Recv(ctx)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						errs <- fmt.Errorf("recv: %w", err)
						return
					}
					got = append(got, b.Bytes()...)
					b.Release()
				}
				if len(got) != 64 {
					errs <- fmt.Errorf("server received %d bytes, want 64", len(got))
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	if err := batch(1); err != nil {
		t.Fatal(err)
	}
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	start := time.Now()
	for done := 0; done < churnConns; done += 100 {
		if err := batch(100); err != nil {
			t.Fatalf("after %d connections: %v", done, err)
		}
	}
	el := time.Since(start)
	t.Logf("%d connections opened, used and closed in %v (%.0f/s)", churnConns, el.Round(time.Millisecond), churnConns/el.Seconds())

	if st := p.PoolA.Stats(); st.Buffers != 0 {
		t.Errorf("A's pool holds %d buffers after the churn", st.Buffers)
	}
	if st := p.PoolB.Stats(); st.Buffers != 0 {
		t.Errorf("B's pool holds %d buffers after the churn", st.Buffers)
	}
	if !evchantest.Poll(10*time.Second, func() bool { return runtime.NumGoroutine() <= baseG }) {
		t.Errorf("%d goroutines after the churn, %d before", runtime.NumGoroutine(), baseG)
	}
	if !evchantest.Poll(10*time.Second, func() bool { return openFDs(t) <= baseFD }) {
		t.Errorf("%d file descriptors open after the churn, %d before", openFDs(t), baseFD)
	}
	c := p.Pair.B.Counters()
	t.Logf("B: %d passive opens, %d established now; goroutines %d (baseline %d), fds %d (baseline %d)",
		c["TCP.PassiveConnectionOpenings"], c["TCP.CurrentEstablished"], runtime.NumGoroutine(), baseG, openFDs(t), baseFD)
	if c["TCP.PassiveConnectionOpenings"] < churnConns {
		t.Errorf("B accepted %d connections, want at least %d", c["TCP.PassiveConnectionOpenings"], churnConns)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}
