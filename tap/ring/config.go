package ring

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Config configures a Link (stack side) or, for Dial, states what the peer
// expects; zero fields take the stack side's values. The zero value is usable.
type Config struct {
	// MTU is the largest IP packet. Default 1500. Frame size is MTU+14
	// rounded up to 64 unless FrameSize says more.
	MTU uint32
	// FrameSize is the bytes per frame; default MTU+14 rounded up to 64.
	FrameSize uint32
	// Frames is the number of frames each side owns. Default 1024.
	Frames uint32
	// Slots is the descriptors per ring, a power of two ≥ Frames. Default:
	// Frames rounded up to a power of two.
	Slots uint32
	// LinkAddress is this side's MAC; default random, locally administered.
	// A peer that restarts with the same address spares the stack side a
	// stale neighbour entry.
	LinkAddress tcpip.LinkAddress
	// OnPeer, on the stack side, is called when a peer connects (err nil)
	// and when it goes (err wraps ErrPeerGone, or the handshake error for a
	// refused peer). It runs on the link's accept goroutine.
	OnPeer func(up bool, err error)
}

// Defaults.
const (
	DefaultMTU    = 1500
	DefaultFrames = 1024
	maxMTU        = 0xffff - header.EthernetMinimumSize
)

func (c Config) layout() (layout, uint32, error) {
	mtu := c.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < header.IPv4MinimumProcessableDatagramSize || mtu > maxMTU {
		return layout{}, 0, fmt.Errorf("%w: MTU %d", ErrInvalidConfig, mtu)
	}
	l := layout{frames: c.Frames, frameSize: c.FrameSize, slots: c.Slots}
	if c.LinkAddress != "" && !header.IsValidUnicastEthernetAddress(c.LinkAddress) {
		return layout{}, 0, fmt.Errorf("%w: %q is not a unicast Ethernet address", ErrInvalidConfig, c.LinkAddress)
	}
	if l.frames == 0 {
		l.frames = DefaultFrames
	}
	if l.frameSize == 0 {
		l.frameSize = uint32(align(int(mtu)+header.EthernetMinimumSize, 64))
	}
	if l.frameSize < mtu+header.EthernetMinimumSize {
		return layout{}, 0, fmt.Errorf("%w: frame size %d below MTU %d + 14", ErrInvalidConfig, l.frameSize, mtu)
	}
	if l.slots == 0 {
		l.slots = 2
		for l.slots < l.frames {
			l.slots <<= 1
		}
	}
	return l, mtu, l.check()
}
