//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/xdp"
)

// The AF_XDP contender's server setup: a zcnet stack on an AF_XDP link
// (package stack/link/xdp) on queue 0 of the server end of a veth pair, run in
// the server process, which the bench started in the namespace holding
// that end. The link takes the interface's MAC address (the frames its
// program redirects are addressed to it) and MTU. The peer end in the
// client namespace sends with transmit checksum offload off (xdpVeth), so
// frames arrive with complete checksums as from a wire, and the link is
// not asked to complete partial ones (xdp.Config.PartialChecksums).

// openZcnetXDP attaches an AF_XDP link to dev for stackAddr and builds a
// zcnet stack and the socket API on it. Where the kernel has no AF_XDP
// sockets or cannot load the program, the error is an unavailableError.
func openZcnetXDP(dev string, stackAddr netip.Prefix, log io.Writer) (*zcnetSide, error) {
	link, err := xdp.Open(xdp.Config{Interface: dev, Addresses: []netip.Addr{stackAddr.Addr()}})
	if errors.Is(err, xdp.ErrUnsupported) {
		return nil, unavailableError{reason: err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: xdp.Open %s: %v", errSetup, dev, err)
	}
	st, err := stack.New(stack.Options{Logger: quietLogger(log)})
	if err != nil {
		link.Close()
		return nil, fmt.Errorf("%w: stack.New: %v", errSetup, err)
	}
	info := link.Info()
	z := &zcnetSide{st: st, linkCounters: xdpCounters(link),
		setup: fmt.Sprintf("AF_XDP on %s queue %d: program %s, socket %s, MTU %d, %d UMEM frames of %d B (pinned %v)",
			info.Interface, info.Queue, info.AttachString(), info.BindString(), link.MTU(), info.Frames, info.FrameSize, info.Pinned)}
	if _, err := st.AddNIC(link, stack.NICConfig{Name: dev, Addrs: []netip.Prefix{stackAddr}}); err != nil {
		link.Close()
		z.close()
		return nil, fmt.Errorf("%w: AddNIC %s: %v", errSetup, dev, err)
	}
	if err := z.openAPI(); err != nil {
		return nil, err
	}
	return z, nil
}

// xdpCounters returns the AF_XDP link's counters under the TAP link's
// names where they mean the same (link_rx_wakeups: the non-empty passes
// over the RX ring), and the link's own besides: its drops, the copies
// in and out of the UMEM, and the kernel's drops for the socket (a fill
// ring found empty: the stack fell behind a flood).
func xdpCounters(link *xdp.Link) func() map[string]uint64 {
	return func() map[string]uint64 {
		s := link.Stats()
		m := map[string]uint64{
			"link_rx_frames":       s.RxFrames,
			"link_rx_bytes":        s.RxBytes,
			"link_rx_wakeups":      s.RxBatches,
			"link_tx_frames":       s.TxFrames,
			"link_tx_bytes":        s.TxBytes,
			"link_tx_errors":       s.TxKickErrors,
			"link_rx_drops":        s.RxDropShort + s.RxDropOversized + s.RxDropNotForUs + s.RxDropNotAttached + s.RxDropBadDesc,
			"link_tx_drops":        s.TxDropTooBig + s.TxDropNoFrame,
			"link_rx_copied_bytes": s.RxCopiedBytes + s.RxHeaderBytes,
			"link_tx_copied_bytes": s.TxCopiedBytes,
			"xdp_rx_sleeps":        s.RxSleeps,
			"xdp_tx_kicks":         s.TxKicks,
		}
		if ks, err := link.KernelStats(); err == nil {
			m["xdp_kernel_fill_ring_empty"] = ks.RxFillRingEmpty
			m["xdp_kernel_rx_ring_full"] = ks.RxRingFull
			m["xdp_kernel_rx_dropped"] = ks.RxDropped
		}
		return m
	}
}
