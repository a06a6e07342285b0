package tap

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// This file holds the ioctls that create and configure the TAP device
// (Documentation/networking/tuntap.rst, include/uapi/linux/if_tun.h).

// tunPath is the clone device; every open of it is a new queue. A variable
// so tests can point it at a missing file.
var tunPath = "/dev/net/tun"

// device is what openDevice made: the queue descriptors (owned by the
// caller), the name the kernel gave the device, and the offloads it took.
type device struct {
	fds      []int
	name     string
	offloads Offloads
}

func checkPlatform() error { return nil }

// openDevice opens r.queues queues of the TAP device r.name, creating it if
// absent, in the calling thread's network namespace:
//
//  1. open /dev/net/tun and TUNSETIFF with IFF_TAP|IFF_NO_PI, plus
//     IFF_VNET_HDR with offloads and IFF_MULTI_QUEUE with several queues;
//     each further queue is another open and TUNSETIFF of the same name;
//  2. with offloads: TUNSETVNETHDRSZ 12 (virtio_net_hdr_v1), TUNSETVNETLE
//     (the header is little-endian on every host), and TUNSETOFFLOAD with
//     CSUM, TSO4, TSO6 and USO4|USO6, retried without USO on kernels that
//     lack it (before 6.2); without offloads TUNSETOFFLOAD 0, so a device
//     left with offloads by an earlier user sends plain frames;
//  3. set the kernel side's MTU (SIOCSIFMTU) when it differs.
//
// The settings of steps 2 and 3 belong to the device, not the queue, and
// outlive the process on a persistent device.
func openDevice(r resolved) (device, error) {
	dev := device{name: r.name}
	fail := func(err error) (device, error) {
		for _, fd := range dev.fds {
			unix.Close(fd)
		}
		return device{}, err
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if r.vnet {
		flags |= unix.IFF_VNET_HDR
	}
	if r.queues > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	for i := 0; i < r.queues; i++ {
		fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fail(openError(err))
		}
		dev.fds = append(dev.fds, fd)
		ifr, err := unix.NewIfreq(dev.name)
		if err != nil {
			return fail(fmt.Errorf("%w: name %q: %v", ErrInvalidConfig, dev.name, err))
		}
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fail(ioctlError(fmt.Sprintf("TUNSETIFF %q (queue %d, flags %#x)", dev.name, i, flags), err))
		}
		// An empty name or a pattern ("tap%d") is resolved by the
		// first TUNSETIFF; the other queues attach to that name.
		dev.name = ifr.Name()
	}
	fd := dev.fds[0]
	if r.vnet {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
			return fail(ioctlError("TUNSETVNETHDRSZ", err))
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
			return fail(ioctlError("TUNSETVNETLE", err))
		}
		dev.offloads = offloadsWanted
		err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(dev.offloads))
		if errors.Is(err, unix.EINVAL) {
			dev.offloads = offloadsBasic
			err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(dev.offloads))
		}
		if err != nil {
			return fail(ioctlError(fmt.Sprintf("TUNSETOFFLOAD %v", dev.offloads), err))
		}
	} else if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return fail(ioctlError("TUNSETOFFLOAD 0", err))
	}
	if err := setMTU(dev.name, r.mtu); err != nil {
		return fail(err)
	}
	return dev, nil
}

// setMTU sets the device's MTU through an AF_INET socket of the calling
// thread's namespace, unless it already has that MTU (setting it needs
// CAP_NET_ADMIN even when attaching to a device the caller owns).
func setMTU(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tap: socket for SIOCSIFMTU: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%w: name %q: %v", ErrInvalidConfig, name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFMTU, ifr); err != nil {
		return ioctlError("SIOCGIFMTU "+name, err)
	}
	if int(ifr.Uint32()) == mtu {
		return nil
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return ioctlError(fmt.Sprintf("SIOCSIFMTU %s %d", name, mtu), err)
	}
	return nil
}

// openError classifies a failed open of /dev/net/tun.
func openError(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("%w: open %s: %w", ErrNoDevice, tunPath, err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: open %s: %w", ErrPermission, tunPath, err)
	}
	return fmt.Errorf("tap: open %s: %w", tunPath, err)
}

// ioctlError classifies a failed ioctl; the errno stays reachable with
// errors.Is.
func ioctlError(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %s: %w", ErrPermission, what, err)
	}
	return fmt.Errorf("tap: %s: %w", what, err)
}
