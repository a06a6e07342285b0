package link

import (
	"math/rand/v2"
	"testing"
)

// TestRefusedFilter checks rule 6's memory: a refused SYN is found again
// for at least one epoch after it was added and not after two, however
// many other SYNs were refused meanwhile (a table of slots would have
// forgotten it), and SYNs never refused are rarely taken for
// retransmissions.
func TestRefusedFilter(t *testing.T) {
	f := new(refusedFilter)
	epoch := int64(admitRefusedEpoch)
	t0 := 1000*epoch + epoch - 1 // the last nanosecond of an epoch
	rng := rand.New(rand.NewPCG(1, 2))
	const legit = 0x9e3779b97f4a7c15
	f.add(legit, t0)
	// A flood refused in the next epoch: 100 000 SYNs, far more than
	// admitRefusedBits / 64 words could hold as slots.
	for range 100_000 {
		f.add(rng.Uint64()|1, t0+1)
	}
	if !f.has(legit, t0+epoch) {
		t.Fatal("a refused SYN was forgotten within one epoch, under a flood")
	}
	chance := 0
	for range 100_000 {
		if f.has(rng.Uint64()|1, t0+epoch) {
			chance++
		}
	}
	// 100 000 keys of two bits in 2^21 bits: about 0.9% match by chance.
	if chance > 2_000 {
		t.Fatalf("%d of 100 000 SYNs never refused taken for retransmissions", chance)
	}
	if f.has(legit, t0+epoch+1) {
		t.Fatal("a refused SYN still remembered two epochs after the one it was added in")
	}
	// A jump of several epochs forgets everything.
	f.add(legit, t0+2*epoch+1)
	if f.has(legit, t0+10*epoch) {
		t.Fatal("a refused SYN remembered after a jump of the clock")
	}
	// The clock stepping back stays in the newer epoch.
	f.add(legit, t0+10*epoch)
	if !f.has(legit, t0) {
		t.Fatal("a refused SYN forgotten when the clock stepped back")
	}
}
