//go:build linux

package ring

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// segmentFile returns the identity of the live session's memfd.
func segmentFile(t *testing.T, l *Link) os.FileInfo {
	t.Helper()
	l.mu.Lock()
	seg := l.seg
	var fi os.FileInfo
	var err error
	if seg != nil {
		fi, err = os.Stat(fmt.Sprintf("/proc/self/fd/%d", seg.region.FD))
	}
	l.mu.Unlock()
	if seg == nil || err != nil {
		t.Fatalf("no live segment: %v", err)
	}
	return fi
}

// TestFreshSegmentPerSession: a peer that closes its socket but lives on
// keeps its mapping of the old segment. The next session gets a segment of
// its own (another memfd), so the old peer scribbling over everything it
// still maps — rings, indices, frames — changes nothing for the new peer:
// its echo arrives byte for byte and the link rejects nothing.
func TestFreshSegmentPerSession(t *testing.T) {
	ss := newStackSide(t, Config{})
	p1, err := Dial(ss.link.Addr(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	waitUp(t, ss)
	first := segmentFile(t, ss.link)
	old := p1.ch.mem
	p1.conn.Close() // the socket only: p1 lives on and still maps old
	waitDown(t, ss)

	p2, err := Dial(ss.link.Addr(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	waitUp(t, ss)
	if os.SameFile(first, segmentFile(t, ss.link)) {
		t.Fatal("the second session reuses the first session's memfd")
	}
	ps, err := newTestStack(t, p2.Endpoint(), peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	stopEcho, err := serveEcho(ps, peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopEcho()
		ps.Close()
		p2.Close()
		ps.Wait()
	}()

	stop := make(chan struct{})
	var passes atomic.Uint64
	scribbled := make(chan struct{})
	go func() {
		defer close(scribbled)
		for v := byte(0xff); ; v-- {
			select {
			case <-stop:
				return
			default:
			}
			for i := range old {
				old[i] = v
			}
			passes.Add(1)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ss.dialTCP(ctx)
	if err != nil {
		close(stop)
		<-scribbled
		t.Fatal(err)
	}
	sent, got := echoSHA(t, c, 4<<20, 3)
	c.Close()
	close(stop)
	<-scribbled
	if sent != got {
		t.Fatalf("echo SHA-256 %x, sent %x", got, sent)
	}
	if passes.Load() == 0 {
		t.Fatal("the old peer never scribbled")
	}
	st := ss.link.Stats()
	if bad := st.BadOffset + st.BadLength + st.BadFlags + st.NotOwned + st.IndexBackwards + st.IndexOverrun; bad != 0 {
		t.Errorf("%d rejections while the old peer scribbled over its old segment: %+v", bad, st)
	}
	t.Logf("old peer scribbled its whole old segment %d times during the echo", passes.Load())
}
