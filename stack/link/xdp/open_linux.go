//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"net"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/zcnet/zcnet/dmapool"
)

// Open attaches a link to cfg.Queue of cfg.Interface:
//
//  1. the UMEM: one dmapool region of Frames × FrameSize bytes, pinned,
//     reserved whole and registered once (XDP_UMEM_REG);
//  2. the socket, its four rings mapped, bound to the queue with
//     XDP_USE_NEED_WAKEUP and zero-copy or copy per cfg.Bind;
//  3. the XDP program, with the socket in its XSKMAP and cfg.Addresses in
//     its address maps, attached through a bpf_link, native or generic
//     per cfg.Attach;
//  4. the receive loop, which first fills the fill ring with the receive
//     half of the frames.
//
// Call it from a thread in the interface's network namespace (the socket
// and the attachment bind to the caller's). Errors wrap ErrInvalidConfig,
// or ErrUnsupported where the kernel lacks AF_XDP or BPF or the process
// the privilege to use them.
func Open(cfg Config) (_ *Link, err error) {
	cfg, err = cfg.normalize()
	if err != nil {
		return nil, err
	}
	ifc, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("xdp: interface %q: %w", cfg.Interface, err)
	}
	if cfg.LinkAddress == "" {
		if len(ifc.HardwareAddr) != 6 {
			return nil, fmt.Errorf("%w: interface %q has no Ethernet address", ErrInvalidConfig, cfg.Interface)
		}
		cfg.LinkAddress = tcpip.LinkAddress(ifc.HardwareAddr)
	}
	if cfg.MTU == 0 {
		cfg.MTU = uint32(ifc.MTU)
	}
	size := cfg.Frames * cfg.FrameSize
	pool, err := dmapool.New(dmapool.Config{Size: size, SlotSize: cfg.FrameSize, Pin: dmapool.PinPrefer, HugePages: dmapool.HugeOff})
	if err != nil {
		return nil, fmt.Errorf("xdp: UMEM: %w", err)
	}
	buf, err := pool.Reserve(size)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("xdp: UMEM: %w", err)
	}
	var sock *xsk
	var prog *program
	defer func() {
		if err != nil {
			if prog != nil {
				prog.close()
			}
			if sock != nil {
				sock.close()
			}
			buf.Release()
			pool.Close()
		}
	}()
	ri, off, err := pool.Locate(buf)
	if err != nil {
		return nil, fmt.Errorf("xdp: UMEM: %w", err)
	}
	region := pool.Regions()[ri]
	addr := region.Addr + uintptr(off)
	if addr%4096 != 0 {
		return nil, errors.New("xdp: UMEM not page-aligned")
	}
	bind := bindAuto
	switch cfg.Bind {
	case BindZeroCopy:
		bind = bindZeroCopy
	case BindCopy:
		bind = bindCopy
	}
	ringSize := uint32(cfg.Frames / 2)
	sock, err = openXSK(ifc.Index, cfg.Queue, addr, size, uint32(cfg.FrameSize), ringSize, bind)
	if err != nil {
		return nil, err
	}
	prog, err = loadProgram(ifc.Index, cfg.Queue, sock.fd, cfg.Addresses, cfg.Attach)
	if err != nil {
		return nil, err
	}
	info := Info{Interface: cfg.Interface, Ifindex: ifc.Index, Queue: cfg.Queue, Native: prog.native, ZeroCopy: sock.zeroCopy,
		Frames: cfg.Frames, FrameSize: cfg.FrameSize, Pinned: region.Pinned}
	l := newLink(info, buf.Bytes(), sock, sock.fill, sock.comp, sock.rx, sock.tx, cfg)
	l.sock, l.prog, l.allow = sock, prog, prog.allow
	l.free = func() {
		prog.close()
		sock.close()
		buf.Release()
		pool.Close()
	}
	l.start()
	return l, nil
}

// KernelStats returns the socket's XDP_STATISTICS: frames the kernel
// dropped because the RX ring was full or the fill ring empty, and
// descriptors it found invalid.
func (l *Link) KernelStats() (KernelStats, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.sock == nil {
		return KernelStats{}, net.ErrClosed
	}
	st, err := l.sock.stats()
	if err != nil {
		return KernelStats{}, fmt.Errorf("xdp: XDP_STATISTICS: %w", err)
	}
	return KernelStats{RxDropped: st.Rx_dropped, RxInvalidDescs: st.Rx_invalid_descs, TxInvalidDescs: st.Tx_invalid_descs,
		RxRingFull: st.Rx_ring_full, RxFillRingEmpty: st.Rx_fill_ring_empty_descs, TxRingEmpty: st.Tx_ring_empty_descs}, nil
}
