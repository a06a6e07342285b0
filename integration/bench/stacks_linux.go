//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/tap"

	"github.com/zcnet/zcnet/integration/contenders"
)

// The server subcommand's setups. Each runs in the server process, which
// the bench started in the namespace that is to hold the TAP device's
// kernel side (or, for the kernel, the server end of the veth pair).

// mtu is every link's IP MTU, the kernel's and the stacks' sides alike.
const mtu = 1500

// addrDev gives the kernel side of dev (in this process's namespace) the
// address p and brings it up.
func addrDev(dev string, p netip.Prefix) error {
	for _, args := range [][]string{{"addr", "add", p.String(), "dev", dev}, {"link", "set", dev, "up"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("%w: ip %s: %v: %s", errSetup, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// quietLogger passes the stacks' warnings and errors to w, nothing below.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// zcnetSide is one zcnet stack on one link (a TAP, or AF_XDP) with the
// socket API over it.
type zcnetSide struct {
	st   *stack.Stack
	pool *dmapool.Pool
	api  *api.Stack
	// linkCounters snapshots the link's counters under the names
	// addCounterExtras reads (link_rx_frames…).
	linkCounters func() map[string]uint64
	// setup says how the link attached, for the report; "" for a TAP.
	setup string
}

// openZcnet opens the TAP device dev with the given number of queues and
// the virtio-net offloads on, gives its kernel side kernel, and attaches a
// zcnet stack with address stackAddr and the socket API to it.
func openZcnet(dev string, queues int, kernel, stackAddr netip.Prefix, log io.Writer) (*zcnetSide, error) {
	link, err := tap.Open(tap.Config{Name: dev, MTU: mtu, Offload: tap.OffloadOn, Queues: queues})
	if err != nil {
		return nil, fmt.Errorf("%w: tap.Open %s: %v", errSetup, dev, err)
	}
	st, err := stack.New(stack.Options{Logger: quietLogger(log)})
	if err != nil {
		link.Close()
		return nil, fmt.Errorf("%w: stack.New: %v", errSetup, err)
	}
	z := &zcnetSide{st: st, linkCounters: tapCounters(link)}
	fail := func(err error) (*zcnetSide, error) { z.close(); return nil, err }
	if _, err := st.AddNIC(link, stack.NICConfig{Name: dev, Addrs: []netip.Prefix{stackAddr}}); err != nil {
		link.Close()
		return fail(fmt.Errorf("%w: AddNIC %s: %v", errSetup, dev, err))
	}
	if err := addrDev(dev, kernel); err != nil {
		return fail(err)
	}
	if err := z.openAPI(); err != nil {
		return nil, err
	}
	return z, nil
}

// openAPI makes the socket API's buffer pool and the API over the stack;
// on error it closes the whole side.
func (z *zcnetSide) openAPI() error {
	var err error
	// The pools' one "not pinned" warning is expected wherever
	// RLIMIT_MEMLOCK is below their size; it does not change what is
	// measured (the memory is populated up front either way).
	if z.pool, err = dmapool.New(dmapool.Config{Size: 64 << 20, Pin: dmapool.PinPrefer, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		z.close()
		return fmt.Errorf("%w: dmapool.New: %v", errSetup, err)
	}
	if z.api, err = api.New(z.st, api.Options{Pool: z.pool}); err != nil {
		z.close()
		return fmt.Errorf("%w: api.New: %v", errSetup, err)
	}
	return nil
}

func (z *zcnetSide) close() error {
	var err error
	if z.api != nil {
		err = z.api.Close()
	}
	if serr := z.st.Close(); err == nil { // closes the link too
		err = serr
	}
	if z.pool != nil {
		if perr := z.pool.Close(); err == nil {
			err = perr
		}
	}
	return err
}

// counters snapshots the link's, the stack's and the socket API's
// counters.
func (z *zcnetSide) counters() map[string]uint64 {
	m := z.linkCounters()
	gc := z.st.Counters()
	ac := z.api.Counters()
	for k, v := range map[string]uint64{
		"udp_received":       gc["UDP.PacketsReceived"],
		"udp_rcvbuf_drops":   gc["UDP.ReceiveBufferErrors"],
		"tcp_retransmits":    gc["TCP.Retransmits"],
		"tcp_timeouts":       gc["TCP.Timeouts"],
		"api_rx_handed_over": ac.RxHandedOver,
		"api_rx_copied":      ac.RxCopied,
		"api_tx_in_place":    ac.TxInPlace,
		"api_tx_copied":      ac.TxCopied,
	} {
		m[k] = v
	}
	return m
}

// tapCounters returns the TAP link's counters.
func tapCounters(link *tap.Link) func() map[string]uint64 {
	return func() map[string]uint64 {
		ls := link.Stats()
		return map[string]uint64{
			"link_rx_frames":     ls.RxFrames,
			"link_rx_bytes":      ls.RxBytes,
			"link_rx_wakeups":    ls.RxWakeups,
			"link_rx_gso_frames": ls.RxGSOFrames,
			"link_tx_frames":     ls.TxFrames,
			"link_tx_bytes":      ls.TxBytes,
			"link_tx_gso_frames": ls.TxGSOFrames,
			"link_tx_errors":     ls.TxErrors,
		}
	}
}

// stockNIC is the stock stack's only NIC.
// stockSide is the stock gVisor contender (contenders.Stock) on its TAP
// device.
type stockSide struct{ *contenders.Stock }

// openStock builds the stock stack on a new plain TAP device dev whose
// kernel side is kernel. Unless defaults is set, TCP gets the options
// zcnet's stack applies (contenders.TuneLikeZcnet), so the two differ only
// in the link and the socket interface; gVisor's own 1 MiB buffers cap a
// stream's window.
func openStock(dev string, kernel, stackAddr netip.Prefix, defaults bool) (*stockSide, error) {
	fd, err := contenders.OpenPlainTAP(dev)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errSetup, err)
	}
	if err := addrDev(dev, kernel); err != nil {
		unix.Close(fd)
		return nil, err
	}
	st, err := contenders.NewStock(fd, stackAddr, mtu, !defaults)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errSetup, err)
	}
	return &stockSide{st}, nil
}

func (ss *stockSide) close() error { return ss.Close() }

// listenTCP and listenUDP implement netListen with gonet.
func (ss *stockSide) listenTCP(ap netip.AddrPort) (net.Listener, error) { return ss.ListenTCP(ap) }

func (ss *stockSide) listenUDP(ap netip.AddrPort) (net.PacketConn, error) { return ss.ListenUDP(ap) }

// counters snapshots the stock stack's TCP and UDP counters and its NIC's.
func (ss *stockSide) counters() map[string]uint64 { return ss.Counters() }
