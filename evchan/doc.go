// Package evchan implements event channels: one bounded, pollable queue of
// fixed-size events for everything a program waits on — completions of
// socket and file operations, timers, signals, locks, message queues and
// fd readiness — after §4 and §7 of Ulrich Drepper's "The Need for
// Asynchronous, Zero-Copy Network I/O" (OLS 2006).
//
// evchan owns the Event type, the Channel (its ring, completion credits,
// consumer wake-ups and eventfd) and the event sources that are not
// sockets. It does not own sockets, buffers or the network stack, and
// imports neither gVisor nor any other zcnet package: api posts socket
// completions here, a file-I/O engine posts file completions, and both
// hand their buffers over in Event.Buffer.
//
// # The paper's interface
//
//	paper                              evchan
//	ec_create()                        New(Config{Capacity: n})
//	ec_destroy(ec)                     (*Channel).Close, CloseFunc (hands back discarded events)
//	ec_to_fd(ec)                       (*Channel).FD: an eventfd, readable while events are pending
//	ec_next_event(ec, &ev)             (*Channel).Next(ctx, dst) (batch, blocks); TryNext(dst) (never blocks)
//	event_data_t                       Event, 64 bytes, copied through the ring
//	  which kind of event              Event.Source (SourceNetOp, SourceTimer, …)
//	  which operation                  Event.Op
//	  result, error                    Event.Result, Event.Errno
//	  void *data                       Event.Data (any), Event.Cookie (uint64)
//	  the received buffer              Event.Buffer (ownership passes to the consumer)
//	queue limit                        Config.Capacity; completions reserve slots: Reserve, ReserveContext, ReserveFunc
//	overflow signal, out of band       a SourceOverflow event at the head of the next batch
//	mq_notify(…, SIGEV_EC)             (*MsgQueue[T]).Notify, (*PosixMQ).Notify
//	sem_await(sem, ec, data)           (*Sem).Await(ec, data)
//	pthread_mutex_alock(m, ec, data)   (*Mutex).ALock(ec, data); (*RWMutex).ALock, ARLock
//	timers, signals                    NewTimer(ec, d, period, data); NotifySignal(ec, data, sigs…)
//	sockets, pipes, any fd             WatchFD(fd, events, ec, data)
//
// # Life of a completion
//
//  1. Submission: the submitter reserves the completion's slot, one credit
//     per future event (Reserve fails at once with ErrFull, ReserveContext
//     waits, ReserveFunc calls back). A producer of many completions (a
//     stack worker) reserves a batch and Splits or Releases what it does
//     not use.
//  2. Completion: Post (or PostBatch) spends the credit; it cannot fail for
//     lack of room, only with ErrClosed, in which case the poster keeps
//     the event's Buffer. It makes no system call and no allocation: a
//     claim on the ring's tail, a 64-byte copy, a publishing store, and
//     two atomic loads to decide that no consumer needs waking.
//  3. Wake-up: if a consumer is parked in Next and none is being woken
//     already, one is woken; if an fd reader exists and the channel was
//     empty, the eventfd is raised.
//  4. Consumption: Next or TryNext copies up to len(dst) events out with
//     one claim and one release, oldest first. The consumer takes
//     ownership of each event's Buffer.
//
// Events from one producer goroutine arrive in the order it posted them;
// with several consumers, each sees each producer's events in that order.
//
// # Completions never drop; notifications coalesce, then overflow
//
// A completion of a submitted operation is never dropped: its slot was
// reserved before the operation started, so a full channel becomes
// backpressure on submitters (ErrFull, or a wait) rather than loss.
// Unsolicited events (timer expiries, signals, readiness) cannot reserve
// ahead. They take a free slot if there is one; a source whose event is
// still queued merges further firings into it (Notifier: Result counts
// them, Op ORs their bits); and when there is no free slot they are
// counted, and the consumer's next batch starts with one SourceOverflow
// event whose Result is that count. That event needs no slot. Every
// notification is accounted for exactly once: as an event, inside a
// merged event's Result, or inside an Overflow event's Result.
//
// Sem, Mutex and RWMutex acquisitions and message-queue notifications are
// submitted operations: Await, ALock and Notify reserve their slot when
// called. An event that carries a lock hold and is discarded by Close
// releases the hold.
//
// # Wake-ups
//
// A consumer that is running is never woken: producers look at the count
// of parked consumers (one atomic load) and stop there when it is zero. A
// parked consumer is woken once per batch: the producer that wakes it sets
// a flag that stops other producers from waking anyone until that consumer
// has looked at the ring. With many consumers parked, one event wakes
// exactly one; a woken consumer that leaves events behind wakes the next.
// Stats().Wakeups counts wake-ups, Stats().Parks parkings. Next spins
// briefly (a few yields) before it parks.
//
// # The pollable fd
//
// FD returns an eventfd, created on first use, whose counter is non-zero
// exactly while events are pending (queued, or an Overflow event owed). It
// is level-triggered for poll, select and epoll without EPOLLET: readable
// as long as events are pending. With EPOLLET it gives one edge each time
// the channel goes from nothing pending to something pending, so a
// consumer woken by an edge must call TryNext until it returns fewer than
// len(dst). How the channel knows an fd reader exists: calling FD is the
// registration, and it lasts for the channel's life. Before it, the post
// path never makes a system call; after it, only the post that makes the
// channel non-empty writes the eventfd and only the take that empties it
// reads it. Do not read, write or close the fd yourself; Close closes it.
//
// # Sources
//
// Timer (time.AfterFunc, coalescing periodic expiries with timerfd-style
// counts), SignalWatch (os/signal, one goroutine per watch), Sem, Mutex
// and RWMutex (FIFO queues mixing blocking and asynchronous waiters),
// MsgQueue[T] (in-process, bounded, with mq_notify semantics), PosixMQ
// (Linux message queues opened with mq_open; the queue descriptor is an
// fd and is watched with epoll, so messages sent by other processes
// arrive as events) and FDWatch (edge-triggered readiness of any fd, one
// shared epoll goroutine per process). Sources with goroutines stop them
// when stopped or when their channel closes; the epoll goroutine exits
// with the last watch.
//
// # Not supported
//
//   - A pending Await, ALock or ARLock cannot be withdrawn; if its channel
//     closes first, the request is skipped when its turn comes.
//   - The fd reader registration cannot be undone short of Close.
//   - WatchFD, PosixMQ and FD need Linux; elsewhere they return
//     ErrUnsupported (the rest of the package is portable).
//   - Consumers are served LIFO (warmest first), not fairly.
//
// # Performance
//
// bench_test.go measures events per second from P producers to one
// consumer, each producer posting `batch` events per reservation and the
// consumer taking up to `batch` per call, beside two baselines: a buffered
// Go channel of the same capacity carrying the same Event, and one eventfd
// write plus one blocking read per event. The README gives the figures and
// the machine. Batched, evchan moves several times the events of either
// baseline: a batch costs each side a handful of atomic operations however
// many events it holds, and no allocation. At batch 1 the two sides
// exchange every event through shared cache lines, as a Go channel does,
// and the two are close.
package evchan
