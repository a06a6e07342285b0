package evchan

import (
	"context"
	"errors"
	"testing"
)

type msg struct {
	id   int
	body string
}

func TestMsgQueueNotify(t *testing.T) {
	c := mustNew(t, 8)
	q, err := NewMsgQueue[msg](4)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Notify(c, "q"); err != nil {
		t.Fatal(err)
	}
	if err := q.Notify(c, "q"); !errors.Is(err, ErrBusy) {
		t.Fatalf("second registration: %v", err)
	}
	if _, ok := take1(c); ok {
		t.Fatal("event on an empty queue")
	}
	q.TrySend(msg{1, "a"})
	q.TrySend(msg{2, "b"})
	ev, ok := take1(c)
	if !ok || ev.Source != SourceMsgQueue || ev.Op != OpMsgQueue || ev.Result != 1 || ev.Data != "q" {
		t.Fatalf("arrival event: %v", ev)
	}
	if _, ok := take1(c); ok {
		t.Fatal("one-shot registration fired twice")
	}
	// Registering on a non-empty queue fires at once.
	if err := q.Notify(c, "again"); err != nil {
		t.Fatal(err)
	}
	if ev, ok := take1(c); !ok || ev.Result != 2 || ev.Flags&FlagInline == 0 {
		t.Fatalf("registration on a non-empty queue: %v", ev)
	}
	for _, want := range []msg{{1, "a"}, {2, "b"}} {
		if got, err := q.TryReceive(); err != nil || got != want {
			t.Fatalf("TryReceive = %v, %v; want %v", got, err, want)
		}
	}
	if _, err := q.TryReceive(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryReceive on empty: %v", err)
	}
	// CancelNotify gives the reserved slot back.
	q.Notify(c, nil)
	if !q.CancelNotify() || q.CancelNotify() {
		t.Fatal("CancelNotify")
	}
	if st := c.Stats(); st.Free != 8 {
		t.Fatalf("slot not returned: free %d", st.Free)
	}
	if _, err := NewMsgQueue[int](0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("capacity 0: %v", err)
	}
}

// TestMsgQueueBlockedReceiverTakesPrecedence: as with mq_notify, no
// notification while a receiver is blocked; it gets the message.
func TestMsgQueueBlockedReceiverTakesPrecedence(t *testing.T) {
	c := mustNew(t, 8)
	q, _ := NewMsgQueue[int](4)
	q.Notify(c, nil)
	got := make(chan int)
	go func() {
		v, err := q.Receive(context.Background())
		if err != nil {
			v = -1
		}
		got <- v
	}()
	waitFor(t, "blocked receiver", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.receivers == 1
	})
	q.TrySend(7)
	if v := <-got; v != 7 {
		t.Fatalf("receiver got %d", v)
	}
	if _, ok := take1(c); ok {
		t.Fatal("notification despite a blocked receiver")
	}
	q.TrySend(8) // the registration is still armed
	if ev, ok := take1(c); !ok || ev.Result != 1 {
		t.Fatalf("notification after the receiver left: %v", ev)
	}
}

func TestMsgQueueBlockingAndClose(t *testing.T) {
	q, _ := NewMsgQueue[int](1)
	if err := q.TrySend(1); err != nil {
		t.Fatal(err)
	}
	if err := q.TrySend(2); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend on full: %v", err)
	}
	sent := make(chan error)
	go func() { sent <- q.Send(context.Background(), 2) }()
	if v, err := q.Receive(context.Background()); err != nil || v != 1 {
		t.Fatalf("Receive = %d, %v", v, err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("blocked Send: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.Send(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled ctx on a full queue: %v", err)
	}
	q.TryReceive()
	if _, err := q.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a cancelled ctx on an empty queue: %v", err)
	}

	recv := make(chan error)
	go func() {
		_, err := q.Receive(context.Background())
		recv <- err
	}()
	waitFor(t, "blocked receiver", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.receivers == 1
	})
	q.Close()
	if err := <-recv; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Receive at Close: %v", err)
	}
	if err := q.TrySend(4); !errors.Is(err, ErrClosed) {
		t.Fatalf("TrySend after Close: %v", err)
	}
	c := mustNew(t, 2)
	if err := q.Notify(c, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Notify after Close: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMsgQueueDrainAfterClose(t *testing.T) {
	q, _ := NewMsgQueue[string](2)
	q.TrySend("x")
	q.Close()
	if v, err := q.TryReceive(); err != nil || v != "x" {
		t.Fatalf("message queued before Close: %q, %v", v, err)
	}
	if _, err := q.TryReceive(); !errors.Is(err, ErrClosed) {
		t.Fatalf("empty closed queue: %v", err)
	}
}

func TestMsgQueueLenCap(t *testing.T) {
	q, _ := NewMsgQueue[int](3)
	q.TrySend(1)
	q.TrySend(2)
	if q.Len() != 2 || q.Cap() != 3 {
		t.Fatalf("Len %d Cap %d", q.Len(), q.Cap())
	}
}
