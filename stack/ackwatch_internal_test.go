package stack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/seqnum"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// newTestWatch registers a watch for id in r without an endpoint, for
// driving observe with hand-made probe states.
func newTestWatch(r *ackRegistry, id tcp.TCPEndpointID, state *tcp.EndpointState, notify func()) *AckWatch {
	w := &AckWatch{reg: r, id: id, notify: notify, state: func() tcp.EndpointState { return *state }}
	r.watches.Store(id, w)
	r.n.Add(1)
	return w
}

var testID = tcp.TCPEndpointID{
	LocalPort: 40000, LocalAddress: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}),
	RemotePort: 5001, RemoteAddress: tcpip.AddrFrom4([4]byte{192, 0, 2, 2}),
}

// TestObserveArithmetic drives observe through a connection's life with
// sequence numbers that wrap: data acknowledged in steps, a FIN, and a reset
// that purges the send queue.
func TestObserveArithmetic(t *testing.T) {
	var r ackRegistry
	state := tcp.StateEstablished
	notes := 0
	w := newTestWatch(&r, testID, &state, func() { notes++ })
	iss := seqnum.Value(0xffff_f000) // sequence numbers wrap 4 KiB in
	probe := func(una seqnum.Value, used int, sndClosed bool) {
		var s tcp.TCPEndpointState
		s.ID = testID
		s.Sender.SndUna = una
		s.SndBufState.SndBufUsed = used
		s.SndBufState.SndClosed = sndClosed
		r.probe(&s)
	}
	for _, step := range []struct {
		name      string
		written   uint64
		una       seqnum.Value
		used      int
		sndClosed bool
		state     tcp.EndpointState
		want      uint64
	}{
		{"nothing acknowledged", 10000, iss + 1, 10000, false, tcp.StateEstablished, 0},
		{"part, across the wrap", 10000, iss + 1 + 6000, 4000, false, tcp.StateEstablished, 6000},
		{"more written, none acknowledged", 20000, iss + 1 + 6000, 14000, false, tcp.StateEstablished, 6000},
		{"all data", 20000, iss + 1 + 20000, 0, false, tcp.StateEstablished, 20000},
		{"FIN sent", 20000, iss + 1 + 20000, 0, true, tcp.StateFinWait1, 20000},
		{"FIN acknowledged", 20000, iss + 1 + 20001, -1, true, tcp.StateFinWait2, 20000},
	} {
		w.written.Store(step.written)
		state = step.state
		probe(step.una, step.used, step.sndClosed)
		if got := w.Acked(); got != step.want {
			t.Fatalf("%s: Acked = %d, want %d", step.name, got, step.want)
		}
	}
	if notes != 2 {
		t.Errorf("notify ran %d times, want 2 (once per growth)", notes)
	}

	// A reset purges the queue: SndBufUsed 0 with data unacknowledged, and
	// the endpoint in its error state. Acked must not move.
	var r2 ackRegistry
	state = tcp.StateEstablished
	w2 := newTestWatch(&r2, testID, &state, nil)
	w2.written.Store(5000)
	probe2 := func(una seqnum.Value, used int) {
		var s tcp.TCPEndpointState
		s.ID = testID
		s.Sender.SndUna = una
		s.SndBufState.SndBufUsed = used
		r2.probe(&s)
	}
	probe2(iss+1+1000, 4000)
	state = tcp.StateError
	probe2(iss+1+1000, 0)
	if acked, failed := w2.Progress(); acked != 1000 || !failed {
		t.Fatalf("after a reset: Progress = %d, %v; want 1000, true", acked, failed)
	}

	// A probe for a connection nobody watches, and one after Close, change
	// nothing.
	w2.Close()
	state = tcp.StateEstablished
	probe2(iss+1+5000, 0)
	if w2.Acked() != 1000 {
		t.Fatalf("a closed watch moved to %d", w2.Acked())
	}
}

// BenchmarkAckProbe measures zcnet's share of the probe: the lookup and,
// for a watched connection, the arithmetic. gVisor's share, copying the
// endpoint's state before the call, is in BenchmarkTCPAckEvents.
func BenchmarkAckProbe(b *testing.B) {
	run := func(b *testing.B, r *ackRegistry, id tcp.TCPEndpointID) {
		var s tcp.TCPEndpointState
		s.ID = id
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			s.Sender.SndUna = seqnum.Value(i)
			r.probe(&s)
		}
	}
	b.Run("unwatched-stack", func(b *testing.B) { run(b, &ackRegistry{}, testID) })
	b.Run("other-connection", func(b *testing.B) {
		var r ackRegistry
		state := tcp.StateEstablished
		newTestWatch(&r, testID, &state, nil)
		other := testID
		other.LocalPort++
		run(b, &r, other)
	})
	b.Run("watched", func(b *testing.B) {
		var r ackRegistry
		state := tcp.StateEstablished
		w := newTestWatch(&r, testID, &state, func() {})
		w.written.Store(1 << 40)
		run(b, &r, testID)
	})
}
