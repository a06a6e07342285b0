package evchan

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestEventIsOneCacheLine(t *testing.T) {
	if got := reflect.TypeFor[Event]().Size(); got != 64 && reflect.TypeFor[uintptr]().Size() == 8 {
		t.Fatalf("sizeof(Event) = %d, want 64 on a 64-bit platform", got)
	}
}

func TestEventString(t *testing.T) {
	type payload struct{ n int }
	ev := Event{
		Source: SourceFDReady, Op: uint16(Readable | Hangup), Flags: FlagInline | 1<<FlagPosterShift,
		Result: 3, Errno: syscall.ECONNRESET, Cookie: 0xbeef, Data: "conn-7", Buffer: &payload{},
	}
	got := ev.String()
	want := "evchan.Event{fdready op=17(in|hup) flags=inline|0x10000 result=3 errno=" +
		syscall.ECONNRESET.Error() + " cookie=0xbeef data=conn-7 buffer=*evchan.payload}"
	if got != want {
		t.Fatalf("String() =\n%s\nwant\n%s", got, want)
	}
	if s := (Event{}).String(); s != "evchan.Event{unknown op=0 result=0}" {
		t.Fatalf("zero Event: %s", s)
	}
	if s := Source(200).String(); s != "source(200)" {
		t.Fatalf("Source(200) = %s", s)
	}
}

func TestNewCapacity(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, DefaultCapacity}, {1, 1}, {2, 2}, {3, 4}, {1000, 1024}, {1 << 12, 1 << 12}} {
		c, err := New(Config{Capacity: tc.in})
		if err != nil {
			t.Fatalf("New(%d): %v", tc.in, err)
		}
		if c.Cap() != tc.want || c.Stats().Free != tc.want {
			t.Errorf("New(%d): Cap %d, Free %d, want %d", tc.in, c.Cap(), c.Stats().Free, tc.want)
		}
		c.Close()
	}
	// The smallest ring still works, lap after lap, split runs included.
	one, _ := New(Config{Capacity: 1})
	defer one.Close()
	for i := range 10 {
		if err := one.TryPost(Event{Source: SourceUser, Cookie: uint64(i)}); err != nil {
			t.Fatal(err)
		}
		if err := one.TryPost(Event{}); !errors.Is(err, ErrFull) {
			t.Fatalf("second post into a 1-slot channel: %v", err)
		}
		var dst [1]Event
		if one.TryNext(dst[:]) != 1 || dst[0].Cookie != uint64(i) {
			t.Fatalf("lap %d: %v", i, dst[0])
		}
	}
	for _, bad := range []int{-1, MaxCapacity + 1} {
		if _, err := New(Config{Capacity: bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%d) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPostTakeOrderAndFields(t *testing.T) {
	c := mustNew(t, 8)
	type buf struct{ b [16]byte }
	b := &buf{}
	r, err := c.Reserve(3)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Post(Event{Source: SourceNetOp, Op: 7, Result: 100, Cookie: 1, Data: "a", Buffer: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PostBatch([]Event{{Source: SourceUser, Cookie: 2}, {Source: SourceUser, Cookie: 3, Errno: syscall.EAGAIN}}); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 {
		t.Fatalf("credits left %d", r.Len())
	}
	if err := r.Post(Event{}); !errors.Is(err, ErrNoCredit) {
		t.Fatalf("Post without credit = %v", err)
	}
	if c.Len() != 3 {
		t.Fatalf("Len %d", c.Len())
	}
	dst := make([]Event, 2)
	if n := c.TryNext(dst); n != 2 || dst[0].Cookie != 1 || dst[1].Cookie != 2 {
		t.Fatalf("first batch %d %v", n, dst[:n])
	}
	if dst[0].Buffer != b || dst[0].Data != "a" || dst[0].Result != 100 || dst[0].Op != 7 {
		t.Fatalf("fields not carried: %v", dst[0])
	}
	if n := c.TryNext(dst); n != 1 || dst[0].Cookie != 3 || dst[0].Errno != syscall.EAGAIN {
		t.Fatalf("second batch %d %v", n, dst[:n])
	}
	if n := c.TryNext(dst); n != 0 {
		t.Fatalf("empty channel gave %d", n)
	}
	st := c.Stats()
	if st.Posted != 3 || st.Delivered != 3 || st.Free != 8 || st.Queued != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRingReleasesReferences(t *testing.T) {
	c := mustNew(t, 4)
	if err := c.TryPost(Event{Source: SourceUser, Data: new(int), Buffer: new(int)}); err != nil {
		t.Fatal(err)
	}
	var dst [1]Event
	if c.TryNext(dst[:]) != 1 {
		t.Fatal("no event")
	}
	for i := range c.ring.evs {
		if ev := c.ring.evs[i]; ev.Data != nil || ev.Buffer != nil || c.ring.slots[i].hook != nil {
			t.Fatalf("slot %d still references %v", i, ev)
		}
	}
}

func TestReserveFullAndRelease(t *testing.T) {
	c := mustNew(t, 4)
	r, err := c.Reserve(3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reserve(2); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve past capacity = %v, want ErrFull", err)
	}
	r1, err := c.Reserve(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.TryPost(Event{Source: SourceUser}); !errors.Is(err, ErrFull) {
		t.Fatalf("TryPost with all credits reserved = %v", err)
	}
	r1.Release()
	r1.Release() // idempotent
	if st := c.Stats(); st.Free != 1 {
		t.Fatalf("free after release %d", st.Free)
	}
	part, err := r.Split(2)
	if err != nil || part.Len() != 2 || r.Len() != 1 {
		t.Fatalf("Split: %v %d %d", err, part.Len(), r.Len())
	}
	if _, err := r.Split(2); !errors.Is(err, ErrNoCredit) {
		t.Fatalf("over-split = %v", err)
	}
	if _, err := part.PostBatch(make([]Event, 3)); !errors.Is(err, ErrNoCredit) {
		t.Fatalf("PostBatch beyond credits = %v", err)
	}
	part.Release()
	r.Release()
	if st := c.Stats(); st.Free != 4 {
		t.Fatalf("free after releasing all %d", st.Free)
	}
	for _, n := range []int{-1, 5} {
		if _, err := c.Reserve(n); !errors.Is(err, ErrInvalid) {
			t.Errorf("Reserve(%d) = %v, want ErrInvalid", n, err)
		}
	}
	if r0, err := c.Reserve(0); err != nil || r0.Len() != 0 {
		t.Fatalf("Reserve(0) = %v", err)
	}
	var zero Reservation
	if err := zero.Post(Event{}); !errors.Is(err, ErrNoCredit) {
		t.Fatalf("zero Reservation Post = %v", err)
	}
	zero.Release()
}

func TestOverflowSourceIsReserved(t *testing.T) {
	c := mustNew(t, 4)
	r, _ := c.Reserve(2)
	defer r.Release()
	if err := r.Post(Event{Source: SourceOverflow}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Post(Overflow) = %v", err)
	}
	if _, err := r.PostBatch([]Event{{}, {Source: SourceOverflow}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PostBatch(Overflow) = %v", err)
	}
	if err := c.TryPost(Event{Source: SourceOverflow}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("TryPost(Overflow) = %v", err)
	}
	if c.Notify(Event{Source: SourceOverflow}) {
		t.Fatal("Notify(Overflow) accepted")
	}
	if _, err := c.NewNotifier(Event{Source: SourceOverflow}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewNotifier(Overflow) = %v", err)
	}
	if c.Len() != 0 || c.Stats().Lost != 0 {
		t.Fatalf("rejected events left traces: %+v", c.Stats())
	}
}

func TestReserveContextWaitsInOrder(t *testing.T) {
	c := mustNew(t, 4)
	fill, _ := c.Reserve(4)
	if _, err := fill.PostBatch(make([]Event, 4)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	type got struct {
		who int
		r   *Reservation
		err error
	}
	order := make(chan got, 2)
	// A big request first, then a small one: the small one must not pass.
	go func() {
		r, err := c.ReserveContext(ctx, 3)
		order <- got{3, &r, err}
	}()
	waitFor(t, "first waiter", func() bool { return c.roomWaiting.Load() == 1 })
	go func() {
		r, err := c.ReserveContext(ctx, 1)
		order <- got{1, &r, err}
	}()
	waitFor(t, "second waiter", func() bool { return c.roomWaiting.Load() == 2 })
	if _, err := c.Reserve(1); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve while others wait = %v, want ErrFull", err)
	}
	dst := make([]Event, 1)
	for i := 0; i < 2; i++ { // frees 2 slots: not enough for the first waiter
		if c.TryNext(dst) != 1 {
			t.Fatal("take")
		}
	}
	if c.roomWaiting.Load() != 2 {
		t.Fatalf("small waiter jumped the queue")
	}
	c.TryNext(dst) // third slot: the 3-waiter gets in
	g := <-order
	if g.err != nil || g.who != 3 || g.r.Len() != 3 {
		t.Fatalf("first grant %+v", g)
	}
	c.TryNext(dst) // fourth: the 1-waiter
	g2 := <-order
	if g2.err != nil || g2.who != 1 {
		t.Fatalf("second grant %+v", g2)
	}
	g.r.Release()
	g2.r.Release()
	if st := c.Stats(); st.Free != 4 {
		t.Fatalf("free %d", st.Free)
	}
}

func TestReserveContextCancel(t *testing.T) {
	c := mustNew(t, 2)
	full, _ := c.Reserve(2)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := c.ReserveContext(ctx, 1)
		errc <- err
	}()
	waitFor(t, "waiter", func() bool { return c.roomWaiting.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ReserveContext = %v", err)
	}
	if c.roomWaiting.Load() != 0 {
		t.Fatal("cancelled waiter still queued")
	}
	full.Release()
	if st := c.Stats(); st.Free != 2 {
		t.Fatalf("credits leaked: free %d", st.Free)
	}
	// An expired context with room available still succeeds.
	r, err := c.ReserveContext(ctx, 1)
	if err != nil {
		t.Fatalf("ReserveContext with room and a done ctx = %v", err)
	}
	r.Release()
}

// TestProducersConsumersExactlyOnce: N producers post numbered events in
// batches of varying size, M consumers take them in batches; every event
// arrives exactly once, and each consumer sees each producer's events in
// increasing order.
func TestProducersConsumersExactlyOnce(t *testing.T) {
	const (
		producers = 4
		consumers = 3
		perProd   = 20000
	)
	c := mustNew(t, 256)
	ctx := context.Background()
	var seen [producers][]atomic.Uint32
	for p := range seen {
		seen[p] = make([]atomic.Uint32, perProd)
	}
	var delivered atomic.Int64
	done := make(chan struct{})
	var cwg sync.WaitGroup
	failures := make(chan string, consumers)
	for range consumers {
		cwg.Go(func() {
			last := [producers]int64{-1, -1, -1, -1}
			dst := make([]Event, 1+rand.IntN(32))
			for {
				n, err := c.Next(ctx, dst)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					failures <- err.Error()
					return
				}
				for _, ev := range dst[:n] {
					p, seq := int(ev.Cookie>>32), int64(uint32(ev.Cookie))
					if ev.Source != SourceUser || ev.Data.(*int) == nil || *ev.Data.(*int) != p {
						failures <- "bad event " + ev.String()
						return
					}
					if seq <= last[p] {
						failures <- "out of order"
						return
					}
					last[p] = seq
					seen[p][seq].Add(1)
				}
				if delivered.Add(int64(n)) == producers*perProd {
					close(done)
				}
			}
		})
	}
	var pwg sync.WaitGroup
	for p := range producers {
		pwg.Go(func() {
			id := new(int)
			*id = p
			batch := make([]Event, 0, 16)
			for seq := 0; seq < perProd; {
				k := min(1+rand.IntN(16), perProd-seq)
				r, err := c.ReserveContext(ctx, k)
				if err != nil {
					t.Error(err)
					return
				}
				batch = batch[:0]
				for i := range k {
					batch = append(batch, Event{Source: SourceUser, Cookie: uint64(p)<<32 | uint64(seq+i), Data: id})
				}
				if k == 1 {
					err = r.Post(batch[0])
				} else {
					_, err = r.PostBatch(batch)
				}
				if err != nil {
					t.Error(err)
					return
				}
				seq += k
			}
		})
	}
	pwg.Wait()
	if t.Failed() { // a producer gave up: unblock the consumers
		c.Close()
		cwg.Wait()
		return
	}
	select {
	case <-done:
	case f := <-failures:
		t.Fatal(f)
	}
	c.Close()
	cwg.Wait()
	close(failures)
	for f := range failures {
		t.Fatal(f)
	}
	for p := range seen {
		for seq := range seen[p] {
			if n := seen[p][seq].Load(); n != 1 {
				t.Fatalf("producer %d event %d delivered %d times", p, seq, n)
			}
		}
	}
	st := c.Stats()
	if st.Posted != producers*perProd || st.Delivered != producers*perProd || st.Discarded != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNextContext(t *testing.T) {
	c := mustNew(t, 4)
	dst := make([]Event, 4)
	if _, err := c.Next(context.Background(), nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Next(nil) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := c.Next(ctx, dst)
		errc <- err
	}()
	waitFor(t, "parked consumer", func() bool { return c.Stats().Parked == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel = %v", err)
	}
	if c.Stats().Parked != 0 {
		t.Fatal("cancelled consumer still parked")
	}
	// Pending events win over a done context.
	c.TryPost(Event{Source: SourceUser, Cookie: 9})
	if n, err := c.Next(ctx, dst); n != 1 || err != nil || dst[0].Cookie != 9 {
		t.Fatalf("Next with done ctx and an event = %d, %v", n, err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer tcancel()
	if _, err := c.Next(tctx, dst); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on empty channel with deadline = %v", err)
	}
}

// TestHerd: 100 consumers parked, one event: exactly one is woken.
func TestHerd(t *testing.T) {
	const parked = 100
	c := mustNew(t, 256)
	type result struct {
		n   int
		err error
	}
	results := make(chan result, parked)
	for range parked {
		go func() {
			dst := make([]Event, 8)
			n, err := c.Next(context.Background(), dst)
			results <- result{n, err}
		}()
	}
	waitFor(t, "all consumers parked", func() bool { return c.Stats().Parked == parked })
	if err := c.TryPost(Event{Source: SourceUser}); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.n != 1 || r.err != nil {
		t.Fatalf("woken consumer got %d, %v", r.n, r.err)
	}
	st := c.Stats()
	if st.Wakeups != 1 || st.Parked != parked-1 {
		t.Fatalf("one event: wakeups %d, still parked %d; want 1, %d", st.Wakeups, st.Parked, parked-1)
	}
	// Nobody else was woken: the rest leave only because of Close.
	c.Close()
	for range parked - 1 {
		if r := <-results; !errors.Is(r.err, ErrClosed) || r.n != 0 {
			t.Fatalf("after Close: %d, %v", r.n, r.err)
		}
	}
	if st := c.Stats(); st.Wakeups != 1 || st.Parked != 0 {
		t.Fatalf("after Close: wakeups %d parked %d", st.Wakeups, st.Parked)
	}
}

// TestWakeOncePerBatch: a batch posted to a parked consumer wakes it once.
func TestWakeOncePerBatch(t *testing.T) {
	c := mustNew(t, 128)
	got := make(chan int)
	go func() {
		dst := make([]Event, 64)
		n, _ := c.Next(context.Background(), dst)
		got <- n
	}()
	waitFor(t, "parked consumer", func() bool { return c.Stats().Parked == 1 })
	r, _ := c.Reserve(64)
	if _, err := r.PostBatch(make([]Event, 64)); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 64 {
		t.Fatalf("woken consumer took %d, want the whole batch", n)
	}
	if w := c.Stats().Wakeups; w != 1 {
		t.Fatalf("wakeups %d, want 1", w)
	}
}

// TestRunningConsumerNotWoken: with no consumer parked, posting wakes
// nobody and costs no wake-up.
func TestRunningConsumerNotWoken(t *testing.T) {
	c := mustNew(t, 64)
	dst := make([]Event, 64)
	for i := range 1000 {
		if err := c.TryPost(Event{Source: SourceUser, Cookie: uint64(i)}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			if n := c.TryNext(dst); n != 10 {
				t.Fatalf("took %d", n)
			}
		}
	}
	if st := c.Stats(); st.Wakeups != 0 || st.Parks != 0 {
		t.Fatalf("wakeups %d parks %d with a running consumer", st.Wakeups, st.Parks)
	}
}

// TestChainWake: more events than one consumer's batch, several consumers
// parked: the woken consumer hands on to exactly as many others as there
// are batches left.
func TestChainWake(t *testing.T) {
	c := mustNew(t, 64)
	const consumers = 4
	got := make(chan int, consumers)
	for range consumers {
		go func() {
			dst := make([]Event, 2)
			n, err := c.Next(context.Background(), dst)
			if err != nil {
				n = -1
			}
			got <- n
		}()
	}
	waitFor(t, "parked consumers", func() bool { return c.Stats().Parked == consumers })
	r, _ := c.Reserve(4)
	if _, err := r.PostBatch(make([]Event, 4)); err != nil {
		t.Fatal(err)
	}
	total := <-got + <-got
	if total != 4 {
		t.Fatalf("two consumers took %d", total)
	}
	c.Close()
	for range consumers - 2 {
		if n := <-got; n != -1 {
			t.Fatalf("a third consumer got %d events", n)
		}
	}
	if w := c.Stats().Wakeups; w != 2 {
		t.Fatalf("wakeups %d, want 2 (one per batch)", w)
	}
}

func TestCloseWakesAndDiscards(t *testing.T) {
	c := mustNew(t, 16)
	const waiters = 5
	errs := make(chan error, waiters)
	// Consumers cannot be parked while events are pending, so park them
	// first, then fill the channel via reservations held back.
	for range waiters {
		go func() {
			_, err := c.Next(context.Background(), make([]Event, 1))
			errs <- err
		}()
	}
	waitFor(t, "parked consumers", func() bool { return c.Stats().Parked == waiters })
	c.Close()
	for range waiters {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Fatalf("parked consumer got %v", err)
		}
	}

	c2 := mustNew(t, 16)
	bufs := make([]*int, 5)
	r, _ := c2.Reserve(6)
	for i := range bufs {
		bufs[i] = new(int)
		*bufs[i] = i
		if err := r.Post(Event{Source: SourceNetOp, Buffer: bufs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	roomErr := make(chan error)
	go func() {
		_, err := c2.ReserveContext(context.Background(), 16)
		roomErr <- err
	}()
	waitFor(t, "room waiter", func() bool { return c2.roomWaiting.Load() == 1 })
	var back []*int
	n := c2.CloseFunc(func(ev Event) { back = append(back, ev.Buffer.(*int)) })
	if n != 5 || len(back) != 5 {
		t.Fatalf("CloseFunc discarded %d, handed back %d; want 5", n, len(back))
	}
	for i, b := range back {
		if b != bufs[i] {
			t.Fatalf("buffer %d handed back out of order", i)
		}
	}
	if err := <-roomErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("room waiter got %v", err)
	}
	if n := c2.CloseFunc(func(Event) { t.Fatal("second close saw an event") }); n != 0 {
		t.Fatalf("second CloseFunc = %d", n)
	}
	if st := c2.Stats(); st.Discarded != 5 {
		t.Fatalf("Discarded %d", st.Discarded)
	}
	// Everything after Close.
	if err := r.Post(Event{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Post after Close = %v", err)
	}
	if _, err := c2.Reserve(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reserve after Close = %v", err)
	}
	if _, err := c2.ReserveContext(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReserveContext after Close = %v", err)
	}
	if err := c2.TryPost(Event{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryPost after Close = %v", err)
	}
	if c2.Notify(Event{}) {
		t.Fatal("Notify after Close")
	}
	if _, err := c2.Next(context.Background(), make([]Event, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if c2.TryNext(make([]Event, 1)) != 0 || !c2.Closed() {
		t.Fatal("TryNext after Close")
	}
	if c2.Stats().Lost != 0 {
		t.Fatal("notifications after Close counted as lost")
	}
}

// TestCloseRacingProducers: producers posting while Close runs; every
// event is delivered, discarded (and handed to the closer), or refused
// with ErrClosed (and kept by its producer) — exactly one of the three.
func TestCloseRacingProducers(t *testing.T) {
	for round := range 20 {
		c, _ := New(Config{Capacity: 64})
		var posted, refused, delivered atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 3 {
			wg.Go(func() {
				r, err := c.ReserveContext(context.Background(), 64)
				if err != nil {
					return
				}
				for {
					if r.Len() == 0 {
						return
					}
					if err := r.Post(Event{Source: SourceUser}); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						refused.Add(1)
						return
					}
					posted.Add(1)
				}
			})
		}
		wg.Go(func() {
			dst := make([]Event, 8)
			for {
				n, err := c.Next(context.Background(), dst)
				delivered.Add(int64(n))
				if err != nil {
					close(stop)
					return
				}
			}
		})
		for round > 0 && posted.Load() < int64(round) {
			yield()
		}
		discarded := c.CloseFunc(nil)
		wg.Wait()
		<-stop
		if got := delivered.Load() + int64(discarded); got != posted.Load() {
			t.Fatalf("round %d: posted %d, delivered %d + discarded %d", round, posted.Load(), delivered.Load(), discarded)
		}
	}
}

func TestNotifyOverflowExact(t *testing.T) {
	c := mustNew(t, 8)
	for i := range 20 {
		ok := c.Notify(Event{Source: SourceUser, Cookie: uint64(i)})
		if ok != (i < 8) {
			t.Fatalf("Notify %d = %v", i, ok)
		}
	}
	dst := make([]Event, 4)
	n := c.TryNext(dst)
	if n != 4 || dst[0].Source != SourceOverflow || dst[0].Result != 12 {
		t.Fatalf("first batch %v", dst[:n])
	}
	for i, ev := range dst[1:n] {
		if ev.Cookie != uint64(i) {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	// The Overflow event is out of band: reported once, not again.
	n = c.TryNext(make([]Event, 16))
	if n != 5 {
		t.Fatalf("second batch %d, want the remaining 5", n)
	}
	st := c.Stats()
	if st.Lost != 12 || st.Overflows != 1 || st.Delivered != 8 {
		t.Fatalf("stats %+v", st)
	}
}

// TestOverflowWithEmptyRing: all credits reserved by pending operations,
// ring empty: a lost notification still reaches a parked consumer.
func TestOverflowWithEmptyRing(t *testing.T) {
	c := mustNew(t, 4)
	r, _ := c.Reserve(4)
	defer r.Release()
	got := make(chan Event)
	go func() {
		dst := make([]Event, 4)
		n, err := c.Next(context.Background(), dst)
		if err != nil || n != 1 {
			got <- Event{}
			return
		}
		got <- dst[0]
	}()
	waitFor(t, "parked consumer", func() bool { return c.Stats().Parked == 1 })
	if c.Notify(Event{Source: SourceTimer}) {
		t.Fatal("Notify found room")
	}
	if ev := <-got; ev.Source != SourceOverflow || ev.Result != 1 {
		t.Fatalf("consumer got %v, want Overflow with 1", ev)
	}
}

// TestNotifierAccountingExact: concurrent notifiers and plain Notify calls
// against a small channel and a slow consumer; the notifications delivered
// (as events, merged counts) plus those reported lost equal those made.
func TestNotifierAccountingExact(t *testing.T) {
	c := mustNew(t, 8)
	const (
		firers   = 4
		perFirer = 5000
	)
	notifiers := make([]*Notifier, firers)
	for i := range notifiers {
		var err error
		if notifiers[i], err = c.NewNotifier(Event{Source: SourceTimer, Cookie: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Hold some credits so the ring is tight.
	hold, _ := c.Reserve(4)
	var made atomic.Int64
	var wg sync.WaitGroup
	for i := range firers {
		wg.Go(func() {
			for j := range perFirer {
				if j%3 == 0 {
					c.Notify(Event{Source: SourceUser})
				} else {
					notifiers[i].Notify(uint16(1 << (j % 4)))
				}
				made.Add(1)
			}
		})
	}
	var accounted int64
	var opBits uint16
	dst := make([]Event, 3)
	take := func() {
		n := c.TryNext(dst)
		for _, ev := range dst[:n] {
			switch ev.Source {
			case SourceOverflow:
				accounted += ev.Result
			case SourceUser:
				accounted++
			case SourceTimer:
				if ev.Result < 1 {
					t.Fatalf("coalesced event with count %d", ev.Result)
				}
				accounted += ev.Result
				opBits |= ev.Op
			}
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
loop:
	for {
		select {
		case <-finished:
			break loop
		default:
			take()
		}
	}
	for c.pending() {
		take()
	}
	hold.Release()
	st := c.Stats()
	if accounted != made.Load() {
		t.Fatalf("made %d notifications, accounted for %d (stats %+v)", made.Load(), accounted, st)
	}
	if st.Lost == 0 || st.Coalesced == 0 {
		t.Fatalf("test did not exercise loss and coalescing: %+v", st)
	}
	if opBits != 0xf {
		t.Fatalf("merged op bits %#x, want 0xf", opBits)
	}
}

func TestNotifierCoalesces(t *testing.T) {
	c := mustNew(t, 4)
	n, _ := c.NewNotifier(Event{Source: SourceSignal, Op: 0x100, Data: "sig"})
	n.Notify(1)
	n.NotifyN(5, 2)
	n.Notify(4)
	if c.Len() != 1 {
		t.Fatalf("queued %d events for one notifier", c.Len())
	}
	dst := make([]Event, 4)
	if k := c.TryNext(dst); k != 1 || dst[0].Result != 7 || dst[0].Op != 0x107 || dst[0].Data != "sig" {
		t.Fatalf("coalesced event %v", dst[:k])
	}
	n.Notify(0)
	if k := c.TryNext(dst); k != 1 || dst[0].Result != 1 || dst[0].Op != 0x100 {
		t.Fatalf("after take, a new event: %v", dst[:k])
	}
	if !n.NotifyN(0, 0) || c.Len() != 0 {
		t.Fatal("NotifyN(0) queued something")
	}
	if st := c.Stats(); st.Coalesced != 6 {
		t.Fatalf("coalesced %d, want 6", st.Coalesced)
	}
}

func TestReservationCopyDetected(t *testing.T) {
	c := mustNew(t, 2)
	r, _ := c.Reserve(2)
	rp := &r
	copied := Reservation{ch: rp.ch, n: rp.n} // what a copy does
	if err := r.Post(Event{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Post(Event{}); err != nil {
		t.Fatal(err)
	}
	if err := copied.Post(Event{}); !errors.Is(err, ErrFull) {
		t.Fatalf("overspent credit = %v, want ErrFull", err)
	}
}

func TestReserveFunc(t *testing.T) {
	c := mustNew(t, 4)
	called := 0
	never := func(*Reservation, error) { called++ }
	r, ok := c.ReserveFunc(2, never)
	if !ok || r.Len() != 2 || r.Channel() != c {
		t.Fatalf("with room: %v, %d", ok, r.Len())
	}
	r.Release()
	for _, n := range []int{0, -1, 5} {
		if _, ok := c.ReserveFunc(n, never); ok {
			t.Fatalf("ReserveFunc(%d) succeeded", n)
		}
	}
	if _, ok := c.ReserveFunc(1, nil); ok || called != 0 {
		t.Fatal("invalid requests queued or called fn")
	}

	full, _ := c.Reserve(4)
	full.PostBatch(make([]Event, 3))
	type grant struct {
		r   Reservation
		err error
	}
	got := make(chan *grant, 1)
	if _, ok := c.ReserveFunc(2, func(r *Reservation, err error) {
		g := &grant{err: err}
		g.r, _ = r.Split(r.Len())
		got <- g
	}); ok {
		t.Fatal("ReserveFunc succeeded on a full channel")
	}
	if _, err := c.Reserve(1); !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve passed a queued ReserveFunc: %v", err)
	}
	full.Release()              // 1 credit back: not enough
	c.TryNext(make([]Event, 1)) // 2 free now
	select {
	case g := <-got:
		if g.err != nil || g.r.Len() != 2 {
			t.Fatalf("grant: %d credits, %v", g.r.Len(), g.err)
		}
		g.r.Release()
	default:
		t.Fatal("fn not called when room appeared")
	}

	// Queued when the channel closes, and after it closed.
	hold, _ := c.Reserve(c.Stats().Free)
	defer hold.Release()
	c.ReserveFunc(4, func(r *Reservation, err error) { got <- &grant{err: err} })
	c.Close()
	if g := <-got; !errors.Is(g.err, ErrClosed) {
		t.Fatalf("queued at Close: %v", g.err)
	}
	c.ReserveFunc(1, func(r *Reservation, err error) { got <- &grant{err: err} })
	select {
	case g := <-got:
		if !errors.Is(g.err, ErrClosed) {
			t.Fatalf("after Close: %v", g.err)
		}
	default:
		t.Fatal("fn not called for a closed channel")
	}
}
