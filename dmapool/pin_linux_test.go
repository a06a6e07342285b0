package dmapool

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestPinRequireOverLimit: with RLIMIT_MEMLOCK below the pool size, New
// fails with ErrPin, and the message names the limit, the bytes asked and
// how to raise the limit.
func TestPinRequireOverLimit(t *testing.T) {
	res := runChild(t, "memlock", []string{"DMAPOOL_PIN=require"})
	t.Logf("child: %+v", res)
	if !res.ErrIsPin {
		t.Fatalf("New under a %d-byte memlock limit: err %q, want ErrPin", memlockLimit, res.Err)
	}
	for _, want := range []string{
		"RLIMIT_MEMLOCK is " + strconv.Itoa(memlockLimit) + " bytes", // the limit in force
		"mlock of 1048576 bytes",                                     // the bytes asked
		"ulimit -l", "LimitMEMLOCK=", "CAP_IPC_LOCK", "PinPrefer",    // how to raise it, or not need it
	} {
		if !strings.Contains(res.Err, want) {
			t.Errorf("error %q does not say %q", res.Err, want)
		}
	}
}

// TestPinPreferOverLimit: the same limit with PinPrefer, set or left at the
// zero value, gives a working, unpinned pool and exactly one warning, also
// after a Grow that cannot pin; the warning's advice fits PinPrefer (raise
// the limit, or PinOff), never "set PinPrefer".
func TestPinPreferOverLimit(t *testing.T) {
	for _, mode := range []string{"prefer", "default"} {
		t.Run(mode, func(t *testing.T) { testPinPreferOverLimit(t, mode) })
	}
}

func testPinPreferOverLimit(t *testing.T, mode string) {
	res := runChild(t, "memlock", []string{"DMAPOOL_PIN=" + mode})
	t.Logf("child: %+v", res)
	if res.Err != "" {
		t.Fatalf("New: %s", res.Err)
	}
	if res.Pinned || res.BytesPinned != 0 {
		t.Errorf("Pinned() = %v, BytesPinned = %d under a %d-byte limit", res.Pinned, res.BytesPinned, memlockLimit)
	}
	if !res.Works {
		t.Error("the unpinned pool does not work")
	}
	if res.Warnings != 1 || res.WarningsAfterGrow != 1 {
		t.Errorf("%d warnings after New, %d after Grow; want 1 and 1", res.Warnings, res.WarningsAfterGrow)
	}
	if !strings.Contains(res.WarningText, "not pinned") || !strings.Contains(res.WarningText, "RLIMIT_MEMLOCK") {
		t.Errorf("warning %q does not say what and why", res.WarningText)
	}
	if strings.Contains(res.WarningText, "PinPrefer") || !strings.Contains(res.WarningText, "PinOff") {
		t.Errorf("warning %q: the advice should name PinOff and not PinPrefer, which is in force", res.WarningText)
	}
}

// TestPinZeroValue: the zero Config.Pin is PinPrefer, as Config's doc says
// of every field but Size.
func TestPinZeroValue(t *testing.T) {
	var c Config
	if c.Pin != PinPrefer || c.Pin.String() != "prefer" {
		t.Fatalf("zero Pin is %v, want prefer", c.Pin)
	}
}

// vmLck is the process's locked memory, from /proc/self/status.
func vmLck(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	kb, ok := procField(b, "VmLck:")
	if !ok {
		t.Fatal("no VmLck in /proc/self/status")
	}
	return kb << 10
}

// TestPinRequireWithinLimit: a pool under the limit is locked: Pinned, the
// byte count, the kernel's VmLck and the mapping's "lo" flag all agree,
// and Close unlocks it.
func TestPinRequireWithinLimit(t *testing.T) {
	before := vmLck(t)
	p, err := New(Config{Size: 512 << 10, HugePages: HugeOff, Pin: PinRequire})
	if err != nil {
		t.Fatalf("New pinned 512 KiB: %v", err)
	}
	if !p.Pinned() || p.Stats().BytesPinned != 512<<10 || !p.Regions()[0].Pinned {
		t.Errorf("Pinned %v, %+v", p.Pinned(), p.Stats())
	}
	if got := vmLck(t) - before; got != 512<<10 {
		t.Errorf("VmLck grew by %d, want %d", got, 512<<10)
	}
	if f := vmFlags(t, p.regions.Load().list[0]); !f["lo"] {
		t.Errorf("mapping not locked: VmFlags %v", f)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := vmLck(t) - before; got != 0 {
		t.Errorf("VmLck still %d above its start after Close", got)
	}
}

func TestPinOff(t *testing.T) {
	p := newPool(t, Config{Size: 512 << 10, HugePages: HugeOff, Pin: PinOff})
	if p.Pinned() || p.Stats().BytesPinned != 0 {
		t.Errorf("PinOff pool pinned: %+v", p.Stats())
	}
	if f := vmFlags(t, p.regions.Load().list[0]); f["lo"] {
		t.Errorf("PinOff mapping locked: VmFlags %v", f)
	}
}
