package evchan

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

func TestSignal(t *testing.T) {
	c := mustNew(t, 8)
	w, err := NotifySignal(c, "usr", syscall.SIGUSR1, syscall.SIGUSR2)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2} {
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		ev := next(t, c)
		if ev.Source != SourceSignal || ev.Op != uint16(sig) || ev.Result < 1 || ev.Data != "usr" {
			t.Fatalf("after %v: %v", sig, ev)
		}
	}
	w.Stop()
	w.Stop() // idempotent
	if sourceCount(c) != 0 {
		t.Fatal("stopped watch still bound")
	}
}

func TestSignalArgsAndClose(t *testing.T) {
	c := mustNew(t, 8)
	if _, err := NotifySignal(c, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no signals: %v", err)
	}
	if _, err := NotifySignal(c, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil signal: %v", err)
	}
	w, err := NotifySignal(c, nil, syscall.SIGUSR1)
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // stops the watch and its goroutine (goleak checks)
	select {
	case <-w.done:
	default:
		t.Fatal("Close left the signal goroutine running")
	}
	if _, err := NotifySignal(c, nil, syscall.SIGUSR1); !errors.Is(err, ErrClosed) {
		t.Fatalf("NotifySignal on a closed channel: %v", err)
	}
}
