package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"

	"github.com/zcnet/zcnet/cmd/netstackd/zcstack"
)

// toolNet is where a tool's sockets live, chosen by exactly one of:
//
//	-kernel          the kernel's sockets, in this process's network namespace
//	-inproc          two zcnet stacks in this process on an in-process link,
//	                 the server on 192.0.2.2 and the client on 192.0.2.1 (no root)
//	-tap NAME ...    one zcnet stack on a TAP device (root), with serve's
//	                 link and stack flags (-addr, -mtu, -offload, ...)
//	-ring PATH ...   one zcnet stack on the peer side of the shared-memory
//	                 ring "netstackd serve -ring PATH" listens on (no root),
//	                 with the same flags
type toolNet struct {
	*stackFlags
	kernel, inproc bool
	ring           string
}

// toolPoolSize is the tools' default buffer pool: one test's copies.
const toolPoolSize = 16 << 20

func newToolNet() *toolNet { return &toolNet{stackFlags: newStackFlags(toolPoolSize)} }

func (n *toolNet) register(fs *flag.FlagSet) {
	fs.BoolVar(&n.kernel, "kernel", false, "use the kernel's sockets")
	fs.BoolVar(&n.inproc, "inproc", false, "run client and server on two zcnet stacks in this process (no root needed)")
	n.stackFlags.register(fs, "run on a zcnet stack attached to this TAP device (needs root; give -addr)")
	fs.StringVar(&n.ring, "ring", "", `run on a zcnet stack on the peer side of the ring "netstackd serve -ring PATH" listens on (no root; give -addr)`)
}

// toolMode is the resolved choice.
type toolMode int

const (
	modeKernel toolMode = iota + 1
	modeInproc
	modeTAP
	modeRing
)

// resolve checks the choice and the stack flags.
func (n *toolNet) resolve() (toolMode, stackSetup, error) {
	chosen := 0
	var mode toolMode
	for _, c := range []struct {
		on bool
		m  toolMode
	}{{n.kernel, modeKernel}, {n.inproc, modeInproc}, {n.tap != "", modeTAP}, {n.ring != "", modeRing}} {
		if c.on {
			chosen++
			mode = c.m
		}
	}
	if chosen != 1 {
		what := "none"
		if chosen > 1 {
			what = "more than one"
		}
		return 0, stackSetup{}, fmt.Errorf("choose where the sockets live (%s given): -kernel (kernel sockets), -inproc (two zcnet stacks in this process), -tap NAME -addr PREFIX (a zcnet stack on a TAP device) or -ring PATH -addr PREFIX (a zcnet stack on the peer side of serve's ring)", what)
	}
	if mode == modeRing {
		if len(n.ring) > maxSocketPath || strings.ContainsRune(n.ring, 0) {
			return 0, stackSetup{}, fmt.Errorf("-ring %q: a unix socket path is at most %d bytes without NUL", n.ring, maxSocketPath)
		}
		s, err := n.stackFlags.resolve(false)
		if err == nil && len(s.addrs) == 0 {
			err = fmt.Errorf("no address: give the stack on the ring one with -addr (e.g. 192.0.2.1/24, in serve's subnet) and/or -addr6")
		}
		return mode, s, err
	}
	if mode != modeTAP {
		stackOnly := []string{}
		if len(n.addrs.list)+len(n.addrs6.list) > 0 {
			stackOnly = append(stackOnly, "-addr/-addr6")
		}
		if n.gw != "" || n.gw6 != "" || len(n.routes.list) > 0 {
			stackOnly = append(stackOnly, "-gateway/-route")
		}
		if mode == modeKernel && n.pcap != "" {
			stackOnly = append(stackOnly, "-pcap")
		}
		if len(stackOnly) > 0 {
			return 0, stackSetup{}, fmt.Errorf("%s only apply to a zcnet stack of its own (-tap or -ring)", strings.Join(stackOnly, ", "))
		}
	}
	s, err := n.stackFlags.resolve(mode == modeTAP)
	return mode, s, err
}

// toolEnv is a tool's open network: the transport(s) and what to close.
type toolEnv struct {
	client, server transport.Transport // the same for -kernel and -tap
	// serverAddr is the in-process server's address (-inproc).
	serverAddr netip.Addr
	stacks     []*zcstack.Stack
}

// openToolEnv opens the network mode names; ring is the unix socket of
// serve's ring (modeRing).
func openToolEnv(mode toolMode, s stackSetup, ring string, log *slog.Logger) (*toolEnv, error) {
	switch mode {
	case modeKernel:
		return &toolEnv{client: transport.Kernel{}, server: transport.Kernel{}}, nil
	case modeInproc:
		c, sv, err := zcstack.OpenPair(s.config(log), log)
		if err != nil {
			return nil, err
		}
		return &toolEnv{client: c.Transport(), server: sv.Transport(), serverAddr: zcstack.PairServer.Addr(), stacks: []*zcstack.Stack{c, sv}}, nil
	case modeTAP:
		z, err := zcstack.OpenTAP(s.config(log), log)
		if err != nil {
			return nil, err
		}
		return &toolEnv{client: z.Transport(), server: z.Transport(), stacks: []*zcstack.Stack{z}}, nil
	case modeRing:
		z, err := zcstack.DialRing(s.config(log), ring, log)
		if err != nil {
			return nil, err
		}
		return &toolEnv{client: z.Transport(), server: z.Transport(), stacks: []*zcstack.Stack{z}}, nil
	}
	return nil, errors.New("no mode")
}

// Close closes the stacks, server's last.
func (e *toolEnv) Close() error {
	var errs []error
	for _, z := range e.stacks {
		errs = append(errs, z.Close())
	}
	return errors.Join(errs...)
}

// parseHost parses a numeric address for -c.
func parseHost(flagName, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.Trim(v, "[]"))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("-%s %q: want a numeric IPv4 or IPv6 address, e.g. -%s 192.0.2.2 (zcnet has no resolver)", flagName, v, flagName)
	}
	return a.Unmap(), nil
}

// toolLogger logs to stderr: warnings only, or everything with -v.
func toolLogger(verbose bool, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
