package hist

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestHistBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prev := -1
	for _, v := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 1 << 20, 1<<40 + 12345, 1 << 62} {
		b := histBucket(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d after %d", v, b, prev)
		}
		prev = b
	}
	for i := 0; i < 100000; i++ {
		v := r.Uint64() >> r.IntN(64)
		b := histBucket(v)
		lo := uint64(0)
		if b > 0 {
			lo = histUpper(b-1) + 1
		}
		if v < lo || v > histUpper(b) {
			t.Fatalf("%d in bucket %d = [%d, %d]", v, b, lo, histUpper(b))
		}
		// A bucket is at most 1/16 of its values wide.
		if w := histUpper(b) - lo; v >= 16 && w > v/16+1 {
			t.Fatalf("bucket %d of %d is %d wide", b, v, w)
		}
	}
}

// TestHistQuantiles compares the histogram's quantiles with the exact
// ones of the same samples: each within 1/16 above, never below.
func TestHistQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h Hist
	var all []time.Duration
	for i := 0; i < 20000; i++ {
		// Log-normal-ish: mostly tens of microseconds, a tail to 50 ms.
		d := time.Duration(float64(20*time.Microsecond) * (1 + r.ExpFloat64()*r.ExpFloat64()*10))
		h.Add(d)
		all = append(all, d)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 1} {
		exact := all[int(q*float64(len(all))+0.999999)-1]
		got := h.Quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/16)+1 {
			t.Errorf("q%.2f = %v, exact %v", q, got, exact)
		}
	}
	if h.min != all[0] || h.max != all[len(all)-1] || h.n != uint64(len(all)) {
		t.Errorf("min %v max %v n %d", h.min, h.max, h.n)
	}
	var n uint64
	for _, o := range h.Octaves() {
		n += o.Count
		if o.Hi <= o.Lo {
			t.Errorf("Octave [%v, %v)", o.Lo, o.Hi)
		}
	}
	if n != h.n {
		t.Errorf("octaves hold %d of %d samples", n, h.n)
	}
	var b bytes.Buffer
	h.Print(&b)
	if !strings.HasPrefix(b.String(), "latency: min ") || strings.Count(b.String(), "\n") < 3 {
		t.Errorf("write:\n%s", &b)
	}
}

func TestHistEmpty(t *testing.T) {
	var h Hist
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Octaves() != nil {
		t.Error("an empty histogram reports samples")
	}
	h.Add(-time.Second)
	if h.max != 0 || h.n != 1 {
		t.Errorf("negative sample: %+v", h)
	}
}
