package nstest

import (
	"fmt"
	"strings"
	"testing"
)

// recTB records what a test helper asked of its testing.TB instead of
// stopping the goroutine.
type recTB struct {
	testing.TB
	fatal, skip string
}

func (r *recTB) Helper()                           {}
func (r *recTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recTB) Skip(args ...any)                  { r.skip = fmt.Sprint(args...) }

func TestSkipFailsUnderRequireEnv(t *testing.T) {
	for _, c := range []struct {
		env      string
		wantFail bool
	}{{"", false}, {"0", false}, {"1", true}, {"true", true}} {
		t.Run("env="+c.env, func(t *testing.T) {
			t.Setenv(RequireEnv, c.env)
			r := &recTB{TB: t}
			Skip(r, "skipping: no %s", "frobnicator")
			if c.wantFail {
				if r.fatal == "" || r.skip != "" {
					t.Fatalf("fatal %q, skip %q: want a failure", r.fatal, r.skip)
				}
				return
			}
			if r.skip != "skipping: no frobnicator" || r.fatal != "" {
				t.Fatalf("fatal %q, skip %q: want a skip", r.fatal, r.skip)
			}
		})
	}
}

func TestNeedToolsNamesTheMissingTool(t *testing.T) {
	t.Setenv(RequireEnv, "1")
	r := &recTB{TB: t}
	NeedTools(r, "zcnet-no-such-tool")
	if r.fatal == "" || !strings.Contains(r.fatal, "zcnet-no-such-tool") {
		t.Fatalf("fatal %q: want a failure naming the tool", r.fatal)
	}
}
