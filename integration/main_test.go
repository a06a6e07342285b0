package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// netstackd is the path of the daemon binary built for this test run, or
// empty if the build failed (buildErr says why).
var (
	netstackd string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zcnet-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	netstackd = filepath.Join(dir, "netstackd")
	args := []string{"build", "-o", netstackd}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, "github.com/zcnet/zcnet/cmd/netstackd")...).CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build netstackd: %v\n%s", err, out)
		netstackd = ""
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		code = runWithLeakCheck(m)
	}()
	os.Exit(code)
}

func runWithLeakCheck(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// needDaemon fails t if the daemon could not be built.
func needDaemon(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}
