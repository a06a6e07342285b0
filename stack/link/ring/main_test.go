//go:build linux

package ring

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv selects a helper mode when the test binary is re-executed as
// the peer process (see helper_test.go).
const helperEnv = "ZCNET_RING_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperEnv+"_PATH")))
	}
	goleak.VerifyTestMain(m)
}
