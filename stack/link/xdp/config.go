package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Errors.
var (
	// ErrUnsupported: the kernel has no AF_XDP sockets or cannot load or
	// attach the XDP program (no CONFIG_XDP_SOCKETS, no BPF, no privilege).
	ErrUnsupported = errors.New("xdp: AF_XDP or BPF unavailable")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("xdp: invalid config")
)

// AttachMode selects where the XDP program runs.
type AttachMode int

const (
	// AttachAuto tries the driver's native hook and falls back to generic.
	AttachAuto AttachMode = iota
	// AttachNative requires the driver's native XDP hook.
	AttachNative
	// AttachGeneric uses the kernel's generic (skb) hook, which every
	// driver has, at the cost of an skb per frame.
	AttachGeneric
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachNative:
		return "native"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// BindMode selects how the socket shares frames with the driver.
type BindMode int

const (
	// BindAuto lets the kernel choose: zero-copy where the driver supports
	// it on the queue, copy otherwise.
	BindAuto BindMode = iota
	// BindZeroCopy requires XDP_ZEROCOPY: the NIC writes into the UMEM.
	BindZeroCopy
	// BindCopy requires XDP_COPY: the kernel copies each frame into the UMEM.
	BindCopy
)

func (m BindMode) String() string {
	switch m {
	case BindAuto:
		return "auto"
	case BindZeroCopy:
		return "zerocopy"
	case BindCopy:
		return "copy"
	}
	return fmt.Sprintf("BindMode(%d)", int(m))
}

// Config describes a link. Interface is required; every other zero value
// is a usable default.
type Config struct {
	// Interface is the network interface to attach to.
	Interface string
	// Queue is the receive queue the socket serves; frames for the stack
	// that arrive on another queue are passed to the kernel, so an
	// interface with several queues wants its traffic steered (ethtool -N)
	// or a single combined queue (ethtool -L).
	Queue int
	// Addresses are the stack's addresses: the program redirects frames
	// for them (and ARP and neighbour solicitations for them) and passes
	// everything else to the kernel. Link.AllowAddress adds more.
	Addresses []netip.Addr
	// Frames is the number of UMEM frames, half for receive and half for
	// transmit; a power of two, default 4096.
	Frames int
	// FrameSize is the size of one frame, 2048 or 4096 (the default).
	FrameSize int
	// Attach and Bind select the program's hook and the socket's mode.
	Attach AttachMode
	Bind   BindMode
	// BusyPoll is how long the receive loop polls an empty RX ring before
	// it sleeps in poll(2); 0 means DefaultBusyPoll, negative never.
	BusyPoll time.Duration
	// LinkAddress is the stack's MAC address; empty means the interface's
	// own, which the frames the program redirects are addressed to.
	LinkAddress tcpip.LinkAddress
	// MTU is the stack's MTU; 0 means the interface's. It is capped so a
	// frame fits in one UMEM frame.
	MTU uint32
	// PartialChecksums completes TCP and UDP checksums that a peer on this
	// host left partial: a veth peer with transmit checksum offload on (its
	// default). Off by default; see csum.go for what it costs. Such a peer
	// also sends GSO super-frames unless the program runs in native mode
	// (attaching a native program to a veth turns its peer's GSO off); in
	// generic mode they exceed a UMEM frame and the kernel drops them.
	PartialChecksums bool
}

// DefaultBusyPoll is Config.BusyPoll's default.
const DefaultBusyPoll = 50 * time.Microsecond

// Defaults.
const (
	DefaultFrames    = 4096
	DefaultFrameSize = 4096
)

// frameRoom is the most frame bytes one UMEM frame takes: the kernel puts
// received data XDP_PACKET_HEADROOM (256) bytes into a frame.
func frameRoom(frameSize int) int { return frameSize - 256 }

func (c Config) normalize() (Config, error) {
	if c.Frames == 0 {
		c.Frames = DefaultFrames
	}
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.BusyPoll == 0 {
		c.BusyPoll = DefaultBusyPoll
	}
	switch {
	case c.Interface == "":
		return c, fmt.Errorf("%w: no interface", ErrInvalidConfig)
	case c.Queue < 0 || c.Queue >= maxQueues:
		return c, fmt.Errorf("%w: queue %d not in [0, %d)", ErrInvalidConfig, c.Queue, maxQueues)
	case c.Frames < 16 || c.Frames > 1<<20 || c.Frames&(c.Frames-1) != 0:
		return c, fmt.Errorf("%w: frames %d: want a power of two in [16, 2^20]", ErrInvalidConfig, c.Frames)
	case c.FrameSize != 2048 && c.FrameSize != 4096:
		return c, fmt.Errorf("%w: frame size %d: want 2048 or 4096", ErrInvalidConfig, c.FrameSize)
	case c.Attach < AttachAuto || c.Attach > AttachGeneric:
		return c, fmt.Errorf("%w: attach mode %d", ErrInvalidConfig, int(c.Attach))
	case c.Bind < BindAuto || c.Bind > BindCopy:
		return c, fmt.Errorf("%w: bind mode %d", ErrInvalidConfig, int(c.Bind))
	case len(c.Addresses) > maxAddrs:
		return c, fmt.Errorf("%w: %d addresses, at most %d", ErrInvalidConfig, len(c.Addresses), maxAddrs)
	}
	for _, a := range c.Addresses {
		if !a.IsValid() {
			return c, fmt.Errorf("%w: invalid address", ErrInvalidConfig)
		}
	}
	return c, nil
}

// Info says how the link attached.
type Info struct {
	Interface string
	Ifindex   int
	Queue     int
	// Native reports the program runs in the driver's hook (else generic).
	Native bool
	// ZeroCopy reports the socket is bound XDP_ZEROCOPY (else XDP_COPY).
	ZeroCopy bool
	// Frames and FrameSize describe the UMEM; Pinned whether it is mlocked.
	Frames, FrameSize int
	Pinned            bool
}

// AttachString is "native" or "generic".
func (i Info) AttachString() string {
	if i.Native {
		return "native"
	}
	return "generic"
}

// BindString is "zerocopy" or "copy".
func (i Info) BindString() string {
	if i.ZeroCopy {
		return "zerocopy"
	}
	return "copy"
}

// KernelStats are the kernel's counters for the socket (XDP_STATISTICS).
type KernelStats struct {
	RxDropped       uint64 // frames dropped for other reasons (e.g. too big for a frame)
	RxInvalidDescs  uint64 // fill ring entries the kernel found invalid
	TxInvalidDescs  uint64 // TX descriptors the kernel found invalid
	RxRingFull      uint64 // frames dropped because the RX ring was full
	RxFillRingEmpty uint64 // frames dropped because the fill ring was empty
	TxRingEmpty     uint64 // times the kernel found the TX ring empty
}
