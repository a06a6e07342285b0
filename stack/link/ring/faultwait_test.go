//go:build linux

package ring

import (
	"testing"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

// owePeerKick leaves p's channel as a lazy flush (pure TCP ACKs) leaves
// it while the peer's receive loop runs: every frame of the peer's
// published to a stack side that is asleep, and their kick owed rather
// than sent. In a live session the peer's loop pays the debt before it
// sleeps (settle), which takes the transmit lock.
func owePeerKick(t *testing.T, l *Link, p *Peer) {
	t.Helper()
	c := p.ch
	evchantest.Eventually(t, "stack side asleep", func() bool { return c.peerWait.Load() != 0 })
	kicks := p.Stats().Kicks
	c.rxActive.Store(true)
	c.txMu.Lock()
	for range c.lay.frames {
		if err := c.sendLocked(60, func(b []byte) { clear(b) }); err != nil {
			c.txMu.Unlock()
			t.Fatal(err)
		}
	}
	c.flushLocked(true)
	owed := c.kickOwed
	c.txMu.Unlock()
	if !owed || p.Stats().Kicks != kicks {
		t.Fatalf("kick owed %v, kicks %d → %d: want the kick owed and not sent", owed, kicks, p.Stats().Kicks)
	}
	if got := l.Stats().RxDropsBadFrame; got != 0 {
		t.Fatalf("stack side took %d frames without a kick", got)
	}
}

// TestFaultWaitOwedKickFullRing: the injector, which holds the peer's
// transmit lock, must not rely on what that lock holds up, nor break the
// ring for the honest frames around its faults. Each case starts with
// every frame of the peer's published, the stack side asleep and the kick
// owed to it (owePeerKick). The faults that wait for the stack side to
// take what was published (an index moved backwards, a used tail
// overrun) or to return a frame (a reused frame) must pay that kick
// first: the peer's receive loop, which would pay it, waits for the same
// lock, and the stack side sleeps through the whole wait. The faults that
// publish a descriptor beyond the peer's frames (a bad one, a frame
// published twice) must wait for room in the ring: in a full one the
// extra descriptor writes over a frame the stack side has not read, and
// the head runs a ring ahead of its tail (an overrun counted though none
// was injected). Each fault is counted once, no overrun is counted but
// the injected one, and every frame comes back to the peer.
func TestFaultWaitOwedKickFullRing(t *testing.T) {
	for _, f := range []Fault{FaultIndexBackwards, FaultUsedTailOverrun, FaultReused, FaultFlags} {
		t.Run(f.String(), func(t *testing.T) {
			const frames = 4
			l, p := listenDial(t, Config{Frames: frames})
			owePeerKick(t, l, p)
			before, overruns := f.Counter(l.Stats()), l.Stats().IndexOverrun
			seen := func() {
				evchantest.Eventually(t, f.String()+" counted", func() bool { return f.Counter(l.Stats()) > before })
			}
			if err := p.InjectFault(f, seen); err != nil {
				t.Fatalf("%v with a kick owed: %v", f, err)
			}
			if got := f.Counter(l.Stats()) - before; got != 1 {
				t.Errorf("%v counted %d times, want 1", f, got)
			}
			if got := l.Stats().IndexOverrun - overruns; f != FaultUsedTailOverrun && got != 0 {
				t.Errorf("%v: %d index overruns counted, want none", f, got)
			}
			c := p.ch
			evchantest.Eventually(t, "every frame back with the peer", func() bool {
				c.txMu.Lock()
				defer c.txMu.Unlock()
				c.reclaimLocked()
				return len(c.free) == frames
			})
		})
	}
}

// TestForgedReturnOfLentFrame: a forged return is refused and counted
// once whatever the state of the frame it names, and ends no loan. The
// stack side lends every frame it has (the last one included, which is
// lent only when all are) and the peer forges a return: first with the
// frames still on the avail ring, then with every one of them returned
// and not yet taken back (the used ring full, so the forgery must wait
// for room). Afterwards every frame comes home, and no overrun is
// counted.
func TestForgedReturnOfLentFrame(t *testing.T) {
	const frames = 4
	l, p := listenDial(t, Config{Frames: frames})
	sc := l.ch.Load()
	lendAll := func() {
		t.Helper()
		sc.txMu.Lock()
		defer sc.txMu.Unlock()
		sc.reclaimLocked()
		for range frames {
			if err := sc.sendLocked(60, func(b []byte) { clear(b) }); err != nil {
				t.Fatal(err)
			}
		}
		sc.flushLocked(false)
	}
	forge := func(when string) {
		t.Helper()
		before, overruns := l.Stats().NotOwned, l.Stats().IndexOverrun
		err := p.InjectFault(FaultForgedReturn, func() {
			if !evchantest.Poll(5e9, func() bool { return l.Stats().NotOwned > before }) {
				t.Errorf("%s: forged return not counted", when)
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got := l.Stats().NotOwned - before; got != 1 {
			t.Errorf("%s: forged return counted %d times, want 1", when, got)
		}
		if got := l.Stats().IndexOverrun - overruns; got != 0 {
			t.Errorf("%s: %d index overruns counted, want none", when, got)
		}
	}
	recvAll := func() {
		t.Helper()
		for got := 0; got < frames; {
			n, err := p.Recv(func([]byte) {})
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	homeAll := func(when string) {
		t.Helper()
		evchantest.Eventually(t, when+": every frame back with the stack side", func() bool {
			sc.txMu.Lock()
			defer sc.txMu.Unlock()
			sc.reclaimLocked()
			return len(sc.free) == frames
		})
	}

	lendAll()
	forge("frames on the avail ring")
	recvAll()
	homeAll("after the first forgery")

	lendAll()
	sc.txMu.Lock() // the stack side takes no return back meanwhile
	recvAll()
	sc.txMu.Unlock()
	forge("frames returned, the used ring full")
	homeAll("after the second forgery")
	if n := l.Stats().NotOwned; n != 2 {
		t.Errorf("NotOwned %d after two forgeries, want 2", n)
	}
}
