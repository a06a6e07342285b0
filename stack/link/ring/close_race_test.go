//go:build linux

package ring

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestRecvRacesClose: Close while another goroutine is inside Recv (asleep
// on the channel, or just entering it) unmaps the segment only after that
// Recv has left it; the Recv returns ErrPeerGone, and a Recv after Close
// does too, without touching the unmapped memory.
func TestRecvRacesClose(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "ring.sock"), Config{Frames: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Wait()
	defer l.Close()
	for round := range 50 {
		p, err := Dial(l.Addr(), Config{})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := p.Recv(func([]byte) {}); err != nil {
					done <- err
					return
				}
			}
		}()
		if err := p.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		if err := <-done; !errors.Is(err, ErrPeerGone) {
			t.Fatalf("round %d: Recv racing Close returned %v, want ErrPeerGone", round, err)
		}
		if _, err := p.Recv(func([]byte) {}); !errors.Is(err, ErrPeerGone) {
			t.Fatalf("round %d: Recv after Close returned %v, want ErrPeerGone", round, err)
		}
	}
}
