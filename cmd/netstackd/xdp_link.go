package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"syscall"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// serve -xdp DEV: the stack on queue 0 of an existing network interface
// through an AF_XDP socket (package tap/xdp), sharing the interface with
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

// openXDPStack attaches an AF_XDP link to -xdp's interface and builds the
// stack on it (zcstack.OpenXDP).
//
// The kernel lets one AF_XDP socket bind a queue: EBUSY from the bind means
// another process (another netstackd -xdp on the same interface) serves it,
// and the error says so.
func openXDPStack(s stackSetup, f xdpFlags, log *slog.Logger) (*zcstack.Stack, error) {
	z, err := zcstack.OpenXDP(s.config(log), f.dev, f.partialCsum, log)
	if errors.Is(err, syscall.EBUSY) {
		return z, fmt.Errorf("-xdp %s: queue 0 of %s is in use: another AF_XDP socket (another netstackd -xdp %s?) is bound to it; stop that process: %w",
			f.dev, f.dev, f.dev, err)
	}
	return z, err
}

// logXDPAttached logs how z's AF_XDP link attached.
func logXDPAttached(z *zcstack.Stack, s serveSetup, log *slog.Logger) {
	i := z.XDP.Info()
	log.Info("attached", "xdp", i.Interface, "queue", i.Queue, "program", i.AttachString(), "socket", i.BindString(),
		"mac", z.XDP.LinkAddress().String(), "mtu", z.XDP.MTU(), "umem_frames", i.Frames, "frame_size", i.FrameSize,
		"umem_pinned", i.Pinned, "addrs", s.addrs, "routes", len(s.routes), "pool", formatBytes(int64(s.pool.Size)), "pinned", z.Pool.Pinned())
}
