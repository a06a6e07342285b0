package impair

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"
	"gvisor.dev/gvisor/pkg/refs"
)

func TestMain(m *testing.M) {
	// Every reference-counted gVisor object (packets, buffer chunks, TCP
	// segments) registers itself while alive, so checkLeaks can prove that
	// each reference the endpoint took was released. It must be switched on
	// before the first such object exists.
	refs.SetLeakMode(refs.LeaksPanic)
	goleak.VerifyTestMain(m)
}

// checkLeaks fails t if any reference-counted gVisor object is still alive.
// Call it when everything the test made has been closed and drained.
func checkLeaks(t testing.TB) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("reference leak: %v", fmt.Sprint(r))
		}
	}()
	refs.DoRepeatedLeakCheck()
}
