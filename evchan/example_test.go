package evchan_test

import (
	"context"
	"fmt"

	"github.com/zcnet/zcnet/evchan"
)

// A program's one inner loop (the paper's §7): completions, a semaphore,
// a mutex and a message queue, all consumed from one channel.
func Example() {
	ec, err := evchan.New(evchan.Config{Capacity: 256})
	if err != nil {
		panic(err)
	}
	defer ec.Close()

	// A submitted operation reserves its completion slot up front...
	op, err := ec.Reserve(1)
	if err != nil {
		panic(err) // evchan.ErrFull: back off, the channel is full
	}
	// ...and its completion, posted later from any goroutine, cannot be
	// refused for lack of room.
	op.Post(evchan.Event{Source: evchan.SourceNetOp, Op: 1, Result: 1500, Data: "recv"})

	var mu evchan.Mutex
	mu.ALock(ec, "mutex") // free: granted at once, flagged inline

	sem, _ := evchan.NewSem(0)
	sem.Await(ec, "sem") // no unit yet: queued
	sem.Release(1)       // granted: its event is posted

	q, _ := evchan.NewMsgQueue[string](8)
	q.Notify(ec, "queue")
	q.TrySend("hello")

	batch := make([]evchan.Event, 16)
	n, err := ec.Next(context.Background(), batch)
	if err != nil {
		panic(err)
	}
	for _, ev := range batch[:n] {
		switch ev.Source {
		case evchan.SourceNetOp:
			fmt.Println(ev.Data, "completed with", ev.Result)
		case evchan.SourceMutex:
			fmt.Println(ev.Data, "held, inline:", ev.Flags&evchan.FlagInline != 0)
			mu.Unlock()
		case evchan.SourceSem:
			fmt.Println(ev.Data, "acquired")
		case evchan.SourceMsgQueue:
			msg, _ := q.TryReceive()
			fmt.Println(ev.Data, "has", ev.Result, "message:", msg)
		}
	}
	// Output:
	// recv completed with 1500
	// mutex held, inline: true
	// sem acquired
	// queue has 1 message: hello
}

// Batched posting from a producer of many completions, such as a stack
// worker: reserve a batch, post what completed, give back the rest.
func ExampleReservation_PostBatch() {
	ec, _ := evchan.New(evchan.Config{Capacity: 64})
	defer ec.Close()

	credits, err := ec.ReserveContext(context.Background(), 16)
	if err != nil {
		panic(err)
	}
	done := []evchan.Event{
		{Source: evchan.SourceNetOp, Cookie: 1, Result: 100},
		{Source: evchan.SourceNetOp, Cookie: 2, Result: 200},
	}
	credits.PostBatch(done) // one wake-up for the whole batch
	credits.Release()       // the 14 unused credits go back

	batch := make([]evchan.Event, 8)
	n := ec.TryNext(batch)
	fmt.Println(n, "events; free slots:", ec.Stats().Free)
	// Output: 2 events; free slots: 64
}
