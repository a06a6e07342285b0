package impair

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidConfig reports a configuration value out of range.
var ErrInvalidConfig = errors.New("impair: invalid configuration")

// Defaults that replace zero values in Impairments. Zero never means "none"
// for these fields, because none of them impairs anything on its own: they
// shape an impairment that is switched on elsewhere (Reorder, Rate, Delay).
const (
	// DefaultReorderGap is how many later packets overtake a held-back one.
	// Three is the smallest gap that makes TCP see three duplicate ACKs and
	// retransmit (RFC 5681 §3.2), which is what a reordering test wants to
	// provoke.
	DefaultReorderGap = 3

	// DefaultReorderTimeout bounds how long a held-back packet waits for
	// the packets that should overtake it, so the last packets of a burst
	// are not held forever.
	DefaultReorderTimeout = 10 * time.Millisecond

	// DefaultQueueLimit is the number of packets that may wait for their
	// delay or for rate tokens; netem's default limit is the same.
	DefaultQueueLimit = 1000

	// DefaultBurstTime sizes the default token bucket: Rate worth of this
	// much time, but never less than MinDefaultBurst bytes.
	DefaultBurstTime = 10 * time.Millisecond

	// MinDefaultBurst is the smallest default bucket, in bytes: one
	// 64 KiB GSO packet.
	MinDefaultBurst = 64 << 10
)

// Config configures New.
type Config struct {
	// Seed selects the pseudo-random sequence behind every decision. The
	// same Seed, Impairments and packet sequence give the same decisions
	// (which packets are lost, duplicated, corrupted where, held back,
	// jittered by how much). Queue-full drops and timeout releases depend
	// on the clock and are not replayable.
	//
	// Each direction draws from its own math/rand/v2 PCG generator seeded
	// with Seed and a per-direction stream constant, so traffic in one
	// direction never shifts the decisions in the other.
	Seed uint64

	// Outbound impairs packets the stack writes, before the inner link
	// sees them.
	Outbound Impairments

	// Inbound impairs packets the inner link delivers, before the stack
	// sees them.
	Inbound Impairments
}

// Impairments configures one direction. The zero value impairs nothing: the
// direction passes packets straight through at the cost of one atomic
// addition per batch.
//
// Each packet meets the impairments in the order the fields are listed:
// loss, duplication, corruption, reordering, then delay and rate limit. See
// pipe.go for the flow. A packet is what the link sees: over a GSO inner
// link one outbound packet can be a 64 KiB super-segment, lost or delayed
// whole (outbound corruption switches GSO off, see Corrupt).
type Impairments struct {
	// Loss is the probability in [0, 1] that a packet is dropped.
	Loss float64

	// Duplicate is the probability in [0, 1] that a packet that was not
	// lost is followed by a copy of itself. The copy shares the original's
	// memory (copy-on-write) and meets corruption, reordering, delay and
	// rate limit on its own.
	Duplicate float64

	// Corrupt is the probability in [0, 1] that a packet (or copy) has one
	// byte XORed with a random non-zero value. The byte is chosen uniformly
	// from the packet after its link-layer header: a real link's frame check
	// sequence drops frames with a damaged link header, which Loss already
	// models, and our links have no such check. Other holders of the packet
	// never see the change (the damaged chunk is copied first).
	//
	// One changed byte always changes the Internet checksum (RFC 1071) of
	// the bytes it covers, so the stack drops the packet, provided that a
	// checksum is verified after the damage. (A changed length field moves
	// the range the checksum covers; a shortened packet then passes with a
	// probability near 2^-16.) The endpoint arranges that on its side: with
	// Inbound.Corrupt > 0 it stops advertising CapabilityRXChecksumOffload
	// (so the stack verifies what it receives), and with Outbound.Corrupt > 0
	// it stops advertising CapabilityTXChecksumOffload and GSO (so the stack
	// writes complete checksums). An inner link that completes or rewrites
	// checksums itself (a TAP with NEEDS_CSUM) defeats outbound corruption.
	// Bytes not covered by any checksum, such as IPv6's traffic class, flow
	// label and hop limit, can change undetected; they do not carry data.
	Corrupt float64

	// Reorder is the probability in [0, 1] that a packet is held back
	// until ReorderGap later packets have passed it, or ReorderTimeout has
	// elapsed, whichever comes first.
	Reorder float64

	// ReorderGap is the number of later packets that overtake a held-back
	// packet. Default DefaultReorderGap.
	ReorderGap int

	// ReorderTimeout is the longest a held-back packet waits.
	// Default DefaultReorderTimeout.
	ReorderTimeout time.Duration

	// Delay is added to every packet's trip. Packets leave in the order
	// they entered the delay stage: jitter varies the delay but does not
	// reorder (Reorder does).
	Delay time.Duration

	// Jitter adds a uniformly random extra delay in [0, Jitter) per packet.
	Jitter time.Duration

	// Rate limits the direction to this many bits per second (counting
	// whole packets, headers included) with a token bucket of Burst bytes.
	// Zero means unlimited.
	Rate uint64

	// Burst is the token bucket's depth in bytes. A packet leaves as soon
	// as the bucket is not in debt, and takes its own size from it (which
	// may put it in debt): after a quiet period, Burst/size + 1 packets of
	// one size leave at once, and a packet larger than Burst is never
	// stuck. Default: DefaultBurstTime worth of Rate, at least
	// MinDefaultBurst.
	Burst int

	// QueueLimit is the number of packets that may wait for their delay or
	// for rate tokens at once; a packet that finds the queue full is dropped
	// and counted in DroppedQueueFull. Default DefaultQueueLimit.
	QueueLimit int
}

// PRNG streams for the two directions (see Config.Seed).
const (
	outboundStream uint64 = 0x6f7574626f756e64 // "outbound"
	inboundStream  uint64 = 0x696e626f756e6421 // "inbound!"
)

// IsZero reports whether im impairs nothing, so the direction is a pass-through.
func (im Impairments) IsZero() bool {
	return im == Impairments{}
}

// timed reports whether packets wait in the timed queue (delay or rate).
func (im Impairments) timed() bool {
	return im.Delay > 0 || im.Jitter > 0 || im.Rate > 0
}

// needsTimer reports whether the direction needs its timer goroutine.
func (im Impairments) needsTimer() bool {
	return im.timed() || im.Reorder > 0
}

// validate checks im and returns it with defaults filled in.
func (im Impairments) validate(dir string) (Impairments, error) {
	probs := []struct {
		name string
		p    float64
	}{
		{"Loss", im.Loss}, {"Duplicate", im.Duplicate},
		{"Corrupt", im.Corrupt}, {"Reorder", im.Reorder},
	}
	for _, f := range probs {
		// NaN fails both comparisons' complement, so test it explicitly.
		if math.IsNaN(f.p) || f.p < 0 || f.p > 1 {
			return im, fmt.Errorf("%s.%s = %v, want a probability in [0, 1]: %w", dir, f.name, f.p, ErrInvalidConfig)
		}
	}
	durs := []struct {
		name string
		d    time.Duration
	}{
		{"ReorderTimeout", im.ReorderTimeout}, {"Delay", im.Delay}, {"Jitter", im.Jitter},
	}
	for _, f := range durs {
		if f.d < 0 {
			return im, fmt.Errorf("%s.%s = %v, want >= 0: %w", dir, f.name, f.d, ErrInvalidConfig)
		}
	}
	ints := []struct {
		name string
		n    int
	}{
		{"ReorderGap", im.ReorderGap}, {"Burst", im.Burst}, {"QueueLimit", im.QueueLimit},
	}
	for _, f := range ints {
		if f.n < 0 {
			return im, fmt.Errorf("%s.%s = %d, want >= 0: %w", dir, f.name, f.n, ErrInvalidConfig)
		}
	}
	if im.IsZero() {
		return im, nil
	}
	if im.ReorderGap == 0 {
		im.ReorderGap = DefaultReorderGap
	}
	if im.ReorderTimeout == 0 {
		im.ReorderTimeout = DefaultReorderTimeout
	}
	if im.QueueLimit == 0 {
		im.QueueLimit = DefaultQueueLimit
	}
	if im.Rate > 0 && im.Burst == 0 {
		b := float64(im.Rate) / 8 * DefaultBurstTime.Seconds()
		im.Burst = MinDefaultBurst
		if b > MinDefaultBurst {
			im.Burst = int(min(b, math.MaxInt32))
		}
	}
	return im, nil
}
