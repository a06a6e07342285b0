package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout of the shared segment (one reservation in region 0 of the pool,
// starting at the handshake's Base offset). All integers little-endian.
//
//	offset                    size          field
//	0                         4             magic "ZCRG" (offMagic)
//	4                         4             version (offVersion)
//	64                        4             stack waiting: 1 while the stack side sleeps (offStackWait)
//	128                       4             peer waiting: 1 while the peer side sleeps (offPeerWait)
//	ringsOff + k*stride       stride        ring k, k = ringTXAvail, ringTXUsed, ringRXAvail, ringRXUsed
//	  +0                      4               head, written only by the ring's producer (ringHeadOff)
//	  +64                     4               tail, written only by the ring's consumer (ringTailOff)
//	  +128                    slots*16        descriptors (ringDescOff)
//	framesOff                 2*n*frameSize frames 0..n-1 (stack side's) and n..2n-1 (peer's)
//
// Descriptor (descSize bytes):
//
//	+0  8  offset of the data from the segment start (descOffOff)
//	+8  4  length in bytes (descLenOff)
//	+12 4  flags, must be 0 (descFlagsOff)
const (
	magic   = 0x4752435a // "ZCRG"
	Version = 1          // layout and handshake version

	offMagic     = 0
	offVersion   = 4
	offStackWait = 64
	offPeerWait  = 128
	ringsOff     = 256

	ringHeadOff = 0
	ringTailOff = 64
	ringDescOff = 128

	descSize     = 16
	descOffOff   = 0
	descLenOff   = 8
	descFlagsOff = 12

	ringTXAvail = 0 // stack → peer: filled stack frames
	ringTXUsed  = 1 // peer → stack: stack frames given back
	ringRXAvail = 2 // peer → stack: filled peer frames
	ringRXUsed  = 3 // stack → peer: peer frames given back
	numRings    = 4
)

// layout is the geometry both sides agree on in the handshake.
type layout struct {
	slots     uint32 // descriptors per ring, a power of two
	frames    uint32 // frames per side
	frameSize uint32 // bytes per frame
}

func (l layout) stride() int       { return align(ringDescOff+int(l.slots)*descSize, 64) }
func (l layout) ringOff(k int) int { return ringsOff + k*l.stride() }
func (l layout) framesOff() int    { return align(ringsOff+numRings*l.stride(), 4096) }
func (l layout) size() int         { return l.framesOff() + 2*int(l.frames)*int(l.frameSize) }
func (l layout) frameOff(i uint32) int {
	return l.framesOff() + int(i)*int(l.frameSize)
}

func align(n, a int) int { return (n + a - 1) &^ (a - 1) }

func (l layout) check() error {
	switch {
	case l.slots < 2 || l.slots > 1<<16 || l.slots&(l.slots-1) != 0:
		return fmt.Errorf("%w: ring slots %d, want a power of two in [2, 65536]", ErrInvalidConfig, l.slots)
	case l.frames < 1 || l.frames > l.slots:
		return fmt.Errorf("%w: frames per side %d, want [1, %d]", ErrInvalidConfig, l.frames, l.slots)
	case l.frameSize < 128 || l.frameSize > 1<<17 || l.frameSize%64 != 0:
		return fmt.Errorf("%w: frame size %d, want a multiple of 64 in [128, 131072]", ErrInvalidConfig, l.frameSize)
	}
	return nil
}

// desc is a decoded descriptor.
type desc struct {
	off   uint64
	len   uint32
	flags uint32
}

func putDesc(b []byte, d desc) {
	binary.LittleEndian.PutUint64(b[descOffOff:], d.off)
	binary.LittleEndian.PutUint32(b[descLenOff:], d.len)
	binary.LittleEndian.PutUint32(b[descFlagsOff:], d.flags)
}

func getDesc(b []byte) desc {
	return desc{
		off:   binary.LittleEndian.Uint64(b[descOffOff:]),
		len:   binary.LittleEndian.Uint32(b[descLenOff:]),
		flags: binary.LittleEndian.Uint32(b[descFlagsOff:]),
	}
}

// Reasons a descriptor is rejected; counted in Stats.
var (
	errBadOffset = errors.New("ring: descriptor offset outside the sender's frames")
	errBadLength = errors.New("ring: descriptor length over the frame")
	errBadFlags  = errors.New("ring: descriptor flags not zero")
	errNotOwned  = errors.New("ring: descriptor names a frame the sender does not own")
)

// validate checks an untrusted descriptor d against the layout: the data
// must lie inside one frame of the sender's partition [lo, lo+l.frames)
// (errBadOffset outside all frames, errNotOwned in the other partition). It
// returns the frame index. Lending state is the caller's to check.
func (l layout) validate(d desc, lo uint32) (frame uint32, err error) {
	if d.flags != 0 {
		return 0, errBadFlags
	}
	base := uint64(l.framesOff())
	if d.off < base {
		return 0, errBadOffset
	}
	rel := d.off - base
	idx := rel / uint64(l.frameSize)
	if idx >= 2*uint64(l.frames) {
		return 0, errBadOffset
	}
	if idx < uint64(lo) || idx >= uint64(lo)+uint64(l.frames) {
		return 0, errNotOwned // the other side's frame
	}
	in := rel % uint64(l.frameSize)
	if d.len == 0 || in+uint64(d.len) > uint64(l.frameSize) {
		return 0, errBadLength
	}
	return uint32(idx), nil
}
