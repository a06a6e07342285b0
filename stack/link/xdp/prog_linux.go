//go:build linux

package xdp

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// program is the loaded XDP program, its maps, and the bpf_link that
// attaches it to the interface. The link lives as long as its file
// descriptor: Close detaches the program, and so does the kernel when the
// process dies, however it dies, so no program outlives its socket.
type program struct {
	coll   *ebpf.Collection
	attach link.Link
	native bool
}

// loadProgram loads the program, puts the socket fd into the XSKMAP at
// queue and the addresses into the address maps, then attaches it to
// ifindex in native mode if mode allows and the driver has it, else in
// generic mode if mode allows. The calling thread's network namespace is
// the interface's.
func loadProgram(ifindex, queue, xskFD int, addrs []netip.Addr, mode AttachMode) (_ *program, err error) {
	coll, err := ebpf.NewCollection(programSpec())
	if err != nil {
		return nil, fmt.Errorf("xdp: loading the XDP program: %w", unsupported(err))
	}
	p := &program{coll: coll}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	for _, a := range addrs {
		if err := p.allow(a); err != nil {
			return nil, err
		}
	}
	if err := coll.Maps[mapXSKs].Put(uint32(queue), uint32(xskFD)); err != nil {
		return nil, fmt.Errorf("xdp: socket map: %w", err)
	}
	prog := coll.Programs[progName]
	var errNative error
	if mode != AttachGeneric {
		p.attach, errNative = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if errNative == nil {
			p.native = true
			return p, nil
		}
		if mode == AttachNative {
			return nil, fmt.Errorf("xdp: attaching in native mode: %w", errNative)
		}
	}
	p.attach, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
	if err != nil {
		return nil, fmt.Errorf("xdp: attaching the XDP program: %w", unsupported(errors.Join(errNative, err)))
	}
	return p, nil
}

// unsupported marks err with ErrUnsupported when it says the kernel or
// the process cannot do BPF at all (as opposed to, say, another program
// already on the interface), so that callers and tests can tell the two.
func unsupported(err error) error {
	for _, e := range []error{ebpf.ErrNotSupported, unix.EPERM, unix.ENOSYS, unix.EOPNOTSUPP, unix.EAFNOSUPPORT} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
	}
	return err
}

// allow adds a to the addresses the program redirects.
func (p *program) allow(a netip.Addr) error {
	a = a.Unmap()
	m, key := p.coll.Maps[mapAddrs6], a.AsSlice()
	if a.Is4() {
		m = p.coll.Maps[mapAddrs4]
	}
	if err := m.Put(key, uint8(1)); err != nil {
		return fmt.Errorf("xdp: address map: adding %s: %w", a, err)
	}
	return nil
}

// close detaches the program and frees it and its maps.
func (p *program) close() {
	if p.attach != nil {
		_ = p.attach.Close()
		p.attach = nil
	}
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
}
