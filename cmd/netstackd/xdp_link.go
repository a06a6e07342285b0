package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/zcnet/zcnet/stack/link/xdp"
)

// serve -xdp DEV: the stack on queue 0 of an existing network interface
// through an AF_XDP socket (package stack/link/xdp), sharing the interface with
// the host. Everything -xdp adds to the daemon is in this file; serve.go
// only calls it.

// xdpFlags are serve's -xdp flags.
type xdpFlags struct {
	dev         string // -xdp
	partialCsum bool   // -xdp-partial-csum
}

func registerXDPFlag(fs *flag.FlagSet, cfg *serveConfig) {
	if cfg.cmd != "serve" {
		return
	}
	fs.StringVar(&cfg.xdp.dev, "xdp", "", "attach to queue 0 of this existing network interface through AF_XDP instead of a TAP device (root; the host keeps its other traffic)")
	fs.BoolVar(&cfg.xdp.partialCsum, "xdp-partial-csum", false, "with -xdp: complete TCP/UDP checksums a peer on this host left partial (a veth peer with checksum offload on)")
}

// checkXDP checks -xdp against the flags it excludes.
func (cfg *serveConfig) checkXDP() error {
	o := cfg.origin
	switch {
	case cfg.tap != "" || cfg.ring != "":
		return fmt.Errorf("%s: give one of -tap, -ring and -xdp, the stack attaches to one link", o.val("xdp", cfg.xdp.dev))
	case len(cfg.xdp.dev) > 15 || strings.ContainsAny(cfg.xdp.dev, "/ \t\n:"):
		return fmt.Errorf("%s: an interface name is 1 to 15 bytes without '/', ':' or spaces", o.val("xdp", cfg.xdp.dev))
	}
	return nil
}

// openXDPStack attaches an AF_XDP link to dev for the stack's addresses
// and builds the stack on it. The link takes the interface's MAC address
// and MTU (the frames the program redirects are addressed to that MAC).
func openXDPStack(s stackSetup, f xdpFlags, log *slog.Logger) (*zcStack, error) {
	addrs := make([]netip.Addr, 0, len(s.addrs))
	for _, p := range s.addrs {
		addrs = append(addrs, p.Addr())
	}
	link, err := xdp.Open(xdp.Config{Interface: f.dev, Addresses: addrs, PartialChecksums: f.partialCsum})
	if err != nil {
		return nil, err
	}
	z, err := buildStack(s, link, f.dev, log)
	if err != nil {
		return nil, err
	}
	z.xdp = link
	return z, nil
}

func (z *zcStack) logXDPAttached(s serveSetup, log *slog.Logger) {
	i := z.xdp.Info()
	log.Info("attached", "xdp", i.Interface, "queue", i.Queue, "program", i.AttachString(), "socket", i.BindString(),
		"mac", z.xdp.LinkAddress().String(), "mtu", z.xdp.MTU(), "umem_frames", i.Frames, "frame_size", i.FrameSize,
		"umem_pinned", i.Pinned, "addrs", s.addrs, "routes", len(s.routes), "pool", formatBytes(int64(s.pool.Size)), "pinned", z.pool.Pinned())
}

// xdpMetrics adds the AF_XDP link's counters to the metrics.
func (z *zcStack) xdpMetrics(counter counterFunc, gauge func(name, help string, v float64, labels ...string), l []string) {
	if z.xdp == nil {
		return
	}
	s := z.xdp.Stats()
	i := z.xdp.Info()
	linkTotals(counter, l, s.RxFrames, s.RxBytes, s.TxFrames, s.TxBytes)
	rxDrops(counter, l, []reasonCount{{"short", s.RxDropShort}, {"oversized", s.RxDropOversized}, {"not_for_us", s.RxDropNotForUs},
		{"not_attached", s.RxDropNotAttached}, {"bad_desc", s.RxDropBadDesc}})
	byReason(counter, "zcnet_link_tx_drops_total", "Packets the link dropped on transmit, by reason.", l,
		[]reasonCount{{"too_big", s.TxDropTooBig}, {"no_frame", s.TxDropNoFrame}})
	counter("zcnet_link_xdp_rx_batches_total", "Non-empty passes over the AF_XDP RX ring.", s.RxBatches, l...)
	counter("zcnet_link_xdp_rx_sleeps_total", "Times the receive loop slept in poll(2).", s.RxSleeps, l...)
	counter("zcnet_link_xdp_rx_bad_index_total", "RX ring producer indices out of range.", s.RxBadIndex, l...)
	counter("zcnet_link_xdp_fill_deferred_total", "Receive frames that waited for room on the fill ring.", s.RxFillDeferred, l...)
	counter("zcnet_link_xdp_rx_csum_completed_total", "Partial TCP/UDP checksums completed (-xdp-partial-csum).", s.RxCsumCompleted, l...)
	counter("zcnet_link_xdp_tx_kicks_total", "sendto calls the kernel asked for (need_wakeup).", s.TxKicks, l...)
	counter("zcnet_link_xdp_tx_kick_errors_total", "sendto calls that failed.", s.TxKickErrors, l...)
	counter("zcnet_link_xdp_tx_bad_completions_total", "Completion entries for frames the kernel did not hold.", s.TxBadCompletion, l...)
	for _, f := range []struct {
		owner string
		v     int
	}{{"rx_kernel", s.FramesRxKernel}, {"rx_held", s.FramesRxHeld}, {"tx_free", s.FramesTxFree}, {"tx_kernel", s.FramesTxKernel}} {
		gauge("zcnet_link_xdp_umem_frames", "UMEM frames by owner.", float64(f.v), append(l, "owner", f.owner)...)
	}
	if ks, err := z.xdp.KernelStats(); err == nil {
		byReason(counter, "zcnet_link_xdp_kernel_drops_total", "The kernel's XDP_STATISTICS for the socket, by reason.", l,
			[]reasonCount{{"dropped", ks.RxDropped}, {"rx_ring_full", ks.RxRingFull}, {"fill_ring_empty", ks.RxFillRingEmpty},
				{"rx_invalid_desc", ks.RxInvalidDescs}, {"tx_invalid_desc", ks.TxInvalidDescs}})
	}
	gauge("zcnet_link_xdp_native", "1 if the XDP program runs in the driver's hook, 0 if generic.", b2f(i.Native), l...)
	gauge("zcnet_link_xdp_zerocopy", "1 if the AF_XDP socket is bound zero-copy, 0 if copy mode.", b2f(i.ZeroCopy), l...)
	counter("zcnet_copy_link_rx_bytes_total", "Bytes the link copied in user space on receive (out of the UMEM).", s.RxCopiedBytes+s.RxHeaderBytes, l...)
	counter("zcnet_copy_link_tx_bytes_total", "Bytes the link copied into UMEM frames on transmit.", s.TxCopiedBytes, l...)
}
