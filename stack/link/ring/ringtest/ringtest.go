//go:build linux

package ringtest

import (
	"errors"
	"fmt"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link/ring"
)

// ErrNotCounted means the stack side did not count a fault in time.
var ErrNotCounted = errors.New("ringtest: fault not counted")

// Inject writes one fault f through p and waits, up to timeout, until
// stats (the stack side's counters) show it rejected. It returns how much
// f's counter grew meanwhile: 1, unless the stack side rejects something
// else of the same kind at the same time (an honest peer sends nothing it
// rejects). p may be carrying a stack's traffic meanwhile.
func Inject(p *ring.Peer, f ring.Fault, stats func() ring.Stats, timeout time.Duration) (uint64, error) {
	before := f.Counter(stats())
	counted := false
	err := p.InjectFault(f, func() {
		counted = evchantest.Poll(timeout, func() bool { return f.Counter(stats()) > before })
	})
	grew := f.Counter(stats()) - before
	switch {
	case err != nil:
		return grew, fmt.Errorf("ringtest: injecting %v: %w", f, err)
	case !counted:
		return grew, fmt.Errorf("%w: %v, after %v", ErrNotCounted, f, timeout)
	}
	return grew, nil
}

// InjectAll injects every fault once, in order, each as Inject does, and
// returns how much each one's counter grew. It stops at the first error.
func InjectAll(p *ring.Peer, stats func() ring.Stats, timeout time.Duration) ([ring.NumFaults]uint64, error) {
	var grew [ring.NumFaults]uint64
	for f := ring.Fault(0); f < ring.NumFaults; f++ {
		n, err := Inject(p, f, stats, timeout)
		grew[f] = n
		if err != nil {
			return grew, err
		}
	}
	return grew, nil
}
