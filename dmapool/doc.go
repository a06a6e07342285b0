// Package dmapool provides the memory that zero-copy I/O needs: regions
// mapped outside the Go heap, populated up front, locked in RAM, optionally
// backed by huge pages or by a memfd that another process can map, and a
// lock-free slot allocator that carves buffers out of them and hands them
// out as small, checked handles.
//
// It owns the regions, the allocator and the Buf handles with their
// validation. It knows nothing about packets, sockets or rings: the ring
// link, the socket API and TX reservations build on it.
//
// # The paper, mapped
//
// Drepper's "The Need for Asynchronous, Zero-Copy Network I/O" (OLS 2006),
// §3 and Figure 4, asks for memory that a device or a peer can write into,
// that the application carves buffers from, and that the kernel can neither
// move nor page out:
//
//	paper                      here
//	dma_alloc                  New(Config) for the first regions, Pool.Grow for more at run
//	                           time ("react to unexpected traffic by adding buffers")
//	MAP_DMA, its flags         Config.Pin (mlock: require / prefer / off), Config.HugePages
//	                           (hugetlb, else transparent huge pages, else normal pages),
//	                           Config.Shared (a sealed memfd per region)
//	dma_free                   Pool.Close: unmaps only when no buffer is outstanding,
//	                           else says how many are (ErrBusy)
//	sio_reserve                Pool.Reserve (fails fast with ErrExhausted) and
//	                           Pool.ReserveContext (waits for a release or Grow)
//	sio_release                Buf.Release, or Pool.Release, which also refuses
//	                           another pool's handle
//	Figure 4's bitmap          one atomic word per slot (a free bit widened to carry a
//	                           generation and the length), a cover bitmap for runs, and a
//	                           per-group "full" bitmap; see alloc.go
//
// Where the paper returns a pointer, Reserve returns a Buf: a value of 24
// bytes (pool, reservation id, offset, length) with no heap object behind
// it. Its reservation id carries the generation of the reservation's first
// slot, so a double release, a release after reuse, a forged handle (the
// zero Buf, random fields) and use after release are detected and return
// ErrInvalidBuffer; they never panic and never disturb the allocator.
// Buf.Bytes gives the memory (nil for an invalid handle); Split and Trim
// hand on parts of a buffer, each part released on its own, the slots
// returning with the last part.
//
// # Memory
//
// Each region is one mmap: 1. hugetlb pages (MAP_HUGETLB or MFD_HUGETLB)
// when reserved; 2. else normal pages aligned to the huge page size and
// advised MADV_HUGEPAGE when THP is enabled for that kind of memory; 3.
// MADV_DONTFORK; 4. mlock per Config.Pin; 5. populated (MADV_POPULATE_WRITE,
// or one write per page). When mlock fails, PinRequire returns ErrPin with
// RLIMIT_MEMLOCK, the bytes asked and how to raise the limit; PinPrefer,
// the default, logs one warning per pool and goes on unpinned (Pinned
// reports false).
// Shared regions are memfds sealed against shrinking and growing, so a
// peer cannot turn our accesses into SIGBUS; Regions gives their fds and
// sizes, MapShared maps one in the peer, Locate says where a buffer lies.
// Regions also gives each region's address, for registering the memory
// with the kernel (io_uring fixed buffers); Buf.Pool names a handle's pool.
//
// # Fork
//
// The paper worries about fork: after fork, the parent's pages become
// copy-on-write, and a device that goes on writing into the physical pages
// it was given writes into memory the parent no longer sees. In Go this
// does not arise: a Go program cannot fork without exec (the runtime is
// multithreaded and cannot go on in a forked child), and syscall.ForkExec,
// which os/exec uses, runs only a short allocation-free sequence of system
// calls in the child before exec replaces its address space; on Linux it
// clones with CLONE_VFORK|CLONE_VM (unless a new user namespace is asked
// for), so the parent's pages are not even marked copy-on-write. Regions are still marked MADV_DONTFORK, for cgo
// code that calls fork(2) directly.
//
// # Allocator and scaling
//
// A reservation is rounded up to whole slots (Config.SlotSize, default
// 2 KiB) and takes contiguous slots of one region, up to MaxRegionSize. A
// one-slot reservation is one compare-and-swap on the slot's word and its
// release is another; a run of k slots claims its cover bits with one
// atomic OR per 64 slots. Each goroutine starts searching at a home group
// of 64 slots picked by hashing its stack address, so goroutines on
// different cores touch different cache lines and the common path writes
// no shared memory: it needs no per-P cache, and has none to drain or
// rebalance. Stats walks the slot words (SlotsInUse is exact on a quiet
// pool); HighWater is sampled (see Stats).
//
// # Performance
//
// bench_test.go measures Reserve+Release of one buffer beside its
// baselines, a sync.Pool of []byte and make (which also zeroes and leaves
// work for the GC), on one goroutine and on parallel ones; the README gives
// the figures and the machine they came from. The one-slot path is two
// compare-and-swaps on a word no other core is likely to touch, with no
// lock and no per-P cache, so it scales with goroutines. A 64 KiB run costs
// more than a slot (it reads 32 slot words and sets cover bits) but takes
// no atomic operation per slot.
//
// # Not supported
//
//   - NUMA placement, and hugetlb page sizes other than the default.
//   - Shrinking: regions stay until Close; memory is never given back early.
//   - A reservation spanning two regions, or larger than MaxRegionSize.
//   - Non-Linux platforms: New and MapShared return ErrUnsupported.
package dmapool
