//go:build linux

package ring

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// waitUp waits for the next OnPeer report and requires it to be "up".
func waitUp(t testing.TB, ss *stackSide) {
	t.Helper()
	select {
	case err := <-ss.up:
		if err != nil {
			t.Fatalf("peer report: %v, want up", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no peer connected")
	}
}

// waitDown waits for the next report and requires it to say the peer went.
func waitDown(t *testing.T, ss *stackSide) {
	t.Helper()
	select {
	case err := <-ss.up:
		if !errors.Is(err, ErrPeerGone) {
			t.Fatalf("peer report: %v, want ErrPeerGone", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("peer loss not reported")
	}
}

// echoSHA writes n pseudo-random bytes on c while reading the echo, and
// returns the SHA-256 of what was sent and of what came back.
func echoSHA(t *testing.T, c net.Conn, n int, seed uint64) (sent, got [32]byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(50 * time.Second))
	errc := make(chan error, 1)
	hs := sha256.New()
	go func() {
		r := rand.New(rand.NewPCG(seed, seed))
		buf := make([]byte, 64<<10)
		for left := n; left > 0; {
			k := min(left, len(buf))
			for i := range buf[:k] {
				buf[i] = byte(r.Uint32())
			}
			hs.Write(buf[:k])
			if _, err := c.Write(buf[:k]); err != nil {
				errc <- err
				return
			}
			left -= k
		}
		errc <- nil
	}()
	hr := sha256.New()
	if _, err := io.CopyN(hr, c, int64(n)); err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	copy(sent[:], hs.Sum(nil))
	copy(got[:], hr.Sum(nil))
	return sent, got
}

// TestInProcessTCP runs both sides in one process: a Link and a Peer's
// endpoint, each with a stack, and echoes 4 MiB over TCP.
func TestInProcessTCP(t *testing.T) {
	st := inProcessEcho(t, Config{}, 4<<20)
	if st.RxCopiedBytes < 4<<20 || st.TxCopiedBytes < 4<<20 {
		t.Errorf("copy counters rx %d tx %d, want ≥ 4 MiB each", st.RxCopiedBytes, st.TxCopiedBytes)
	}
	// The receive loop counts a frame's copy before it parses the frame
	// and counts its bytes, and the connection's last segments (its close)
	// may still be arriving while the counters are read: the copy may lead
	// the bytes by the one frame in progress, never more, never behind.
	if st.RxDropsBadFrame == 0 && (st.RxCopiedBytes < st.RxBytes || st.RxCopiedBytes-st.RxBytes > 1500+14) {
		t.Errorf("rx copied %d, rx bytes %d: want equal but for one frame in progress", st.RxCopiedBytes, st.RxBytes)
	}
	if max := uint64(1500 + 14); st.TxBytes > st.TxFrames*max {
		t.Errorf("without GSO, %d bytes in %d frames: some over %d", st.TxBytes, st.TxFrames, max)
	}
}

// TestInProcessGSO: with Config.GSO both stacks hand the link TCP segments
// far over the MSS, each crosses in one frame with its checksum completed
// by the sending link (the receiving stack checks it), and 8 MiB echo
// byte-identical.
func TestInProcessGSO(t *testing.T) {
	st := inProcessEcho(t, Config{GSO: true}, 8<<20)
	// Frames of an MTU-sized link are at most 1500+14 bytes (see
	// TestInProcessTCP), so an average above that means super-frames
	// crossed. How far above depends on scheduling: the echo's reads, and
	// with them its segments, are small when its goroutine runs often, and
	// every ACK is a frame of its own (the full suite on a loaded machine
	// averaged 7943 bytes).
	if avg := st.TxBytes / max(st.TxFrames, 1); avg <= 1500+14 {
		t.Errorf("GSO: %d bytes in %d frames, %d on average; want super-frames", st.TxBytes, st.TxFrames, avg)
	}
}

// inProcessEcho echoes n bytes through a Link and a Peer's endpoint in this
// process, checks the SHA-256 and that nothing was rejected, and returns
// the Link's stats.
func inProcessEcho(t *testing.T, cfg Config, n int) Stats {
	ss := newStackSide(t, cfg)
	p, err := Dial(ss.link.Addr(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	waitUp(t, ss)
	ps, err := newTestStack(t, p.Endpoint(), peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ps.Close()
		p.Close()
		ps.Wait()
	}()
	ln, err := gonet.ListenTCP(ps, tcpip.FullAddress{NIC: 1, Addr: peerAddr, Port: echoTCPPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ss.dialTCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent, got := echoSHA(t, c, n, 1)
	c.Close()
	<-done
	if sent != got {
		t.Fatalf("echo SHA-256 %x, sent %x", got, sent)
	}
	st := ss.link.Stats()
	t.Logf("link stats %+v", st)
	if bad := st.BadOffset + st.BadLength + st.BadFlags + st.NotOwned + st.IndexBackwards + st.IndexOverrun; bad != 0 {
		t.Errorf("honest peer produced %d rejections", bad)
	}
	return st
}

var _ stack.LinkEndpoint = (*Link)(nil)
