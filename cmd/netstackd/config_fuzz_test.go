package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/zcnet/zcnet/tap"
)

// FuzzConfig feeds arbitrary bytes to serve as its config file (-config):
// every input must give a config or a usage error with a message, never a
// panic. A file that loads and resolves must round-trip: its key settings
// (device or ring, MTU, offloads, queues, addresses, services, perf port, metrics
// address, log level), written back as TOML by an independent encoder,
// load and resolve to the same values. The seed corpus is in
// testdata/fuzz/FuzzConfig; CI runs it as a test, and .ci/run fuzzes it.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("tap = \"zc0\"\naddr = [\"192.0.2.2/24\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		s, ok := loadServeFile(t, filepath.Join(dir, "in.toml"), data)
		if !ok {
			return
		}
		// Round trip.
		var text bytes.Buffer
		if err := toml.NewEncoder(&text).Encode(configKeys(s)); err != nil {
			t.Fatalf("encoding the settings of a valid file: %v", err)
		}
		s2, ok := loadServeFile(t, filepath.Join(dir, "out.toml"), text.Bytes())
		if !ok {
			t.Fatalf("the settings of a valid file, written back, do not load:\n%s", &text)
		}
		if a, b := configKeys(s), configKeys(s2); !equalKeys(a, b) {
			t.Fatalf("round trip changed the settings:\nfirst  %v\nsecond %v\nfile:\n%s", a, b, &text)
		}
		if s.tap.Offload != s2.tap.Offload || !slices.Equal(s.addrs, s2.addrs) {
			t.Fatalf("round trip changed offload %v → %v or addresses %v → %v", s.tap.Offload, s2.tap.Offload, s.addrs, s2.addrs)
		}
	})
}

// loadServeFile writes data to path and runs serve's parsing and
// resolution on it (-config path, no other flag). ok is false when either
// refused the file, which must then come with a message: on stderr, naming
// the file, for the loader; in the error, for resolve.
func loadServeFile(t *testing.T, path string, data []byte) (s serveSetup, ok bool) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cfg, err := parseServe([]string{"-config", path}, io.Discard, &errb)
	if err != nil {
		if !errors.Is(err, errUsage) {
			t.Fatalf("parseServe: %v, want errUsage", err)
		}
		if msg := errb.String(); !strings.Contains(msg, "config") || !strings.Contains(msg, path) {
			t.Fatalf("refused without naming the file: %q", msg)
		}
		return s, false
	}
	s, err = cfg.resolve()
	if err != nil {
		if err.Error() == "" {
			t.Fatal("resolve refused the file with an empty message")
		}
		return s, false
	}
	return s, true
}

// configKeys returns a resolved setup's key settings as config file keys
// and TOML values.
func configKeys(s serveSetup) map[string]any {
	m := map[string]any{
		"mtu":       int64(s.tap.MTU),
		"queues":    int64(s.tap.Queues),
		"perf-port": int64(s.perfPort),
		"log-level": s.level.String(),
	}
	if s.tap.Name != "" {
		m["tap"] = s.tap.Name
	}
	if s.ring != "" {
		m["ring"] = s.ring
	}
	m["offload"] = "on"
	if s.tap.Offload == tap.OffloadOff {
		m["offload"] = "off"
	}
	var v4, v6 []string
	for _, p := range s.addrs {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	if len(v4) > 0 {
		m["addr"] = v4
	}
	if len(v6) > 0 {
		m["addr6"] = v6
	}
	if len(s.services) == 0 {
		m["no-services"] = true
	} else {
		m["services"] = strings.Join(s.services, ",")
	}
	if s.metrics != "" {
		m["metrics"] = s.metrics
	}
	if s.stackMetrics {
		m["stack-metrics"] = true
	}
	return m
}

// equalKeys compares two configKeys maps.
func equalKeys(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			return false
		}
		switch x := va.(type) {
		case []string:
			y, ok := vb.([]string)
			if !ok || !slices.Equal(x, y) {
				return false
			}
		default:
			if va != vb {
				return false
			}
		}
	}
	return true
}
