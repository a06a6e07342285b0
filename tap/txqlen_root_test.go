//go:build linux

package tap

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// deviceTxQueueLen reads a device's txqueuelen as ip(8) shows it in ns.
func deviceTxQueueLen(t *testing.T, run func(args ...string) string, name string) int {
	t.Helper()
	f := strings.Fields(run("cat", "/sys/class/net/"+name+"/tx_queue_len"))
	if len(f) != 1 {
		t.Fatalf("tx_queue_len of %s: %q", name, f)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTxQueueLen: a device Open creates gets DefaultTxQueueLen, an existing
// one keeps its own unless Config asks, an asked length is set, and a
// length out of range is refused. Info reports what the device has.
func TestTxQueueLen(t *testing.T) {
	t.Run("new device", func(t *testing.T) {
		e := newTAPEnv(t, Config{Queues: 1})
		if got := e.link.Info().TxQueueLen; got != DefaultTxQueueLen {
			t.Errorf("Info.TxQueueLen %d, want %d", got, DefaultTxQueueLen)
		}
		if got := deviceTxQueueLen(t, e.ns.MustRun, e.name); got != DefaultTxQueueLen {
			t.Errorf("the device's txqueuelen is %d, want %d", got, DefaultTxQueueLen)
		}
	})
	t.Run("existing device", func(t *testing.T) {
		ns, name := madeDevice(t, "tap", false)
		before := deviceTxQueueLen(t, ns.MustRun, name)
		link, err := openIn(ns, name, Config{Queues: 1})
		if err != nil {
			t.Fatal(err)
		}
		got := link.Info().TxQueueLen
		link.Close()
		if after := deviceTxQueueLen(t, ns.MustRun, name); after != before || got != before {
			t.Errorf("txqueuelen %d before Open, %d after, Info %d: want it left alone", before, after, got)
		}
		link, err = openIn(ns, name, Config{Queues: 1, TxQueueLen: 4321})
		if err != nil {
			t.Fatal(err)
		}
		got = link.Info().TxQueueLen
		link.Close()
		if after := deviceTxQueueLen(t, ns.MustRun, name); after != 4321 || got != 4321 {
			t.Errorf("asked for 4321: the device has %d, Info says %d", after, got)
		}
	})
	t.Run("out of range", func(t *testing.T) {
		for _, n := range []int{-1, MaxTxQueueLen + 1} {
			if _, err := (&Config{TxQueueLen: n}).resolve(0); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("TxQueueLen %d: %v, want ErrInvalidConfig", n, err)
			}
		}
	})
}
