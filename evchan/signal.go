package evchan

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalWatch delivers OS signals to a channel as SourceSignal events
// (§7). It is built on os/signal: while the watch exists the signals it
// names are caught for the process (their default action, such as
// termination, does not happen), as with signal.Notify.
//
// Each signal number has its own coalescing Notifier: while an event for
// SIGUSR1 is queued, further SIGUSR1s merge into it (Result counts them,
// as far as os/signal passed them on: it may already merge signals that
// arrive faster than they are read). Op is the signal number.
type SignalWatch struct {
	ch *Channel
	// sigc receives from os/signal; owned by the watch goroutine.
	sigc chan os.Signal
	// notifiers maps each watched signal to its Notifier. Immutable.
	notifiers map[os.Signal]*Notifier
	stop      chan struct{} // closed by Stop
	done      chan struct{} // closed when the goroutine has returned
	once      sync.Once
}

var _ stopper = (*SignalWatch)(nil)

// NotifySignal starts delivering sigs to ec, each event with data in
// Event.Data. It runs one goroutine until Stop or ec's Close. It returns
// ErrInvalid when sigs is empty (unlike signal.Notify, which then means
// every signal) and ErrClosed if ec is closed.
func NotifySignal(ec *Channel, data any, sigs ...os.Signal) (*SignalWatch, error) {
	if len(sigs) == 0 {
		return nil, fmt.Errorf("evchan: NotifySignal without signals: %w", ErrInvalid)
	}
	w := &SignalWatch{
		ch:        ec,
		sigc:      make(chan os.Signal, 4*len(sigs)),
		notifiers: make(map[os.Signal]*Notifier, len(sigs)),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for _, s := range sigs {
		if s == nil {
			return nil, fmt.Errorf("evchan: NotifySignal with a nil signal: %w", ErrInvalid)
		}
		var op uint16
		if n, ok := s.(syscall.Signal); ok {
			op = uint16(n)
		}
		n, err := ec.NewNotifier(Event{Source: SourceSignal, Op: op, Data: data})
		if err != nil {
			return nil, err
		}
		w.notifiers[s] = n
	}
	if err := ec.addSource(w); err != nil {
		return nil, err
	}
	signal.Notify(w.sigc, sigs...)
	go w.run()
	return w, nil
}

func (w *SignalWatch) run() {
	defer close(w.done)
	for {
		select {
		case s := <-w.sigc:
			if n := w.notifiers[s]; n != nil {
				n.Notify(0)
			}
		case <-w.stop:
			return
		}
	}
}

// Stop stops the watch: the signals are no longer caught for it, and its
// goroutine has returned when Stop returns. Stop is idempotent.
func (w *SignalWatch) Stop() {
	w.once.Do(func() {
		signal.Stop(w.sigc)
		close(w.stop)
		<-w.done
		w.ch.removeSource(w)
	})
}

// stopForClose implements stopper.
func (w *SignalWatch) stopForClose() { w.Stop() }
