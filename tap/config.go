package tap

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"runtime"
)

// Errors returned by Open and OpenFD, wrapped with context; test with
// errors.Is.
var (
	// ErrNoDevice: /dev/net/tun is missing or its driver is not loaded.
	ErrNoDevice = errors.New("tap: /dev/net/tun is not available (load the driver with `modprobe tun`, or create the node with `mknod /dev/net/tun c 10 200`)")
	// ErrPermission: creating or configuring the device was refused;
	// TAP devices need CAP_NET_ADMIN (or a persistent device owned by the
	// caller).
	ErrPermission = errors.New("tap: permission denied: creating a TAP device needs CAP_NET_ADMIN")
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("tap: invalid configuration")
	// ErrUnsupported: TAP links need Linux.
	ErrUnsupported = errors.New("tap: TAP links need Linux")
	// ErrQueues: the existing device cannot take the queues asked for
	// (made without multi_queue, or its one queue in use), or the name
	// belongs to an interface that is not a TAP device. The message says
	// what to do.
	ErrQueues = errors.New("tap: the device cannot be attached as asked")
)

// OffloadMode says whether a link uses the virtio-net header and the
// kernel's checksum and segmentation offloads. The zero value is OffloadOn.
type OffloadMode uint8

const (
	// OffloadOn: IFF_VNET_HDR with a 12-byte header, TUNSETOFFLOAD with
	// CSUM, TSO4, TSO6 (and USO4, USO6 where the kernel has them), host
	// GSO on transmit and receive checksum offload. The default.
	OffloadOn OffloadMode = iota
	// OffloadOff: plain Ethernet frames, no virtio-net header; the kernel
	// segments and checksums everything and the stack verifies every
	// checksum itself. Slower by several times; for comparison and for
	// peers that cannot speak the header.
	OffloadOff
)

// String returns "on" or "off".
func (m OffloadMode) String() string {
	switch m {
	case OffloadOn:
		return "on"
	case OffloadOff:
		return "off"
	}
	return fmt.Sprintf("OffloadMode(%d)", uint8(m))
}

// Limits on Config values.
const (
	// DefaultMTU is the link's MTU when Config.MTU is 0.
	DefaultMTU = 1500
	// MinMTU is IPv4's minimum (RFC 791); IPv6 needs 1280 (RFC 8200 §5).
	MinMTU = 68
	// MaxMTU is the largest MTU a TAP device accepts: 65535 less the
	// Ethernet header.
	MaxMTU = 65535 - 14
	// MaxQueues is the kernel's limit on queues of one TAP device
	// (MAX_TAP_QUEUES).
	MaxQueues = 256
	// maxNameLen is IFNAMSIZ less the terminating NUL.
	maxNameLen = 15
	// GSOMaxSize is the largest packet (headers included) the stack may
	// hand the link for the kernel to segment: IPv4's total-length limit.
	GSOMaxSize = 1 << 16
)

// Config describes a TAP link. The zero value (apart from Name, which may
// also be empty) is a valid configuration: MTU 1500, offloads on, one queue
// per GOMAXPROCS, a random MAC.
type Config struct {
	// Name is the device's name. If no device has this name one is
	// created, non-persistent: it disappears when the link closes. Empty
	// lets the kernel choose ("tap%d"). At most 15 bytes.
	Name string

	// MTU is the IP MTU of both sides of the link; Open sets it on the
	// kernel side too. 0 means DefaultMTU; otherwise MinMTU..MaxMTU.
	MTU int

	// Offload selects the virtio-net header and offloads. The zero value
	// is OffloadOn.
	Offload OffloadMode

	// Queues is the number of TAP queues (file descriptors), each served
	// by its own reader goroutine; with more than one the kernel spreads
	// flows over them by hash. At most MaxQueues.
	//
	// 0 means as many as the device allows: on a new device (Open creates
	// it) or one made with multi_queue (`ip tuntap add … multi_queue`),
	// runtime.GOMAXPROCS(0); on a device made without it (`ip tuntap add
	// dev NAME mode tap`, the usual way), one. A device's multi-queue
	// setting is fixed when it is made, and the kernel refuses an attach
	// that does not match it, so Open detects it and matches it, even for
	// one queue. Link.Info says what it chose and why. An explicit count
	// a device cannot take (more than one on a device without
	// multi_queue) is an error wrapping ErrQueues that says what to do.
	Queues int

	// LinkAddress is the stack side's MAC address. Empty means a random
	// locally administered unicast address. Must be 6 bytes and unicast.
	LinkAddress net.HardwareAddr

	// HeadViewSize is the size of the first of the two views each read
	// lands in. Frames up to this size (less the virtio-net header) fill
	// only it, so small frames cost a small buffer; larger frames (GSO
	// super-frames) continue into a 64 KiB second view. 0 means the MTU
	// plus Ethernet and VLAN headers, rounded up to gVisor's chunk sizes
	// and at least minHeadView (512); at most 65536.
	HeadViewSize int

	// TxQueueLen is the device's transmit queue length (txqueuelen): the
	// frames the kernel holds for the link's readers before it drops
	// what it sends the stack. Senders in the kernel fill it up to the
	// windows the stack advertises whenever the readers fall behind, and
	// the kernel's default (1000 frames) is less than many connections'
	// windows add up to: the drops are the senders' retransmissions.
	// 0 means DefaultTxQueueLen on a device Open creates, and leaves an
	// existing device's as it is; a positive value is set on either.
	// At most MaxTxQueueLen.
	TxQueueLen int

	// IOURing makes every queue's reader read in batches, several reads
	// per io_uring_enter, instead of one readv per frame (see
	// Info.RxBatch). Off by default: measured on Linux 6.18, a read
	// through io_uring costs the CPU as much as a readv (the kernel's work
	// per frame, not the system call, dominates), so the simpler path is
	// the default. Where the kernel refuses io_uring (ENOSYS, EPERM,
	// seccomp) the link reads with readv and Info.RxBatch says why.
	IOURing bool
}

// Limits of Config.TxQueueLen.
const (
	// DefaultTxQueueLen is the transmit queue length of a device Open
	// creates, when Config.TxQueueLen is 0.
	DefaultTxQueueLen = 10000
	// MaxTxQueueLen bounds Config.TxQueueLen: every queue of the device
	// keeps a ring of that many slots.
	MaxTxQueueLen = 1 << 20
)

// minHeadView keeps every header the link parses (Ethernet, IP with options
// or extension headers, TCP with options) inside the first receive view.
const minHeadView = 512

// maxHeadView is gVisor's largest pooled chunk (buffer.MaxChunkSize).
const maxHeadView = 1 << 16

// resolved is a validated Config with defaults filled in.
type resolved struct {
	name     string
	mtu      int
	vnet     bool
	queues   int
	auto     bool // queues is the default (Config.Queues 0), not asked for
	mac      net.HardwareAddr
	headView int
	txQLen   int  // Config.TxQueueLen; 0: the default rule (see there)
	ring     bool // Config.IOURing
}

// resolve validates cfg and fills in defaults. nqueues, when positive,
// overrides cfg.Queues (OpenFD: one queue per descriptor).
func (cfg *Config) resolve(nqueues int) (resolved, error) {
	r := resolved{name: cfg.Name, mtu: cfg.MTU, queues: cfg.Queues, headView: cfg.HeadViewSize, txQLen: cfg.TxQueueLen, ring: cfg.IOURing}
	if len(r.name) > maxNameLen {
		return r, fmt.Errorf("%w: name %q is %d bytes, at most %d", ErrInvalidConfig, r.name, len(r.name), maxNameLen)
	}
	for i := 0; i < len(r.name); i++ {
		if c := r.name[i]; c == '/' || c == 0 || c == ' ' || c == ':' {
			return r, fmt.Errorf("%w: name %q contains %q", ErrInvalidConfig, r.name, c)
		}
	}
	if r.mtu == 0 {
		r.mtu = DefaultMTU
	}
	if r.mtu < MinMTU || r.mtu > MaxMTU {
		return r, fmt.Errorf("%w: MTU %d outside %d..%d", ErrInvalidConfig, cfg.MTU, MinMTU, MaxMTU)
	}
	switch cfg.Offload {
	case OffloadOn:
		r.vnet = true
	case OffloadOff:
	default:
		return r, fmt.Errorf("%w: %v", ErrInvalidConfig, cfg.Offload)
	}
	if nqueues > 0 {
		r.queues = nqueues
	}
	if r.queues == 0 {
		r.queues = min(runtime.GOMAXPROCS(0), MaxQueues)
		r.auto = true
	}
	if r.queues < 1 || r.queues > MaxQueues {
		return r, fmt.Errorf("%w: %d queues, want 1..%d", ErrInvalidConfig, cfg.Queues, MaxQueues)
	}
	switch {
	case len(cfg.LinkAddress) == 0:
		r.mac = make(net.HardwareAddr, 6)
		if _, err := rand.Read(r.mac); err != nil {
			return r, fmt.Errorf("tap: random MAC: %w", err)
		}
		r.mac[0] = r.mac[0]&^0x01 | 0x02 // unicast, locally administered
	case len(cfg.LinkAddress) != 6:
		return r, fmt.Errorf("%w: link address %v is not 6 bytes", ErrInvalidConfig, cfg.LinkAddress)
	case cfg.LinkAddress[0]&0x01 != 0:
		return r, fmt.Errorf("%w: link address %v is multicast", ErrInvalidConfig, cfg.LinkAddress)
	default:
		r.mac = append(net.HardwareAddr(nil), cfg.LinkAddress...)
	}
	if r.headView == 0 {
		r.headView = r.mtu + 14 + 4 // Ethernet + one VLAN tag
		r.headView = max(r.headView, minHeadView)
		// Round up to gVisor's chunk size classes (powers of two from
		// 64 bytes), so no allocated byte goes unused.
		c := 64
		for c < r.headView {
			c <<= 1
		}
		r.headView = min(c, maxHeadView)
	}
	if r.txQLen < 0 || r.txQLen > MaxTxQueueLen {
		return r, fmt.Errorf("%w: TxQueueLen %d outside 0..%d", ErrInvalidConfig, cfg.TxQueueLen, MaxTxQueueLen)
	}
	if r.headView < minHeadView || r.headView > maxHeadView {
		return r, fmt.Errorf("%w: HeadViewSize %d outside %d..%d", ErrInvalidConfig, cfg.HeadViewSize, minHeadView, maxHeadView)
	}
	return r, nil
}
