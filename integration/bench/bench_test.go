package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zcnet/zcnet/integration/nstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestQuick runs the whole harness in quick mode in namespaces from nstest
// (root only; skipped otherwise) and checks that the table is complete and
// sane: every contender has every figure it takes part in, each greater
// than zero, no errors, every target computed. It asserts nothing about
// performance.
func TestQuick(t *testing.T) {
	nstest.RequireRoot(t)
	cfg, _, err := parseFlags([]string{"-quick"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	newNS := func(string) (netns, func() error, error) {
		return nstest.New(t), func() error { return nil }, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := run(ctx, cfg, &progress, newNS)
	if err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("errors: %q", rep.Errors)
	}

	if len(rep.Contenders) != len(allContenders) {
		t.Fatalf("contenders %+v, want %v", rep.Contenders, allContenders)
	}
	for _, c := range rep.Contenders {
		for _, f := range allFigures {
			res := rep.result(f.key, c.Key)
			if res == nil {
				if !takesPart(c.Key, f) {
					continue // the multi-queue contender runs TCP figures only
				}
				t.Errorf("%s on %s: missing", f.key, c.Key)
				continue
			}
			if len(res.Runs) != cfg.runs || !res.ok() {
				t.Errorf("%s on %s: runs %+v, want %d without error", f.key, c.Key, res.Runs, cfg.runs)
			}
			if !(res.Median > 0 && res.Min > 0 && res.Min <= res.Median && res.Median <= res.Max) {
				t.Errorf("%s on %s: median %v min %v max %v, want 0 < min <= median <= max", f.key, c.Key, res.Median, res.Min, res.Max)
			}
			if f.bulk() && !(res.CPUSecondsPerGB > 0) {
				t.Errorf("%s on %s: CPU s/GB %v, want > 0", f.key, c.Key, res.CPUSecondsPerGB)
			}
		}
	}
	if want := len(targetSpecs(cfg.queues)); len(rep.Targets) != want {
		t.Errorf("%d targets, want %d", len(rep.Targets), want)
	}
	for _, tg := range rep.Targets {
		if !(tg.Got > 0) || tg.Note != "" {
			t.Errorf("target %q: got %v (%s)", tg.Name, tg.Got, tg.Note)
		}
	}

	var table bytes.Buffer
	if err := writeTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"zcnet net.Conn", "stock gVisor", "kernel veth", "TCP kernel→stack, 1 stream", "1-byte TCP round trips, one CPU", "CPU, TCP stack→kernel, 4 streams"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if strings.Contains(table.String(), "error") {
		t.Errorf("table shows an error:\n%s", table.String())
	}

	path := filepath.Join(t.TempDir(), "bench.json")
	if err := writeJSON(path, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rep.Results) || len(back.Targets) != len(rep.Targets) {
		t.Errorf("JSON round trip: %d results, %d targets; want %d, %d", len(back.Results), len(back.Targets), len(rep.Results), len(rep.Targets))
	}
	t.Logf("quick run, %.1f s:\n%s", rep.Seconds, table.String())
}
