//go:build linux

package xdp

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// childEnv makes the re-executed test binary the child of TestKilledDetaches:
// its value is the interface to attach to (see runChild).
const childEnv = "ZCNET_XDP_CHILD"

// helperEnv makes the re-executed test binary one of the benchmark's
// load processes (see runHelper); its last two arguments are its address
// and duration.
const helperEnv = "ZCNET_XDP_HELPER"

func TestMain(m *testing.M) {
	if dev := os.Getenv(childEnv); dev != "" {
		os.Exit(runChild(dev))
	}
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[len(os.Args)-2:]))
	}
	goleak.VerifyTestMain(m)
}
