package ring

import (
	"fmt"
	"log/slog"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/dmapool"
)

// Config configures a Link (stack side) or, for Dial, states what the peer
// expects; zero fields take the stack side's values. The zero value is usable.
type Config struct {
	// MTU is the largest IP packet. Default 1500. Frame size is MTU+14
	// rounded up to 64 unless FrameSize says more.
	MTU uint32
	// FrameSize is the bytes per frame; default MTU+14 rounded up to 64,
	// or GSOFrameSize with GSO.
	FrameSize uint32
	// Frames is the number of frames each side owns. Default 1024, or
	// DefaultGSOFrames with GSO.
	Frames uint32
	// GSO, on the stack side, lets one frame carry a TCP segment of up to
	// 64 KiB each way, as TSO super-frames cross a TAP device: both stacks
	// are told the link segments (host GSO), and the sending link completes
	// the TCP checksum while it writes the frame; the receiving stack takes
	// the large segment whole. Bulk TCP then costs a descriptor per 64 KiB,
	// not per MSS. Frames are GSOFrameSize bytes (at least). The peer
	// learns it in the handshake; on Dial, true refuses a stack side
	// without it, false accepts either.
	GSO bool
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
	// Pin and Logger, on the stack side, are the shared segments'
	// dmapool.Config.Pin (default dmapool.PinPrefer) and Logger (default
	// slog.Default()): a program that runs its own pool unpinned, or logs
	// through its own handler, says so for the ring's memory too.
	Pin    dmapool.PinMode
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMTU       = 1500
	DefaultFrames    = 1024
	DefaultGSOFrames = 256     // 16 MiB of frames per side
	GSOFrameSize     = 1 << 16 // gVisor's largest pooled chunk: a received frame is copied into one
	maxMTU           = 0xffff - header.EthernetMinimumSize
	// gsoMaxSize is the largest packet the stacks may hand the link with
	// GSO: one that fits a GSOFrameSize frame with its Ethernet header.
	gsoMaxSize = GSOFrameSize - header.EthernetMinimumSize
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
		if c.GSO {
			l.frames = DefaultGSOFrames
		}
	}
	if l.frameSize == 0 {
		l.frameSize = uint32(align(int(mtu)+header.EthernetMinimumSize, 64))
		if c.GSO {
			l.frameSize = max(l.frameSize, GSOFrameSize)
		}
	}
	if c.GSO && l.frameSize < GSOFrameSize {
		return layout{}, 0, fmt.Errorf("%w: frame size %d below %d, which GSO needs", ErrInvalidConfig, l.frameSize, GSOFrameSize)
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
