//go:build linux

package taptest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPeerFramesKeepBoundaries(t *testing.T) {
	a, b, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := NewPeer(a), NewPeer(b)
	defer pa.Close()
	defer pb.Close()
	frames := [][]byte{bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 65536+12), {3}}
	for _, f := range frames {
		if err := pa.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1<<17)
	for i, f := range frames {
		n, err := pb.Read(buf, time.Second)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], f) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, n, len(f))
		}
	}
	if _, err := pb.Read(buf, 10*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("read of an empty pair: %v, want ErrTimeout", err)
	}
	if err := pa.Write([]byte{9}); err != nil {
		t.Fatal(err)
	}
	if n := pb.Drain(10 * time.Millisecond); n != 1 {
		t.Fatalf("Drain read %d frames, want 1", n)
	}
}
