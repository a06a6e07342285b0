//go:build linux

package tap

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/evchan/uring"
	"github.com/zcnet/zcnet/tap/taptest"
)

// ringPeerLink opens a link with Config.IOURing over a socket pair and
// returns it with the peer end; it skips where the kernel refuses io_uring.
func ringPeerLink(t *testing.T) (*Link, *taptest.Peer, int) {
	t.Helper()
	fa, fb, err := taptest.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenFD(Config{Name: "ring", IOURing: true, LinkAddress: net.HardwareAddr(stackMAC)}, fa)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	peer := taptest.NewPeer(fb)
	t.Cleanup(func() { peer.Close() })
	if l.queues[0].rxr == nil {
		if _, err := uring.New(4); errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) {
			t.Skipf("io_uring unavailable here: %s", l.Info().RxBatch)
		}
		t.Fatalf("no ring: %s", l.Info().RxBatch)
	}
	return l, peer, fa
}

// TestRingReads sends frames over a socket pair to a link reading through
// io_uring and checks that each is delivered, in batches counted, with no
// fallback.
func TestRingReads(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l, peer, _ := ringPeerLink(t)
	d := &countingDispatcher{}
	l.Attach(d)
	const n = 50
	for i := 0; i < n; i++ {
		if err := peer.Write(withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("ring")}))); err != nil {
			t.Fatal(err)
		}
	}
	if !evchantest.Poll(5*time.Second, func() bool { return d.n.Load() == n }) {
		t.Fatalf("delivered %d of %d; %+v", d.n.Load(), n, l.Stats())
	}
	st := l.Stats()
	if st.RxFrames != n || st.RxRingBatches == 0 || st.RxRingFallbacks != 0 || st.RxWakeups == 0 {
		t.Fatalf("stats %+v", st)
	}
	l.Close()
}

// TestRingFallback forces reads that do not complete inline (a blocking
// descriptor, reads without RWF_NOWAIT, so the kernel parks them on the
// socket's wait queue): the reader must cancel them, count the fallback,
// and go on with readv, delivering what comes next.
func TestRingFallback(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l, peer, fd := ringPeerLink(t)
	q := l.queues[0]
	q.rxr.rwFlags = 0
	if err := unix.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	d := &countingDispatcher{}
	l.Attach(d)
	if !evchantest.Poll(5*time.Second, func() bool { return l.Stats().RxRingFallbacks == 1 }) {
		t.Fatalf("no fallback: %+v", l.Stats())
	}
	// The reader is now in (or on its way to) a blocking readv, which
	// this frame ends; the descriptor is non-blocking again for the
	// reads after it, so Close can stop the reader.
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	if err := peer.Write(withVnet(vnetHdr{}, udpFrame(frameSpec{payload: []byte("after")}))); err != nil {
		t.Fatal(err)
	}
	if !evchantest.Poll(5*time.Second, func() bool { return d.n.Load() == 1 }) {
		t.Fatalf("delivered %d after the fallback; %+v", d.n.Load(), l.Stats())
	}
	l.Close()
	if !errors.Is(q.ringErr, errRingDeferred) || l.Err() != nil {
		t.Fatalf("ringErr %v, Err %v", q.ringErr, l.Err())
	}
	if st := l.Stats(); st.RxRingFallbacks != 1 || st.RxFrames != 1 || st.RxReadErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}
