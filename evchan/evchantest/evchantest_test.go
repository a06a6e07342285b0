package evchantest

import (
	"testing"

	"github.com/zcnet/zcnet/evchan"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCollectAndEmpty(t *testing.T) {
	c := New(t, 8)
	for i := range 3 {
		if err := c.TryPost(evchan.Event{Source: evchan.SourceUser, Cookie: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if ev := Next(t, c); ev.Cookie != 0 {
		t.Fatalf("Next = %v", ev)
	}
	evs := Collect(t, c, 2)
	if evs[0].Cookie != 1 || evs[1].Cookie != 2 {
		t.Fatalf("Collect = %v", evs)
	}
	Empty(t, c)
}

// fakeTB records failures instead of failing the real test.
type fakeTB struct {
	testing.TB
	errors int
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Errorf(string, ...any) { f.errors++ }

func TestNewReportsLeakedBuffers(t *testing.T) {
	f := &fakeTB{}
	// New's cleanup runs when the sub-test ends and reports to f.
	t.Run("leak", func(t *testing.T) {
		f.TB = t
		c := New(f, 4)
		c.TryPost(evchan.Event{Source: evchan.SourceNetOp, Buffer: new(int)})
		c.TryPost(evchan.Event{Source: evchan.SourceNetOp})
	})
	if f.errors != 1 {
		t.Fatalf("leaked buffers reported %d times, want 1", f.errors)
	}
}
