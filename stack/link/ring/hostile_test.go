//go:build linux

package ring

import (
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/zcnet/zcnet/evchan/evchantest"
)

// eventually polls cond (yielding) until it holds or 5 s pass.
// TestHostilePeer writes every kind of bad descriptor and index the issue
// lists (InjectFault); each is rejected and counted exactly once, and a
// good frame still goes through after each.
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
	good := make([]byte, 60)
	sendGood := func() {
		t.Helper()
		before := l.Stats().RxDropsBadFrame
		if _, err := p.Send(good); err != nil {
			t.Fatal(err)
		}
		// Nothing attached: a good frame is consumed and dropped as such.
		evchantest.Eventually(t, "good frame consumed", func() bool { return l.Stats().RxDropsBadFrame == before+1 })
	}
	sendGood()
	ch := l.ch.Load()
	for f := Fault(0); f < NumFaults; f++ {
		before := f.Counter(l.Stats())
		seen := func() {
			evchantest.Eventually(t, f.String()+" counted", func() bool { return f.Counter(l.Stats()) > before })
		}
		if err := p.InjectFault(f, seen); err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if got := f.Counter(l.Stats()) - before; got != 1 {
			t.Errorf("%v counted %d times, want 1", f, got)
		}
		sendGood()
	}
	// A second forged return of the same frame: counted again, and the
	// free list is not corrupted by a double free.
	before := l.Stats().NotOwned
	if err := p.InjectFault(FaultForgedReturn, nil); err != nil {
		t.Fatal(err)
	}
	ch.txMu.Lock()
	ch.reclaimLocked()
	free := len(ch.free)
	ch.txMu.Unlock()
	if got := l.Stats().NotOwned - before; got != 1 {
		t.Errorf("second forged return counted %d, want 1", got)
	}
	if free != int(ch.lay.frames) {
		t.Errorf("free frames %d after forged returns, want %d", free, ch.lay.frames)
	}
	if err := p.InjectFault(NumFaults, nil); !errors.Is(err, ErrUnknownFault) {
		t.Errorf("InjectFault(NumFaults) = %v, want ErrUnknownFault", err)
	}
	t.Logf("stats after hostile peer: %+v", l.Stats())
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
	if _, err := Dial(l.Addr(), Config{GSO: true}); !errors.Is(err, ErrMismatch) {
		t.Fatalf("dial wanting GSO from a stack side without: %v, want ErrMismatch", err)
	}
	<-refused
	p, err := Dial(l.Addr(), Config{})
	if err != nil {
		t.Fatalf("good peer after refusals: %v", err)
	}
	p.Close()
	if st := l.Stats(); st.HandshakesRefused != 1 || st.PeersUp != 3 {
		t.Errorf("refused %d up %d, want 1 and 3", st.HandshakesRefused, st.PeersUp)
	}
}
