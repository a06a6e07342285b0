package xdp

import (
	"errors"
	"net/netip"
	"testing"
)

// TestConfigNormalize checks the defaults and that each bad field is
// refused with ErrInvalidConfig.
func TestConfigNormalize(t *testing.T) {
	c, err := Config{Interface: "eth0"}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.Frames != DefaultFrames || c.FrameSize != DefaultFrameSize || c.BusyPoll != DefaultBusyPoll {
		t.Fatalf("defaults: %+v", c)
	}
	many := make([]netip.Addr, maxAddrs+1)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
	}
	for _, bad := range []Config{
		{},
		{Interface: "eth0", Queue: -1},
		{Interface: "eth0", Queue: maxQueues},
		{Interface: "eth0", Frames: 100},
		{Interface: "eth0", Frames: 8},
		{Interface: "eth0", FrameSize: 3000},
		{Interface: "eth0", Attach: AttachMode(7)},
		{Interface: "eth0", Bind: BindMode(-1)},
		{Interface: "eth0", Addresses: many},
		{Interface: "eth0", Addresses: []netip.Addr{{}}},
	} {
		if _, err := bad.normalize(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err %v, want ErrInvalidConfig", bad, err)
		}
	}
	names := map[string]string{AttachAuto.String(): "auto", AttachNative.String(): "native", AttachGeneric.String(): "generic",
		BindAuto.String(): "auto", BindZeroCopy.String(): "zerocopy", BindCopy.String(): "copy"}
	for got, want := range names {
		if got != want {
			t.Errorf("mode name %q, want %q", got, want)
		}
	}
	if (Info{Native: true, ZeroCopy: true}).AttachString() != "native" || (Info{}).BindString() != "copy" {
		t.Error("Info strings")
	}
}
