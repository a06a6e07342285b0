package hist

import (
	"fmt"
	"io"
	"math/bits"
	"strings"
	"time"
)

// Hist is a log-linear histogram of durations: each power of two
// is cut into 16 buckets, so a quantile is within 1/16 (6%) of the true
// value at any scale, in constant memory however many samples it holds.
//
//	value v (ns)        bucket
//	0 .. 15             v (exact)
//	[2^e, 2^(e+1)), e≥4 (e-3)*16 + the 4 bits after v's leading one
type Hist struct {
	counts        [histBuckets]uint64
	n             uint64
	min, max, sum time.Duration
}

const (
	histSubBits = 4
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

func histBucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1
	sub := (v >> (e - histSubBits)) & (histSub - 1)
	return (e-histSubBits+1)*histSub + int(sub)
}

// histUpper is the largest value of bucket b.
func histUpper(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	e := b/histSub + histSubBits - 1
	sub := uint64(b % histSub)
	return (histSub+sub+1)<<(e-histSubBits) - 1
}

// Add records one sample (negative durations count as zero).
func (h *Hist) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histBucket(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Quantile returns the q-quantile (0 < q ≤ 1): the upper edge of the bucket
// that holds it, never above the largest sample.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = max(min(rank, h.n), 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(histUpper(b)), h.max)
		}
	}
	return h.max
}

func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Octave is one power-of-two range of the histogram, for printing.
type Octave struct {
	Lo, Hi time.Duration // [Lo, Hi)
	Count  uint64
}

// Octaves returns the non-empty power-of-two ranges between the smallest
// and the largest sample.
func (h *Hist) Octaves() []Octave {
	var out []Octave
	for b := 0; b < histBuckets; {
		lo := uint64(0)
		if b >= histSub {
			lo = histUpper(b-1) + 1
		}
		end := b + histSub
		if b < histSub {
			end = histSub
		}
		var c uint64
		for ; b < end; b++ {
			c += h.counts[b]
		}
		hi := histUpper(end-1) + 1
		out = append(out, Octave{Lo: time.Duration(lo), Hi: time.Duration(hi), Count: c})
	}
	first, last := -1, -1
	for i, o := range out {
		if o.Count > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	return out[first : last+1]
}

// Print prints the percentiles and a bar per Octave.
func (h *Hist) Print(w io.Writer) {
	fmt.Fprintf(w, "latency: min %v  p50 %v  p90 %v  p99 %v  max %v  mean %v\n",
		roundDur(h.min), roundDur(h.Quantile(0.50)), roundDur(h.Quantile(0.90)), roundDur(h.Quantile(0.99)), roundDur(h.max), roundDur(h.Mean()))
	oct := h.Octaves()
	var most uint64
	for _, o := range oct {
		most = max(most, o.Count)
	}
	for _, o := range oct {
		bar := 0
		if most > 0 {
			bar = int((o.Count*40 + most - 1) / most)
		}
		fmt.Fprintf(w, "  %9v - %-9v %-40s %d\n", roundDur(o.Lo), roundDur(o.Hi), strings.Repeat("#", bar), o.Count)
	}
}

// Min returns the smallest sample, or zero if there is none.
func (h *Hist) Min() time.Duration { return h.min }

// Max returns the largest sample, or zero if there is none.
func (h *Hist) Max() time.Duration { return h.max }

// Count returns the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// roundDur keeps three significant figures.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d.Round(10 * time.Nanosecond)
}
