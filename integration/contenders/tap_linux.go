//go:build linux

package contenders

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// OpenPlainTAP creates the TAP device name in the calling thread's network
// namespace the way a stock gVisor user would for fdbased: one queue, no
// virtio-net header (IFF_TAP|IFF_NO_PI, include/uapi/linux/if_tun.h), and
// TUNSETOFFLOAD 0 so the kernel hands over only complete, checksummed
// frames of at most the MTU. The caller owns the descriptor; the device is
// not persistent and disappears when the descriptor is closed.
func OpenPlainTAP(name string) (int, error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return -1, fmt.Errorf("TAP name %q: want 1 to %d bytes", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %v", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TAP name %q: %v", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %q: %v", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETOFFLOAD 0 on %q: %v", name, err)
	}
	return fd, nil
}
