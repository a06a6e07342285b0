package evchan

import "testing"

// TestRingRunWords: the run/rel word encoding tells positions of
// different laps apart and carries lengths up to the capacity.
func TestRingRunWords(t *testing.T) {
	var r ring
	r.init(8)
	for _, pos := range []uint64{0, 7, 8, 9, 1 << 40} {
		for _, k := range []uint64{1, 5, 8} {
			w := r.word(pos, k)
			if got := r.runAt(w, pos); got != k {
				t.Fatalf("runAt(word(%d, %d), %d) = %d", pos, k, pos, got)
			}
			if got := r.runAt(w, pos+8); got != 0 {
				t.Fatalf("a word of position %d read as a run at %d (next lap)", pos, pos+8)
			}
			if pos >= 8 && r.runAt(w, pos-8) != 0 {
				t.Fatalf("a word of position %d read as a run at %d (previous lap)", pos, pos-8)
			}
		}
	}
	if r.runAt(0, 0) != 0 {
		t.Fatal("a never-written word reads as a run")
	}
}

// TestRingOutOfOrderRelease: two consumers claim runs; the later one
// finishes first and must not free its positions until the earlier one
// has, and then both are freed at once.
func TestRingOutOfOrderRelease(t *testing.T) {
	var r ring
	r.init(8)
	if _, err := r.enqueue(make([]Event, 6)); err != nil {
		t.Fatal(err)
	}
	posA, kA := r.claimRun(2)
	posB, kB := r.claimRun(3)
	if posA != 0 || kA != 2 || posB != 2 || kB != 3 {
		t.Fatalf("claims [%d,+%d) [%d,+%d)", posA, kA, posB, kB)
	}
	dst := make([]Event, 3)
	r.copyOut(posB, kB, dst, nil)
	if freed := r.releaseRun(posB, kB); freed != 0 || r.released.Load() != 0 {
		t.Fatalf("later run released first: freed %d, released %d", freed, r.released.Load())
	}
	r.copyOut(posA, kA, dst, nil)
	if freed := r.releaseRun(posA, kA); freed != 5 || r.released.Load() != 5 {
		t.Fatalf("earlier run: freed %d, released %d; want both runs (5)", freed, r.released.Load())
	}
	// The remainder of the producer's run (split by B's claim) is still
	// there.
	if pos, k := r.claimRun(8); pos != 5 || k != 1 {
		t.Fatalf("remainder [%d,+%d), want [5,+1)", pos, k)
	}
}

// TestRingRefusesOverspend: a run that would overwrite unreleased
// positions is refused before anything is claimed.
func TestRingRefusesOverspend(t *testing.T) {
	var r ring
	r.init(4)
	if _, err := r.enqueue(make([]Event, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.enqueue(make([]Event, 2)); err != errOverspent {
		t.Fatalf("overspent run: %v", err)
	}
	if got := r.tail.Load(); got != 3 {
		t.Fatalf("tail moved to %d by a refused run", got)
	}
}
