//go:build linux

package contenders

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zcnet/zcnet/integration/nstest"
)

func TestOpenPlainTAPRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "a-name-of-16-byt"} {
		if fd, err := OpenPlainTAP(name); err == nil || !strings.Contains(err.Error(), "TAP name") {
			if err == nil {
				unix.Close(fd)
			}
			t.Errorf("OpenPlainTAP(%q) = %v, want an error about the name", name, err)
		}
	}
}

// TestOpenPlainTAP makes the stock contender's device in a namespace and
// checks that it is a TAP without the virtio-net header that goes away
// with its descriptor.
func TestOpenPlainTAP(t *testing.T) {
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zbt")
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = OpenPlainTAP(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// TUNGETIFF fills a whole struct ifreq.
	ifr, err := unix.NewIfreq("")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if got := ifr.Name(); got != name {
		t.Errorf("TUNGETIFF name %q, want %q", got, name)
	}
	if flags := ifr.Uint16(); flags&unix.IFF_TAP == 0 || flags&unix.IFF_NO_PI == 0 || flags&unix.IFF_VNET_HDR != 0 {
		t.Errorf("TUNGETIFF flags %#x: want IFF_TAP|IFF_NO_PI without IFF_VNET_HDR", ifr.Uint16())
	}
	out, err := ns.Run(10*time.Second, "ip", "-d", "link", "show", name)
	if err != nil || !strings.Contains(out, "tap") {
		t.Errorf("ip link show %s: %v\n%s", name, err, out)
	}
	unix.Close(fd)
	if out, err := ns.Run(10*time.Second, "ip", "link", "show", name); err == nil {
		t.Errorf("device still there after its descriptor closed:\n%s", out)
	}
}
