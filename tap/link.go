package tap

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// Compile-time checks.
var (
	_ stack.LinkEndpoint = (*Link)(nil)
	_ stack.GSOEndpoint  = (*Link)(nil)
	_ link.PayloadHooker = (*Link)(nil)
	_ link.Admitter      = (*Link)(nil)
	_ link.Counted       = (*Link)(nil)
)

// Link is a stack.LinkEndpoint over the queues of a TAP device (or over any
// descriptors that carry one Ethernet frame per read and write; see OpenFD).
//
// Receive runs in one goroutine per queue, started by the first Attach with
// a dispatcher and stopped by Attach(nil) or Close. Transmit runs on the
// caller's goroutine, except a bare TCP ACK held back for a reply
// (tx_ackhold.go), which a timer sends if none comes. All methods are safe
// for concurrent use.
type Link struct {
	// Immutable after open.
	name     string
	vnet     bool     // frames carry a virtio-net header; host GSO; RX csum offload
	offloads Offloads // what TUNSETOFFLOAD accepted; 0 for OpenFD
	headView int      // size of the first receive view
	tailView bool     // reads continue into a 64 KiB second view
	// copyBreak is the largest frame copied out of the head view rather
	// than delivered in it (rx.go); copyBreak, or 0 in benchmarks of the
	// path without it.
	copyBreak int
	// ackHold turns on the bare-ACK hold (tx_ackhold.go); off only in
	// benchmarks of the path without it.
	ackHold bool
	// ackHoldFor is how long a bare ACK may be held: ackHoldFor, or longer
	// in tests that must not race the timer.
	ackHoldFor time.Duration
	queues     []*queue
	info       Info   // how Open attached; see Info
	rxBatch    string // how the readers read; Info.RxBatch

	mtu      atomic.Uint32
	mac      atomic.Pointer[tcpip.LinkAddress]
	hook     link.HookSlot
	adm      admission // budget for payload-less TCP at listeners (admit.go)
	dispatch atomic.Pointer[dispatcherBox]
	// stopping asks the readers to return; set when they are stopped,
	// cleared before they are started.
	stopping atomic.Bool
	// readErr is the first error that ended a reader.
	readErr atomic.Pointer[error]

	mu sync.Mutex
	// +checklocks:mu
	running bool // reader goroutines started and not yet asked to stop
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	onClose func()
	// wg counts running reader goroutines; they are started with mu held.
	wg sync.WaitGroup
}

// dispatcherBox lets an interface value live behind an atomic.Pointer.
type dispatcherBox struct{ d stack.NetworkDispatcher }

// Open creates (or attaches to) the TAP device cfg.Name with cfg.Queues
// queues and returns a link over it. The calling thread's network namespace
// is the device's: to make it in another namespace, call Open on a thread
// switched into it (the descriptors work from any thread afterwards). The
// device is left down and unaddressed on the kernel side (`ip link set NAME
// up`, `ip addr add … dev NAME`); its MTU is set to cfg.MTU.
//
// With cfg.Queues 0 it attaches as many queues as the device allows, and
// matches an existing device's multi-queue setting (see Config.Queues);
// Info says what it chose.
//
// Errors wrap ErrNoDevice, ErrPermission, ErrInvalidConfig, ErrQueues (an
// existing device that cannot be attached as asked; the message says what
// to do) or, on systems other than Linux, ErrUnsupported.
func Open(cfg Config) (*Link, error) {
	r, err := cfg.resolve(0)
	if err != nil {
		return nil, err
	}
	dev, err := openDevice(r)
	if err != nil {
		return nil, err
	}
	r.name = dev.info.Name
	l, err := newLink(r, dev.fds, dev.info.Offloads)
	if err != nil {
		for _, fd := range dev.fds {
			unix.Close(fd)
		}
		return nil, err
	}
	l.info = dev.info
	l.info.RxBatch = l.rxBatch
	return l, nil
}

// OpenFD returns a link over descriptors the caller has already set up, one
// queue per descriptor, and takes ownership of them: Close closes them, and
// so does a failed OpenFD. Each read of a descriptor must yield one frame and
// each write send one, as a TAP queue (or a SOCK_SEQPACKET socket) does. With
// cfg.Offload on (the default), the frames must carry a 12-byte little-endian
// virtio-net header in both directions (IFF_VNET_HDR, TUNSETVNETHDRSZ 12,
// TUNSETVNETLE). cfg.Name is only reported; cfg.Queues is ignored.
func OpenFD(cfg Config, fds ...int) (*Link, error) {
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if len(fds) == 0 {
		return nil, fmt.Errorf("%w: OpenFD needs at least one descriptor", ErrInvalidConfig)
	}
	r, err := cfg.resolve(len(fds))
	if err != nil {
		closeAll()
		return nil, err
	}
	l, err := newLink(r, fds, 0)
	if err != nil {
		closeAll()
		return nil, err
	}
	l.info = Info{Name: r.name, Queues: len(fds), RxBatch: l.rxBatch}
	return l, nil
}

// newLink wraps fds (owned by the caller until it succeeds) in pollable
// files and builds the link.
func newLink(r resolved, fds []int, offloads Offloads) (*Link, error) {
	if err := checkPlatform(); err != nil {
		return nil, err
	}
	l := &Link{
		name:     r.name,
		vnet:     r.vnet,
		offloads: offloads,
		headView: r.headView,
		// Without offloads a frame is at most MTU + Ethernet + VLAN;
		// with them a super-frame reaches 64 KiB plus headers.
		tailView:   r.vnet || r.headView < r.mtu+14+4,
		copyBreak:  copyBreak,
		ackHold:    true,
		ackHoldFor: ackHoldFor,
	}
	l.mtu.Store(uint32(r.mtu))
	mac := tcpip.LinkAddress(r.mac)
	l.mac.Store(&mac)
	for i, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("tap: queue %d: set non-blocking: %w", i, err)
		}
	}
	for i, fd := range fds {
		// os.NewFile registers a non-blocking descriptor with the
		// runtime's poller, so a reader waiting for frames parks its
		// goroutine rather than a thread, and deadlines can wake it.
		f := os.NewFile(uintptr(fd), fmt.Sprintf("tap:%s:%d", r.name, i))
		rc, err := f.SyscallConn()
		if err != nil {
			// Not reachable for an *os.File; keep the descriptors
			// owned by the caller's cleanup.
			return nil, fmt.Errorf("tap: queue %d: %w", i, err)
		}
		q := &queue{link: l, idx: i, file: f, rc: rc}
		q.readFn = q.readBatch
		l.queues = append(l.queues, q)
	}
	l.setupRings(r.ring)
	return l, nil
}

// setupRings gives every queue an io_uring for batched reads
// (rx_uring_linux.go) when ring (Config.IOURing) asks for them and the
// kernel allows it; otherwise all queues read with readv. Info.RxBatch says
// which and why.
func (l *Link) setupRings(ring bool) {
	if !ring {
		l.rxBatch = "readv"
		return
	}
	for _, q := range l.queues {
		rr, err := newRxRingFn()
		if err != nil {
			for _, q := range l.queues {
				q.rxr.close()
				q.rxr = nil
				q.readFn = q.readBatch
			}
			l.rxBatch = fmt.Sprintf("readv (io_uring unavailable: %v)", err)
			return
		}
		q.rxr = rr
		q.readFn = q.readRing
	}
	l.rxBatch = fmt.Sprintf("io_uring (up to %d reads per system call)", rxBatchMax)
}

// Name returns the device's name.
func (l *Link) Name() string { return l.name }

// Info says how the link attached to its device: the queues, whether with
// IFF_MULTI_QUEUE, whether Open created the device, and why, when the
// device rather than Config decided.
func (l *Link) Info() Info { return l.info }

// NumQueues returns the number of queues (descriptors) the link serves.
func (l *Link) NumQueues() int { return len(l.queues) }

// Offloads returns the offloads TUNSETOFFLOAD accepted: OffloadCsum,
// OffloadTSO4 and OffloadTSO6, plus OffloadUSO4 and OffloadUSO6 where the
// kernel has them; 0 with OffloadOff and for links made by OpenFD.
func (l *Link) Offloads() Offloads { return l.offloads }

// VnetHeader reports whether frames carry the virtio-net header (offloads
// on).
func (l *Link) VnetHeader() bool { return l.vnet }

// Err returns the first error that ended a queue's reader (a failed read,
// for example after the device was deleted), or nil. A reader that was
// stopped by Attach(nil) or Close reports nothing.
func (l *Link) Err() error {
	if p := l.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the link's counters, summed over its queues.
func (l *Link) Stats() Stats {
	var s Stats
	for _, q := range l.queues {
		q.c.addTo(&s)
	}
	d := l.adm.Drops()
	s.RxDropFloodSYN, s.RxDropFloodCtl, s.RxDropStale = d.SYN, d.Ctl, d.Stale
	return s
}

// SetPayloadHook installs fn (nil removes it). The readers call fn for each
// received frame that the header split cut (so TCP and UDP frames that carry
// data), after the split and before delivery, while the link still owns the
// view (see PayloadHook). A frame whose payload spans both receive views
// yields two calls, and a USO super-frame one call per datagram view. fn
// runs on the reader goroutines, concurrently when there are several queues.
func (l *Link) SetPayloadHook(fn link.PayloadHook) {
	l.hook.Set(fn)
}

// MTU implements stack.LinkEndpoint.MTU.
func (l *Link) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU. It changes what the stack
// is told, not the kernel side of the device.
func (l *Link) SetMTU(mtu uint32) { l.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength: the
// Ethernet header. The virtio-net header travels in an iovec of its own.
func (l *Link) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (l *Link) LinkAddress() tcpip.LinkAddress { return *l.mac.Load() }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (l *Link) SetLinkAddress(addr tcpip.LinkAddress) { l.mac.Store(&addr) }

// HardwareAddr returns the stack side's MAC address.
func (l *Link) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(l.LinkAddress()) }

// Capabilities implements stack.LinkEndpoint.Capabilities: link-address
// resolution (ARP, NDP), and with offloads receive checksum offload, which
// the link makes true by verifying in software every frame whose
// virtio-net header vouches for nothing, the IPv4 header checksum of every
// frame, and fragmented datagrams whole (see the package doc). Transmit checksum offload is never
// advertised: the stack would then leave UDP, ICMP and RST packets without
// checksums, which the kernel does not fill in.
func (l *Link) Capabilities() stack.LinkEndpointCapabilities {
	caps := stack.CapabilityResolutionRequired
	if l.vnet {
		caps |= stack.CapabilityRXChecksumOffload
	}
	return caps
}

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize: GSOMaxSize with
// offloads, 0 without.
func (l *Link) GSOMaxSize() uint32 {
	if l.vnet {
		return GSOMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: host GSO (the
// kernel segments TCP super-frames and completes their checksums) with
// offloads, none without.
func (l *Link) SupportedGSO() stack.SupportedGSO {
	if l.vnet {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (l *Link) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.AddHeader.
func (l *Link) AddHeader(pkt *stack.PacketBuffer) { link.AddEthernetHeader(pkt, l.LinkAddress()) }

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*Link) ParseHeader(pkt *stack.PacketBuffer) bool { return link.ParseEthernetHeader(pkt) }

// Attach implements stack.LinkEndpoint.Attach. A dispatcher starts the
// readers (after any earlier ones have returned); nil stops delivery at once
// and asks the readers to return, without waiting for them (Wait does).
//
// Not waiting matters: the stack calls Attach(nil) with its own lock held,
// and a reader inside DeliverNetworkPacket may need that lock (route
// look-ups). Shut down by closing the link (or removing its NIC) before
// Stack.Wait, which waits for link endpoints with the stack's lock held.
func (l *Link) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d == nil {
		l.dispatch.Store(nil)
		l.signalStopLocked()
		return
	}
	l.dispatch.Store(&dispatcherBox{d})
	if l.closed || l.running {
		return
	}
	// Readers of an earlier attachment were told to stop; each queue's
	// reader state must have one user at a time.
	l.wg.Wait()
	l.running = true
	l.stopping.Store(false)
	for _, q := range l.queues {
		// Clear the deadline an earlier stop set.
		_ = q.file.SetReadDeadline(time.Time{})
		l.wg.Add(1)
		go q.run()
	}
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (l *Link) IsAttached() bool { return l.dispatch.Load() != nil }

// Wait implements stack.LinkEndpoint.Wait: it waits for the reader
// goroutines to return, which they do after Attach(nil) or Close.
func (l *Link) Wait() { l.wg.Wait() }

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction. The
// stack sets an action that removes the NIC; Close runs it first.
func (l *Link) SetOnCloseAction(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onClose = fn
}

// Close implements stack.LinkEndpoint.Close. It runs the on-close action
// (removing the NIC from its stack), stops the readers, waits for them, and
// closes the descriptors; a non-persistent TAP device then disappears. Later
// writes fail with tcpip.ErrClosedForSend. Close is idempotent.
func (l *Link) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	onClose := l.onClose
	l.onClose = nil
	l.mu.Unlock()

	// The action calls back into Attach(nil) and Close (which returns at
	// once), so it runs without l.mu held.
	if onClose != nil {
		onClose()
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.dispatch.Store(nil)
	l.signalStopLocked()
	l.wg.Wait()
	for _, q := range l.queues {
		q.dropHeldAck()
		q.rxr.close()
		q.file.Close()
	}
}

// signalStopLocked asks the reader goroutines to return and wakes those
// parked in the poller with a past read deadline. Readers check the flag
// before every frame, so they return within one frame's delivery.
//
// +checklocks:l.mu
func (l *Link) signalStopLocked() {
	if !l.running {
		return
	}
	l.running = false
	l.stopping.Store(true)
	for _, q := range l.queues {
		_ = q.file.SetReadDeadline(time.Unix(1, 0))
	}
}

// queue is one descriptor of the device with its reader state.
type queue struct {
	link *Link
	idx  int
	file *os.File // owns the descriptor
	rc   syscall.RawConn
	c    counters

	// Reader state, used only by the queue's reader goroutine.
	readFn func(fd uintptr) bool // q.readRing or q.readBatch, bound once
	rx     rxState
	// rxr batches the reads through io_uring (rx_uring_linux.go); nil
	// when the link reads with readv.
	rxr *rxRing
	// ringErr says why the reader fell back from rxr to readv.
	ringErr error
	ho      handoff // delivery hand-off when busy; see rx_handoff.go
	readErr error   // why the reader stopped, if it was not asked to

	ah ackHold // transmit: the bare ACK held back, if any (tx_ackhold.go)
}

// fail records why q's reader stops; the link keeps the first such error.
func (q *queue) fail(err error) {
	q.readErr = err
	q.link.readErr.CompareAndSwap(nil, &err)
}
