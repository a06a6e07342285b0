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

func TestMain(m *testing.M) {
	if dev := os.Getenv(childEnv); dev != "" {
		os.Exit(runChild(dev))
	}
	goleak.VerifyTestMain(m)
}
