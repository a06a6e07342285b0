//go:build linux

package ringtest_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/stack/link/ring"
	"github.com/zcnet/zcnet/stack/link/ring/ringtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestInjectAll: against a live stack side every fault is counted once;
// against one that only counts (stats that never move), Inject reports
// ErrNotCounted.
func TestInjectAll(t *testing.T) {
	l, err := ring.Listen(filepath.Join(t.TempDir(), "ring.sock"), ring.Config{Frames: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Wait()
	defer l.Close()
	p, err := ring.Dial(l.Addr(), ring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for f := ring.Fault(0); f < ring.NumFaults; f++ {
		n, err := ringtest.Inject(p, f, l.Stats, 5*time.Second)
		if err != nil || n != 1 {
			t.Errorf("%v: grew %d, %v; want 1", f, n, err)
		}
	}
	frozen := l.Stats()
	_, err = ringtest.Inject(p, ring.FaultFlags, func() ring.Stats { return frozen }, 10*time.Millisecond)
	if !errors.Is(err, ringtest.ErrNotCounted) {
		t.Errorf("with frozen stats: %v, want ErrNotCounted", err)
	}
}
