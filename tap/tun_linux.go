package tap

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// This file holds the ioctls that create and configure the TAP device
// (Documentation/networking/tuntap.rst, include/uapi/linux/if_tun.h).

// tunPath is the clone device; every open of it is a new queue. A variable
// so tests can point it at a missing file.
var tunPath = "/dev/net/tun"

// device is what openDevice made: the queue descriptors (owned by the
// caller) and how they attached (the name the kernel gave the device, the
// queues, the offloads it took).
type device struct {
	fds  []int
	info Info
}

func checkPlatform() error { return nil }

// openDevice opens the queues of the TAP device r.name, creating it if
// absent, in the calling thread's network namespace:
//
//  1. attach the first queue: open /dev/net/tun and TUNSETIFF with
//     IFF_TAP|IFF_NO_PI, plus IFF_VNET_HDR with offloads and
//     IFF_MULTI_QUEUE with several queues (attachFirst: the queue count
//     and the multi-queue flag an existing device takes);
//  2. attach the others: another open and TUNSETIFF of the same name each;
//  3. with offloads: TUNSETVNETHDRSZ 12 (virtio_net_hdr_v1), TUNSETVNETLE
//     (the header is little-endian on every host), and TUNSETOFFLOAD with
//     CSUM, TSO4, TSO6 and USO4|USO6, retried without USO on kernels that
//     lack it (before 6.2); without offloads TUNSETOFFLOAD 0, so a device
//     left with offloads by an earlier user sends plain frames;
//  4. set the kernel side's MTU (SIOCSIFMTU) when it differs;
//  5. set the transmit queue length (SIOCSIFTXQLEN) when Config asks for
//     one, or to DefaultTxQueueLen on a device step 1 created.
//
// The settings of steps 3 to 5 belong to the device, not the queue, and
// outlive the process on a persistent device.
func openDevice(r resolved) (device, error) {
	dev := device{info: Info{Name: r.name, Queues: r.queues}}
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
	fd, err := attachFirst(r, flags, &dev.info)
	if err != nil {
		return device{}, err
	}
	dev.fds = append(dev.fds, fd)
	if dev.info.MultiQueue {
		flags |= unix.IFF_MULTI_QUEUE
	}
	for i := 1; i < dev.info.Queues; i++ {
		// An empty name or a pattern ("tap%d") was resolved by the first
		// TUNSETIFF; the other queues attach to that name.
		fd, err := attach(dev.info.Name, flags)
		if fd >= 0 {
			dev.fds = append(dev.fds, fd)
		}
		if err != nil {
			return fail(attachError(dev.info.Name, fmt.Sprintf("TUNSETIFF %q (queue %d, flags %#x)", dev.info.Name, i, flags), err))
		}
	}
	fd = dev.fds[0]
	if r.vnet {
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
			return fail(ioctlError("TUNSETVNETHDRSZ", err))
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
			return fail(ioctlError("TUNSETVNETLE", err))
		}
		dev.info.Offloads = offloadsWanted
		err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(dev.info.Offloads))
		if errors.Is(err, unix.EINVAL) {
			dev.info.Offloads = offloadsBasic
			err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(dev.info.Offloads))
		}
		if err != nil {
			return fail(ioctlError(fmt.Sprintf("TUNSETOFFLOAD %v", dev.info.Offloads), err))
		}
	} else if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return fail(ioctlError("TUNSETOFFLOAD 0", err))
	}
	if err := setMTU(dev.info.Name, r.mtu); err != nil {
		return fail(err)
	}
	want := r.txQLen
	if want == 0 && dev.info.Created {
		want = DefaultTxQueueLen
	}
	if dev.info.TxQueueLen, err = setTxQueueLen(dev.info.Name, want); err != nil {
		return fail(err)
	}
	return dev, nil
}

// setTxQueueLen sets the device's transmit queue length, the size of the
// ring each queue's frames wait in for the reader (the kernel resizes the
// rings of attached queues), unless want is 0 or the device has it
// already (setting needs CAP_NET_ADMIN). It returns the length the device
// has.
func setTxQueueLen(name string, want int) (int, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("tap: socket for SIOCSIFTXQLEN: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("%w: name %q: %v", ErrInvalidConfig, name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFTXQLEN, ifr); err != nil {
		return 0, ioctlError("SIOCGIFTXQLEN "+name, err)
	}
	have := int(ifr.Uint32())
	if want == 0 || have == want {
		return have, nil
	}
	ifr.SetUint32(uint32(want))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFTXQLEN, ifr); err != nil {
		return 0, ioctlError(fmt.Sprintf("SIOCSIFTXQLEN %s %d", name, want), err)
	}
	return want, nil
}

// attachFirst attaches the first queue and settles info's Name, Queues,
// MultiQueue, Created and Reason.
//
// A device's multi-queue setting is fixed when it is made (by the first
// TUNSETIFF, or by `ip tuntap add`, which makes it without multi_queue
// unless told), and TUNSETIFF of an existing device fails with EINVAL when
// the request's IFF_MULTI_QUEUE differs from it (drivers/net/tun.c,
// tun_set_iff), before anything is attached. So the first attach asks for
// what the queue count implies; if the device exists and refuses, the
// other setting is tried: that tells a single-queue device from a
// multi-queue one without reading sysfs (which shows the namespace it was
// mounted in, not necessarily the calling thread's). EINVAL both ways means
// the name belongs to something that is not a TAP device.
func attachFirst(r resolved, flags uint16, info *Info) (int, error) {
	existed := r.name != "" && !strings.Contains(r.name, "%") && ifExists(r.name)
	if existed && heldByOther(r.name) {
		return -1, fmt.Errorf("%w: %w: device %q is in use: another process (or another link of this one) has a queue of it attached (its carrier is on), "+
			"and a second reader would take a share of its frames; stop that process, or use a device of your own", ErrQueues, unix.EBUSY, r.name)
	}
	// A device that a process just killed had made goes with its last
	// queue: heldByOther may have waited for that.
	existed = existed && ifExists(r.name)
	info.Created = !existed
	mq := r.queues > 1
	tryFlags := func(mq bool) uint16 {
		if mq {
			return flags | unix.IFF_MULTI_QUEUE
		}
		return flags
	}
	fd, err := attach(r.name, tryFlags(mq))
	if err == nil {
		info.MultiQueue = mq
		info.Name = ifName(fd, r.name)
		return fd, nil
	}
	what := fmt.Sprintf("TUNSETIFF %q (queue 0, flags %#x)", r.name, tryFlags(mq))
	switch {
	case existed && errors.Is(err, unix.EINVAL):
		// The device's multi-queue setting differs: try the other.
		fd2, err2 := attach(r.name, tryFlags(!mq))
		if err2 != nil {
			if errors.Is(err2, unix.EINVAL) {
				return -1, fmt.Errorf("%w: %s: %w: an interface named %q exists but is not a TAP device (a TUN device, or another kind); "+
					"choose another name, or delete it (`ip link del %s`) and let Open create the device", ErrQueues, what, err, r.name, r.name)
			}
			return -1, attachError(r.name, fmt.Sprintf("TUNSETIFF %q (queue 0, flags %#x)", r.name, tryFlags(!mq)), err2)
		}
		info.Name = ifName(fd2, r.name)
		if !mq {
			// One queue asked (or one CPU) on a multi-queue device: it
			// takes the flag even for one queue.
			info.MultiQueue = true
			info.Reason = "the device was made with multi_queue, so even one queue attaches with IFF_MULTI_QUEUE"
			return fd2, nil
		}
		// Several queues on a single-queue device.
		if !r.auto {
			unix.Close(fd2)
			return -1, fmt.Errorf("%w: device %q was made without multi_queue and takes one queue, not %d (%s: %w); "+
				"use Queues 1 (netstackd: -queues 1), or recreate the device with multi_queue: "+
				"`ip link del %s && ip tuntap add dev %s mode tap multi_queue`",
				ErrQueues, r.name, r.queues, what, err, r.name, r.name)
		}
		info.Queues = 1
		info.Reason = fmt.Sprintf("the device was made without multi_queue, which allows one queue; for one per CPU (%d), "+
			"make it with `ip tuntap add dev %s mode tap multi_queue`", r.queues, r.name)
		return fd2, nil
	}
	return -1, attachError(r.name, what, err)
}

// attachError explains a failed first attach.
func attachError(name, what string, err error) error {
	var se errSetup
	if errors.As(err, &se) {
		return se.err
	}
	if errors.Is(err, unix.EBUSY) {
		// tun_attach: a single-queue device whose queue is attached
		// already, or IFF_TUN_EXCL.
		return fmt.Errorf("%w: %s: %w: device %q is in use: it takes one queue (made without multi_queue) and another process holds it; "+
			"stop that process, or use a device of your own", ErrQueues, what, err, name)
	}
	return ioctlError(what, err)
}

// attach opens /dev/net/tun and attaches it as a queue of the device name
// with flags. It returns the descriptor, or -1 and the error: TUNSETIFF's
// errno as it is, anything else classified already (errSetup).
func attach(name string, flags uint16) (int, error) {
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, errSetup{openError(err)}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, errSetup{fmt.Errorf("%w: name %q: %v", ErrInvalidConfig, name, err)}
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// errSetup carries an error of attach that is not TUNSETIFF's and that
// attach has explained already.
type errSetup struct{ err error }

func (e errSetup) Error() string { return e.err.Error() }
func (e errSetup) Unwrap() error { return e.err }

// ifName returns the name the kernel gave the device fd is attached to
// (TUNGETIFF), which differs from what was asked for an empty name or a
// pattern; asked when TUNGETIFF fails.
func ifName(fd int, asked string) string {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return asked
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return asked
	}
	return ifr.Name()
}

// ifExists reports whether the calling thread's network namespace has an
// interface named name (SIOCGIFINDEX).
func ifExists(name string) bool {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false
	}
	return unix.IoctlIfreq(s, unix.SIOCGIFINDEX, ifr) == nil
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
