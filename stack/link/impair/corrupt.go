package impair

import (
	"math/rand/v2"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// corrupt returns a clone of pkt with one byte after the link-layer header
// XORed with a random non-zero value, and true; or pkt itself and false when
// pkt has no byte after its link header to damage or a layout the function
// does not understand. It draws from rng exactly twice (offset, then XOR
// value) when it returns true and not at all when it returns false, so
// replays stay aligned.
//
// pkt is not modified and its references are untouched: the caller still
// owns its reference to pkt and owns the one reference to the clone.
//
// Isolation comes from gVisor's copy-on-write: Clone shares pkt's chunks and
// takes a reference on each, so every chunk the clone reaches is shared, and
// buffer.Buffer.PullUp (behind PacketHeader.Slice and PacketData.PullUp)
// replaces a shared chunk with a private copy before returning its memory.
// The byte is therefore changed in a copy that only the clone sees; whoever
// else holds pkt (the sender's retransmit queue, a duplicate) keeps the
// original bytes.
func corrupt(pkt *stack.PacketBuffer, rng *rand.Rand) (*stack.PacketBuffer, bool) {
	c := pkt.Clone()
	// Headers in the order they sit in memory (PacketBuffer's documented
	// layout). Slice() on the clone may copy a chunk; that is the point.
	hdrs := [...]stack.PacketHeader{c.VirtioNetHeader(), c.LinkHeader(), c.NetworkHeader(), c.TransportHeader()}
	var lens [len(hdrs)]int
	sum := 0
	for i, h := range hdrs {
		lens[i] = len(h.Slice())
		sum += lens[i]
	}
	// Every header byte must belong to one of the four headers, or offsets
	// below would point at the wrong byte (PacketData.Consume can move
	// bytes out of the data without a header; links do not do that).
	skip := lens[0] + lens[1]
	if sum != c.HeaderSize() || c.Size() <= skip {
		c.DecRef()
		return pkt, false
	}
	pos := skip + rng.IntN(c.Size()-skip)
	x := byte(1 + rng.IntN(255))
	off := 0
	for i, h := range hdrs {
		if pos < off+lens[i] {
			h.Slice()[pos-off] ^= x
			return c, true
		}
		off += lens[i]
	}
	// pos lies in the data: sum == HeaderSize, so c.Size() == sum +
	// Data().Size() and d < Data().Size(); the PullUp cannot fail.
	d := pos - off
	b, _ := c.Data().PullUp(d + 1)
	b[d] ^= x
	return c, true
}
