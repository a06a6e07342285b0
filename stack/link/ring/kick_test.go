//go:build linux

package ring

import (
	"path/filepath"
	"testing"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

// TestLazyKickOwedThenPaid: a lazy flush (pure ACKs) while the receive
// loop runs owes its kick instead of sending it; the loop pays it before
// it sleeps (settle), and the sleeping other side then gets the frame. A
// lazy flush while the loop sleeps kicks at once.
func TestLazyKickOwedThenPaid(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "ring.sock"), Config{Frames: 8})
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
	got := make(chan int, 4)
	go func() {
		for {
			n, err := p.Recv(func([]byte) {})
			if err != nil {
				close(got)
				return
			}
			got <- n
		}
	}()
	ch := l.ch.Load()
	evchantest.Eventually(t, "peer asleep", func() bool { return ch.peerWait.Load() != 0 })
	send := func(lazy bool) {
		ch.txMu.Lock()
		defer ch.txMu.Unlock()
		if err := ch.sendLocked(60, func(b []byte) { clear(b) }); err != nil {
			t.Fatal(err)
		}
		ch.flushLocked(lazy)
	}

	ch.rxActive.Store(true) // as while the stack side's loop runs
	kicks := l.Stats().Kicks
	send(true)
	if k := l.Stats().Kicks; k != kicks {
		t.Fatalf("lazy flush with the loop running kicked (%d → %d)", kicks, k)
	}
	if !ch.kickOwed || ch.peerWait.Load() == 0 {
		t.Fatalf("owed %v, peer waiting %d: want the kick owed to a sleeping peer", ch.kickOwed, ch.peerWait.Load())
	}
	ch.rxActive.Store(false)
	ch.settle()
	if k := l.Stats().Kicks; k != kicks+1 {
		t.Fatalf("settle: kicks %d → %d, want one", kicks, k)
	}
	if n := <-got; n != 1 {
		t.Fatalf("peer took %d frames, want 1", n)
	}

	evchantest.Eventually(t, "peer asleep again", func() bool { return ch.peerWait.Load() != 0 })
	send(true) // the loop is asleep: kick now
	if k := l.Stats().Kicks; k != kicks+2 {
		t.Fatalf("lazy flush with the loop asleep: kicks %d, want %d", k, kicks+2)
	}
	if n := <-got; n != 1 {
		t.Fatalf("peer took %d frames, want 1", n)
	}
}
