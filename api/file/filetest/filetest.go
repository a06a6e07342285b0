// Package filetest has test helpers for code that runs file operations
// through api: a stack per file engine, bound to a test's lifetime, and
// temporary files. It owns nothing but these helpers; it is imported only
// by tests.
package filetest

import (
	"errors"
	"os"
	"testing"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/file"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
)

// Engines lists the engines every file test runs on.
var Engines = []file.EngineKind{file.EngineURing, file.EngineWorkers}

// ForEachEngine runs fn as a subtest per engine, on a stack (no links, no
// pool) whose file engine runs with cfg and that engine; io_uring is
// skipped, with the kernel's reason, where it is refused.
func ForEachEngine(t *testing.T, cfg file.Config, fn func(t *testing.T, s *api.Stack)) {
	for _, k := range Engines {
		t.Run(k.String(), func(t *testing.T) {
			c := cfg
			c.Engine = k
			fn(t, NewStack(t, c, nil))
		})
	}
}

// NewStack returns an API stack (no links) over pool (nil: for file
// operations alone) whose file engine runs with cfg, closed at the end of
// the test. A forced io_uring the kernel refuses skips the test.
func NewStack(t testing.TB, cfg file.Config, pool *dmapool.Pool) *api.Stack {
	t.Helper()
	st, err := stack.New(stack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := api.New(st, api.Options{Pool: pool, FilesOnly: pool == nil})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.ConfigureFiles(cfg); err != nil {
		if cfg.Engine == file.EngineURing && errors.Is(err, file.ErrEngine) {
			t.Skipf("io_uring engine unavailable here: %v", err)
		}
		t.Fatal(err)
	}
	if got, want := s.FileEngine(), cfg.Engine.String(); cfg.Engine != file.EngineAuto && got != want {
		t.Fatalf("FileEngine() = %q, want %q", got, want)
	}
	return s
}

// TempFile returns a new file in dir (empty: the test's temporary
// directory) holding data, closed at the end of the test.
func TempFile(t testing.TB, dir string, data []byte) *os.File {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f, err := os.CreateTemp(dir, "zcnet-file-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f
}
