//go:build linux

package ring

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

func bulkSize() int {
	if raceEnabled {
		return 16 << 20
	}
	return 64 << 20
}

// withHelper starts the peer process and waits for it to connect.
func withHelper(t testing.TB, ss *stackSide) *exec.Cmd {
	t.Helper()
	cmd := startHelper(t, ss.link.Addr())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitUp(t, ss)
	return cmd
}

// TestTwoProcessTCP echoes 64 MiB (16 under -race) through a stack in a
// second process: 64 MiB cross each way and both SHA-256 sums agree.
func TestTwoProcessTCP(t *testing.T) {
	ss := newStackSide(t, Config{})
	withHelper(t, ss)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ss.dialTCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := bulkSize()
	sent, got := echoSHA(t, c, n, 7)
	if sent != got {
		t.Fatalf("echo SHA-256 %x, sent %x", got, sent)
	}
	st := ss.link.Stats()
	t.Logf("%d MiB each way; link stats %+v", n>>20, st)
	if st.TxBytes < uint64(n) || st.RxBytes < uint64(n) {
		t.Errorf("link moved tx %d rx %d bytes, want ≥ %d each", st.TxBytes, st.RxBytes, n)
	}
	if st.Kicks >= st.TxFrames {
		t.Errorf("%d kicks for %d frames: suppression not working", st.Kicks, st.TxFrames)
	}
}

// TestTwoProcessUDP sends datagrams of many sizes to the peer's echo and
// checks each comes back intact.
func TestTwoProcessUDP(t *testing.T) {
	ss := newStackSide(t, Config{})
	withHelper(t, ss)
	uc, err := gonet.DialUDP(ss.s, nil, &tcpip.FullAddress{NIC: 1, Addr: peerAddr, Port: echoUDPPort}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	buf := make([]byte, 2048)
	for i := 0; i < 200; i++ {
		msg := bytes.Repeat([]byte(fmt.Sprintf("%04d", i)), 1+i*364/200) // up to 1456 bytes
		ok := false
		for try := 0; try < 5 && !ok; try++ { // the first may wait on ARP
			if _, err := uc.Write(msg); err != nil {
				t.Fatal(err)
			}
			uc.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := uc.Read(buf)
			if err != nil {
				continue
			}
			if !bytes.Equal(buf[:n], msg) {
				t.Fatalf("datagram %d: got %d bytes %.16q, want %d", i, n, buf[:n], len(msg))
			}
			ok = true
		}
		if !ok {
			t.Fatalf("datagram %d: no echo", i)
		}
	}
}

// TestPeerKilled kills the peer process mid-transfer: the link reports it
// gone, takes its frames back, the stack survives and a new peer works.
func TestPeerKilled(t *testing.T) {
	ss := newStackSide(t, Config{})
	cmd := withHelper(t, ss)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := ss.dialTCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Move some data, then kill while the writer is still going.
	chunk := make([]byte, 64<<10)
	for i := 0; i < 16; i++ {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(chunk); err != nil {
			t.Fatal(err)
		}
	}
	go c.Write(make([]byte, 4<<20)) // in flight when the peer dies
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDown(t, ss)
	c.Close()
	if st := ss.link.Stats(); st.PeersLost != 1 {
		t.Fatalf("PeersLost %d, want 1", st.PeersLost)
	}
	if ss.link.Connected() {
		t.Fatal("still connected after peer death")
	}
	// A new peer: a fresh session, every frame back with its owner. The
	// stack may already be sending in it (ARP, the dead connection's
	// segments), so some frames may be lent: exactly those it published
	// in this session and has not had back, none left over from the last.
	withHelper(t, ss)
	ch := ss.link.ch.Load()
	ch.txMu.Lock()
	ch.reclaimLocked()
	lent := 0
	for _, l := range ch.lent {
		if l {
			lent++
		}
	}
	free, out := len(ch.free), int(ch.outHead-ch.outUsedTl)
	ch.txMu.Unlock()
	if free+lent != int(ss.link.lay.frames) || lent != out {
		t.Fatalf("new session: %d frames free, %d lent, %d published in it and not returned; want free+lent = %d and lent = %d",
			free, lent, out, ss.link.lay.frames, out)
	}
	c2, err := ss.dialTCP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	sent, got := echoSHA(t, c2, 1<<20, 9)
	if sent != got {
		t.Fatal("echo after reconnect differs")
	}
}
