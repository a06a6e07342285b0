package tap

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// carrierOn reports whether the interface name in the calling thread's
// network namespace has its carrier on (rtnetlink's IFLA_CARRIER, which the
// kernel reports whether the interface is up or not). A TAP device's
// carrier is on exactly while some file has a queue of it attached
// (drivers/net/tun.c turns it on in tun_attach and off when the last queue
// detaches), so for an existing device it says that another process serves
// it. A multi-queue device lets a second process attach queues of its own
// without complaint, and the kernel then spreads the device's frames over
// both; this is how attachFirst tells.
func carrierOn(name string) (bool, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return false, fmt.Errorf("tap: rtnetlink link dump: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return false, fmt.Errorf("tap: rtnetlink link dump: %w", err)
	}
	for i := range msgs {
		if msgs[i].Header.Type != unix.RTM_NEWLINK {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&msgs[i])
		if err != nil {
			continue
		}
		var ifname string
		carrier, known := false, false
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				ifname = string(trimNul(a.Value))
			case unix.IFLA_CARRIER:
				if len(a.Value) > 0 {
					carrier, known = a.Value[0] != 0, true
				}
			}
		}
		if ifname == name {
			if !known {
				return false, fmt.Errorf("tap: rtnetlink reports no carrier state for %q", name)
			}
			return carrier, nil
		}
	}
	return false, fmt.Errorf("tap: rtnetlink lists no interface %q", name)
}

// heldWait bounds how long heldByOther waits for a holder to let go.
const heldWait = time.Second

// heldByOther reports whether the existing device name has a queue
// attached (carrierOn) that stays attached for heldWait: a holder that was
// just killed (`kill -9` and a restart at once) lets its queues go while
// the kernel tears the process down, a few milliseconds later, and the
// device goes with them if that process made it. A device gone, or whose
// carrier cannot be read, is not held.
func heldByOther(name string) bool {
	deadline := time.Now().Add(heldWait)
	for {
		held, err := carrierOn(name)
		if err != nil || !held {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// trimNul cuts b at its first NUL byte.
func trimNul(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
