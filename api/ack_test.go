package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
	"github.com/zcnet/zcnet/stack/stacktest"
)

// gateMode is what an ackGate does with the IPv4 packets for its stack.
type gateMode int

const (
	gatePass    gateMode = iota // deliver
	gateHold                    // keep, in order, until open
	gateRSTOnly                 // drop all but TCP resets
)

// ackGate is stack A's link in these tests: one side of the in-process pair
// that can hold back, or drop, what the peer sends A — its ACKs — while
// letting ARP through.
type ackGate struct {
	*pair.Endpoint

	mu   sync.Mutex
	d    gstack.NetworkDispatcher // +checklocks:mu
	mode gateMode                 // +checklocks:mu
	held []*gstack.PacketBuffer   // +checklocks:mu; in arrival order
	// holding gets a token each time a packet is held.
	holding chan struct{}
}

// Attach implements stack.LinkEndpoint.Attach: the pair delivers to the
// gate, the gate to the stack.
func (g *ackGate) Attach(d gstack.NetworkDispatcher) {
	g.mu.Lock()
	g.d = d
	g.mu.Unlock()
	if d == nil {
		g.Endpoint.Attach(nil)
		return
	}
	g.Endpoint.Attach(g)
}

// DeliverNetworkPacket implements stack.NetworkDispatcher.
func (g *ackGate) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	g.mu.Lock()
	d := g.d
	if proto == header.IPv4ProtocolNumber {
		switch g.mode {
		case gateHold:
			g.held = append(g.held, pkt.IncRef())
			g.mu.Unlock()
			select {
			case g.holding <- struct{}{}:
			default:
			}
			return
		case gateRSTOnly:
			if !isRST(pkt) {
				g.mu.Unlock()
				return
			}
		}
	}
	g.mu.Unlock()
	if d != nil {
		d.DeliverNetworkPacket(proto, pkt)
	}
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (g *ackGate) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	g.mu.Lock()
	d := g.d
	g.mu.Unlock()
	if d != nil {
		d.DeliverLinkPacket(proto, pkt)
	}
}

func isRST(pkt *gstack.PacketBuffer) bool {
	b := pkt.Data().AsRange().ToSlice()
	ip := header.IPv4(b)
	if !ip.IsValid(len(b)) || ip.TransportProtocol() != header.TCPProtocolNumber {
		return false
	}
	tcp := header.TCP(ip.Payload())
	return len(tcp) >= header.TCPMinimumSize && tcp.Flags().Contains(header.TCPFlagRst)
}

// set switches the gate; leaving gateHold delivers what it held, in order.
func (g *ackGate) set(m gateMode) {
	g.mu.Lock()
	g.mode = m
	held, d := g.held, g.d
	g.held = nil
	g.mu.Unlock()
	for _, pkt := range held {
		if d != nil {
			d.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
		}
		pkt.DecRef()
	}
}

// waitHeld waits until the gate holds a packet.
func (g *ackGate) waitHeld(ctx context.Context) error {
	for {
		g.mu.Lock()
		n := len(g.held)
		g.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-g.holding:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ackPair is a connection between two API stacks with acknowledgement
// events on, A's end behind an ackGate.
type ackPair struct {
	A, B       *api.Stack
	gate       *ackGate
	conn, peer *api.Socket // A's end, B's end
	ec         *evchan.Channel
}

func newAckPair(t *testing.T) *ackPair {
	t.Helper()
	p := &ackPair{}
	t.Cleanup(func() { // after the stacks have closed: release held packets
		if p.gate != nil {
			p.gate.set(gatePass)
		}
	})
	ap := apitest.NewPair(t, apitest.PairConfig{
		Stacks: stacktest.Config{
			Stack: stack.Options{TCPAckEvents: true},
			WrapA: func(l *pair.Endpoint) gstack.LinkEndpoint {
				p.gate = &ackGate{Endpoint: l, holding: make(chan struct{}, 1)}
				return p.gate
			},
		},
		PoolA: 16 << 20,
		PoolB: 16 << 20,
	})
	p.A, p.B = ap.A, ap.B
	p.ec = evchantest.New(t, 256)
	ctx := evchantest.Context(t)
	addr := netip.AddrPortFrom(stacktest.AddrB, 5001)
	ln, err := p.B.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if p.conn, err = p.A.DialTCP(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if p.peer, err = ln.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close(); p.peer.Close() })
	return p
}

// send returns a send op with Ack for n bytes from A's pool.
func (p *ackPair) send(t *testing.T, n int, cookie uint64) *api.Op {
	t.Helper()
	b, err := p.A.Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.Bytes() {
		b.Bytes()[i] = byte(i)
	}
	return &api.Op{Kind: api.OpSend, Sock: p.conn, EC: p.ec, Buf: b, Ack: true, Cookie: cookie}
}

// sentAwaitingAck submits a send of n bytes with Ack (cookie 1) with the
// gate in mode, and returns it once its first completion (FlagMore) has
// come: the send is now waiting for the peer's acknowledgement.
func (p *ackPair) sentAwaitingAck(t *testing.T, ctx context.Context, mode gateMode, n int) *api.Op {
	t.Helper()
	p.gate.set(mode)
	op := p.send(t, n, 1)
	if err := p.A.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	if ev := evchantest.Next(t, p.ec); ev.Flags&evchan.FlagMore == 0 {
		t.Fatalf("first completion %+v", ev)
	}
	return op
}

// settle runs A's socket's ready operations on this goroutine (queuing a
// receive does) and cancels the receive: a completion that is due is
// posted by the time it returns.
func (p *ackPair) settle(t *testing.T) {
	t.Helper()
	op := &api.Op{Kind: api.OpRecv, Sock: p.conn, EC: p.ec, Cookie: 1 << 62}
	if err := p.A.Submit(context.Background(), false, op); err != nil {
		t.Fatal(err)
	}
	if err := op.Cancel(); err != nil {
		t.Fatal(err)
	}
	ev := evchantest.Next(t, p.ec)
	if ev.Cookie != 1<<62 || ev.Errno != syscall.ECANCELED {
		t.Fatalf("settling: got %+v, want the cancelled receive", ev)
	}
}

// recvN receives n bytes on sock and releases them.
func recvN(ctx context.Context, sock *api.Socket, n int) error {
	for n > 0 {
		b, err := sock.Recv(ctx)
		if err != nil {
			return err
		}
		n -= b.Len()
		b.Release()
	}
	return nil
}

// TestSendAckWaitsForThePeer holds the peer's ACKs back at A's link: the
// send completes (the stack has the bytes), the peer receives them all and
// acknowledges them, and still no acknowledgement completion comes until
// the ACKs reach A.
func TestSendAckWaitsForThePeer(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	// Within TCP's initial window (RFC 6928: 10 segments), so that all of
	// it reaches the peer without an ACK.
	const n = 8000
	p.gate.set(gateHold)
	op := p.send(t, n, 7)
	if err := p.A.Submit(ctx, false, op); err != nil {
		t.Fatal(err)
	}
	ev := evchantest.Next(t, p.ec)
	if ev.Cookie != 7 || ev.Errno != 0 || ev.Result != n || ev.Flags&evchan.FlagMore == 0 || ev.Flags&api.FlagAcked != 0 {
		t.Fatalf("first completion %+v, want Result %d with FlagMore", ev, n)
	}
	if err := op.Err(); !errors.Is(err, api.ErrInProgress) {
		t.Fatalf("Err between the completions = %v, want ErrInProgress", err)
	}
	// The peer has every byte and has answered; A has not heard.
	if err := recvN(ctx, p.peer, n); err != nil {
		t.Fatal(err)
	}
	if err := p.gate.waitHeld(ctx); err != nil {
		t.Fatalf("no ACK from the peer to hold back: %v", err)
	}
	p.settle(t)
	if got := p.ec.Len(); got != 0 {
		t.Fatalf("%d events while the peer's ACKs are held back, want none", got)
	}
	p.gate.set(gatePass)
	ev = evchantest.Next(t, p.ec)
	if ev.Cookie != 7 || ev.Errno != 0 || ev.Result != n || ev.Flags&api.FlagAcked == 0 || ev.Flags&evchan.FlagMore != 0 {
		t.Fatalf("second completion %+v, want FlagAcked, Result %d", ev, n)
	}
	if res, err := op.Result(); err != nil || res != n {
		t.Fatalf("Result = %d, %v; want %d, nil", res, err, n)
	}
}

// TestSendAckOrder sends a batch of sends with Ack, a blocking Send and
// one more: every op's first completion precedes its second, the second
// completions come in submission order, and all report success.
func TestSendAckOrder(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	const ops = 40
	var batch []*api.Op
	var sizes []int64
	total := 0
	for i := 0; i < ops; i++ {
		n := 1 + (i*7919)%(48<<10)
		total += n
		sizes = append(sizes, int64(n))
		batch = append(batch, p.send(t, n, uint64(i)))
	}
	drained := make(chan error, 1)
	extra := 1000
	go func() { drained <- recvN(ctx, p.peer, total+extra+100) }()
	if err := p.A.Submit(ctx, false, batch...); err != nil {
		t.Fatal(err)
	}
	b, err := p.A.Reserve(extra)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.conn.Send(ctx, b); err != nil {
		t.Fatal(err)
	}
	last := p.send(t, 100, ops)
	if err := p.A.Submit(ctx, false, last); err != nil {
		t.Fatal(err)
	}
	batch = append(batch, last)
	sizes = append(sizes, 100)
	sent := make([]bool, len(batch))
	nextAck := uint64(0)
	for nextAck < uint64(len(batch)) {
		ev := evchantest.Next(t, p.ec)
		if ev.Errno != 0 || ev.Cookie >= uint64(len(batch)) || ev.Result != sizes[ev.Cookie] {
			t.Fatalf("event %+v", ev)
		}
		if ev.Flags&api.FlagAcked == 0 {
			if sent[ev.Cookie] || ev.Flags&evchan.FlagMore == 0 {
				t.Fatalf("send completion %+v: repeated or without FlagMore", ev)
			}
			sent[ev.Cookie] = true
			continue
		}
		if !sent[ev.Cookie] {
			t.Fatalf("acknowledgement of op %d before its send completion", ev.Cookie)
		}
		if ev.Cookie != nextAck {
			t.Fatalf("acknowledgement of op %d, want op %d first", ev.Cookie, nextAck)
		}
		if res, err := batch[ev.Cookie].Result(); err != nil || res != ev.Result {
			t.Fatalf("op %d: Result %d, %v; event Result %d", ev.Cookie, res, err, ev.Result)
		}
		nextAck++
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
}

// TestSendAckOnClose: a socket closed while a send waits for the peer's
// acknowledgement ends the wait with EBADF (net.ErrClosed).
func TestSendAckOnClose(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	op := p.sentAwaitingAck(t, ctx, gateHold, 1000)
	p.conn.Close()
	ev := evchantest.Next(t, p.ec)
	if ev.Flags&api.FlagAcked == 0 || ev.Errno != syscall.EBADF || ev.Result != 1000 {
		t.Fatalf("completion after Close %+v, want FlagAcked with EBADF", ev)
	}
	if err := op.Err(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Err = %v, want net.ErrClosed", err)
	}
}

// TestSendAckOnReset: the peer resets the connection before its ACKs reach
// A; the wait ends with ECONNRESET.
func TestSendAckOnReset(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	op := p.sentAwaitingAck(t, ctx, gateRSTOnly, 1000)
	// Closing with unread data resets the connection (as Linux does).
	if err := p.peer.WaitReadable(ctx); err != nil {
		t.Fatal(err)
	}
	p.peer.Close()
	ev := evchantest.Next(t, p.ec)
	if ev.Flags&api.FlagAcked == 0 || ev.Errno != syscall.ECONNRESET {
		t.Fatalf("completion after the reset %+v, want FlagAcked with ECONNRESET", ev)
	}
	if err := op.Err(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Err = %v, want ECONNRESET", err)
	}
}

// TestCloseOpWaitsForAck: an OpClose queued after a send with Ack closes
// the socket only once the peer has acknowledged the send.
func TestCloseOpWaitsForAck(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	p.gate.set(gateHold)
	op := p.send(t, 5000, 1)
	closeOp := &api.Op{Kind: api.OpClose, Sock: p.conn, EC: p.ec, Cookie: 2}
	if err := p.A.Submit(ctx, false, op, closeOp); err != nil {
		t.Fatal(err)
	}
	if ev := evchantest.Next(t, p.ec); ev.Cookie != 1 || ev.Flags&evchan.FlagMore == 0 {
		t.Fatalf("first completion %+v", ev)
	}
	if err := recvN(ctx, p.peer, 5000); err != nil {
		t.Fatal(err)
	}
	if err := p.gate.waitHeld(ctx); err != nil {
		t.Fatalf("no ACK from the peer to hold back: %v", err)
	}
	p.settle(t)
	if got := p.ec.Len(); got != 0 {
		t.Fatalf("%d events before the acknowledgement, want none", got)
	}
	p.gate.set(gatePass)
	if ev := evchantest.Next(t, p.ec); ev.Cookie != 1 || ev.Flags&api.FlagAcked == 0 || ev.Errno != 0 {
		t.Fatalf("second completion %+v, want the acknowledgement", ev)
	}
	if ev := evchantest.Next(t, p.ec); ev.Cookie != 2 || ev.Errno != 0 {
		t.Fatalf("completion %+v, want the close", ev)
	}
	if _, err := p.peer.Recv(ctx); err != io.EOF {
		t.Fatalf("peer Recv after the close = %v, want io.EOF", err)
	}
}

// TestSendAckRejected: Ack needs TCP, OpSend and a stack with
// TCPAckEvents; Submit says which, and reserves nothing.
func TestSendAckRejected(t *testing.T) {
	ctx := evchantest.Context(t)
	p := apitest.NewPair(t, apitest.PairConfig{}) // stacks without TCPAckEvents
	ec := evchantest.New(t, 2)
	accepted := accept(t, p.B, "192.0.2.2:5002")
	c, err := p.A.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:5002"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer (<-accepted).Close()
	u, err := p.A.ListenUDP(netip.MustParseAddrPort("192.0.2.1:5003"))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, tc := range []struct {
		name string
		op   func() *api.Op
		want error
	}{
		{"stack without TCPAckEvents", func() *api.Op {
			b, _ := p.A.Reserve(10)
			return &api.Op{Kind: api.OpSend, Sock: c, EC: ec, Buf: b, Ack: true}
		}, stack.ErrAckEventsOff},
		{"UDP", func() *api.Op {
			b, _ := p.A.Reserve(10)
			return &api.Op{Kind: api.OpSend, Sock: u, EC: ec, Buf: b, Ack: true, Addr: netip.MustParseAddrPort("192.0.2.2:9")}
		}, api.ErrInvalidOp},
		{"receive", func() *api.Op { return &api.Op{Kind: api.OpRecv, Sock: c, EC: ec, Ack: true} }, api.ErrInvalidOp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := tc.op()
			err := p.A.Submit(ctx, false, op)
			if !errors.Is(err, tc.want) || !errors.Is(err, api.ErrInvalidOp) {
				t.Fatalf("Submit = %v, want %v", err, tc.want)
			}
			op.Buf.Release()
			// Nothing was reserved: the channel's whole capacity is free.
			r, err := ec.Reserve(2)
			if err != nil {
				t.Fatalf("after the rejected Submit: %v", err)
			}
			r.Release()
		})
	}
}

// TestSendAckCancel: Cancel between a send's two completions ends the wait
// for the acknowledgement with ECANCELED.
func TestSendAckCancel(t *testing.T) {
	p := newAckPair(t)
	ctx := evchantest.Context(t)
	op := p.sentAwaitingAck(t, ctx, gateHold, 1000)
	if err := op.Cancel(); err != nil {
		t.Fatal(err)
	}
	ev := evchantest.Next(t, p.ec)
	if ev.Flags&api.FlagAcked == 0 || ev.Errno != syscall.ECANCELED || ev.Result != 1000 {
		t.Fatalf("completion after Cancel %+v, want FlagAcked with ECANCELED", ev)
	}
	if err := op.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", err)
	}
	if err := op.Cancel(); !errors.Is(err, api.ErrNotCancelable) {
		t.Fatalf("second Cancel = %v, want ErrNotCancelable", err)
	}
}
