//go:build linux

package ring

import (
	"errors"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// eventually polls cond (yielding) until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// hostile is a peer that writes raw ring entries.
type hostile struct{ *Peer }

func (h hostile) publish(d desc) {
	c := h.ch
	putDesc(c.outAvail.slot(c.outHead), d)
	c.outHead++
	c.outAvail.head.Store(c.outHead)
	c.kick(c.peerEv)
}

func (h hostile) setHead(v uint32) {
	h.ch.outAvail.head.Store(v)
	h.ch.kick(h.ch.peerEv)
}

// TestHostilePeer writes every kind of bad descriptor and index the issue
// lists; each is rejected and counted, and a good frame still goes through
// after each.
func TestHostilePeer(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "ring.sock"), Config{Frames: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Wait()
	defer l.Close()
	p, err := Dial(l.Addr(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h := hostile{p}
	lay := p.ch.lay
	peerFrame := func(i uint32) uint64 { return uint64(lay.frameOff(lay.frames + i)) }
	good := make([]byte, 60)
	delivered := uint64(0)
	sendGood := func() {
		t.Helper()
		if _, err := p.Send(good); err != nil {
			t.Fatal(err)
		}
		delivered++
		// Nothing attached: a good frame is consumed and dropped as such.
		eventually(t, "good frame consumed", func() bool { return l.Stats().RxDropsBadFrame == delivered })
	}
	sendGood()

	cases := []struct {
		name  string
		d     desc
		count func(Stats) uint64
	}{
		{"offset outside the pool", desc{off: 1 << 40, len: 60}, func(s Stats) uint64 { return s.BadOffset }},
		{"offset in the control area", desc{off: 64, len: 4}, func(s Stats) uint64 { return s.BadOffset }},
		{"offset wraps", desc{off: ^uint64(0) - 8, len: 60}, func(s Stats) uint64 { return s.BadOffset }},
		{"frame index past the pool", desc{off: uint64(lay.frameOff(2 * lay.frames)), len: 60}, func(s Stats) uint64 { return s.BadOffset }},
		{"the stack side's own frame", desc{off: uint64(lay.frameOff(0)), len: 60}, func(s Stats) uint64 { return s.NotOwned }},
		{"length over the frame", desc{off: peerFrame(1), len: lay.frameSize + 1}, func(s Stats) uint64 { return s.BadLength }},
		{"offset+length over the frame", desc{off: peerFrame(1) + 100, len: lay.frameSize - 99}, func(s Stats) uint64 { return s.BadLength }},
		{"zero length", desc{off: peerFrame(1), len: 0}, func(s Stats) uint64 { return s.BadLength }},
		{"reserved flags", desc{off: peerFrame(1), len: 60, flags: 1}, func(s Stats) uint64 { return s.BadFlags }},
	}
	for _, tc := range cases {
		before := tc.count(l.Stats())
		h.publish(tc.d)
		eventually(t, tc.name+" counted", func() bool { return tc.count(l.Stats()) == before+1 })
		sendGood()
	}

	// Ring index past the ring, then backwards: ignored, counted; the real
	// index restored, the link goes on.
	real := h.ch.outHead
	before := l.Stats().IndexOverrun
	h.setHead(real + lay.slots + 5)
	eventually(t, "overrun counted", func() bool { return l.Stats().IndexOverrun == before+1 })
	h.setHead(real)
	sendGood()
	before = l.Stats().IndexBackwards
	h.setHead(h.ch.outHead - 3)
	eventually(t, "backwards counted", func() bool { return l.Stats().IndexBackwards == before+1 })
	h.setHead(h.ch.outHead)
	sendGood()

	// The peer returns a stack frame it was never lent, twice: counted, and
	// the free list is not corrupted by a double free.
	ch := l.ch.Load()
	before = l.Stats().NotOwned
	for i := 0; i < 2; i++ {
		c := h.ch
		putDesc(c.inUsed.slot(c.inUsedHd), desc{off: uint64(lay.frameOff(0)), len: 60})
		c.inUsedHd++
		c.inUsed.head.Store(c.inUsedHd)
	}
	ch.txMu.Lock()
	ch.reclaimLocked()
	free := len(ch.free)
	ch.txMu.Unlock()
	if got := l.Stats().NotOwned - before; got != 2 {
		t.Errorf("unlent returns counted %d, want 2", got)
	}
	if free != int(lay.frames) {
		t.Errorf("free frames %d after forged returns, want %d", free, lay.frames)
	}

	// The consumer's index on a ring the stack produces (RX used, where it
	// gives the peer's frames back), moved past the stack's head: counted
	// once, the stack's view unchanged, frames still flow.
	before = l.Stats().IndexOverrun
	h.ch.outUsed.tail.Store(h.ch.outUsedTl + 1000)
	sendGood()
	sendGood()
	if got := l.Stats().IndexOverrun - before; got != 1 {
		t.Errorf("tail past head counted %d times, want 1", got)
	}
	h.ch.outUsed.tail.Store(h.ch.outUsedTl)
	sendGood()
	st := l.Stats()
	t.Logf("stats after hostile peer: %+v", st)
}

// TestVersionMismatch: a peer speaking another version is refused with
// ErrMismatch on both sides, and a good peer is accepted afterwards.
func TestVersionMismatch(t *testing.T) {
	refused := make(chan error, 4)
	l, err := Listen(filepath.Join(t.TempDir(), "ring.sock"), Config{OnPeer: func(up bool, err error) {
		if !up {
			refused <- err
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Wait()
	defer l.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: l.Addr(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dialConn(c, Config{}, Version+1)
	c.Close()
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("dial with version %d: %v, want ErrMismatch", Version+1, err)
	}
	if err := <-refused; !errors.Is(err, ErrMismatch) {
		t.Fatalf("stack side reported %v, want ErrMismatch", err)
	}
	if _, err := Dial(l.Addr(), Config{Frames: 7}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("dial wanting 7 frames: %v, want ErrMismatch", err)
	}
	<-refused // that session ends when the refusing peer closes
	p, err := Dial(l.Addr(), Config{})
	if err != nil {
		t.Fatalf("good peer after refusals: %v", err)
	}
	p.Close()
	if st := l.Stats(); st.HandshakesRefused != 1 || st.PeersUp != 2 {
		t.Errorf("refused %d up %d, want 1 and 2", st.HandshakesRefused, st.PeersUp)
	}
}
