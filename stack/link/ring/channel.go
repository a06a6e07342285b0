package ring

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// counters are one side's statistics; all monotonic.
type counters struct {
	txFrames, txBytes, txCopied, txDropNoFrame, txDropNoPeer, txDropTooBig atomic.Uint64
	rxFrames, rxBytes, rxCopied, rxHeader, rxDropBad                       atomic.Uint64
	badOffset, badLength, badFlags, notOwned, idxBack, idxOver             atomic.Uint64
	kicks, wakeups, peersUp, peersLost, refused                            atomic.Uint64
}

// Stats counts what crossed one side of a ring link. All fields are monotonic.
type Stats struct {
	TxFrames, TxBytes uint64 // frames and bytes published to the other side
	TxCopiedBytes     uint64 // bytes serialised into shared frames (the one copy a device write makes)
	TxDropsNoFrame    uint64 // no free frame of ours: the other side is slow (as a full NIC ring)
	TxDropsNoPeer     uint64 // nobody connected
	TxDropsTooBig     uint64 // packet larger than a frame
	RxFrames, RxBytes uint64 // frames taken from the ring and delivered
	RxCopiedBytes     uint64 // bytes copied from shared frames into stack views
	RxHeaderBytes     uint64 // bytes copied again by the header split
	RxDropsBadFrame   uint64 // frames too short, not for us, or nothing attached
	// Frames for a listening socket refused by admission (link.Admission)
	// over their class's budget: SYNs, and other segments (every RST for
	// a listener among them).
	RxDropsFloodSYN, RxDropsFloodCtl uint64
	// RxDropsStale counts segments for a listener of a connection the
	// stack has closed (link.Admission's rule 10).
	RxDropsStale uint64

	// Rejected untrusted input, each counted and skipped.
	BadOffset      uint64 // descriptor offset outside the sender's frames
	BadLength      uint64 // length zero or over the frame
	BadFlags       uint64 // reserved flags set
	NotOwned       uint64 // frame the sender does not own (already ours, or never lent)
	IndexBackwards uint64 // a ring index moved backwards
	IndexOverrun   uint64 // a ring index jumped past the ring

	Kicks, Wakeups     uint64 // eventfd writes sent; sleeps ended by one
	PeersUp, PeersLost uint64 // sessions started and ended (peer closed or died)
	HandshakesRefused  uint64 // peers refused (version or size mismatch)
}

func (c *counters) snapshot() Stats {
	return Stats{
		TxFrames: c.txFrames.Load(), TxBytes: c.txBytes.Load(), TxCopiedBytes: c.txCopied.Load(),
		TxDropsNoFrame: c.txDropNoFrame.Load(), TxDropsNoPeer: c.txDropNoPeer.Load(), TxDropsTooBig: c.txDropTooBig.Load(),
		RxFrames: c.rxFrames.Load(), RxBytes: c.rxBytes.Load(), RxCopiedBytes: c.rxCopied.Load(),
		RxHeaderBytes: c.rxHeader.Load(), RxDropsBadFrame: c.rxDropBad.Load(),
		BadOffset: c.badOffset.Load(), BadLength: c.badLength.Load(), BadFlags: c.badFlags.Load(),
		NotOwned: c.notOwned.Load(), IndexBackwards: c.idxBack.Load(), IndexOverrun: c.idxOver.Load(),
		Kicks: c.kicks.Load(), Wakeups: c.wakeups.Load(), PeersUp: c.peersUp.Load(), PeersLost: c.peersLost.Load(),
		HandshakesRefused: c.refused.Load(),
	}
}

func (c *counters) reject(err error) {
	switch err {
	case errBadOffset:
		c.badOffset.Add(1)
	case errBadLength:
		c.badLength.Add(1)
	case errBadFlags:
		c.badFlags.Add(1)
	default:
		c.notOwned.Add(1)
	}
}

// ringView is one ring in the shared segment. Our own index is kept
// privately and only stored to shared memory, never read back from it, so a
// peer overwriting it changes nothing for us.
type ringView struct {
	head, tail *atomic.Uint32
	descs      []byte
	mask       uint32
	lastBad    uint32 // the last rejected index value, counted once
}

func newRingView(mem []byte, l layout, k int) ringView {
	off := l.ringOff(k)
	return ringView{
		head:  word32(mem, off+ringHeadOff),
		tail:  word32(mem, off+ringTailOff),
		descs: mem[off+ringDescOff : off+ringDescOff+int(l.slots)*descSize],
		mask:  l.slots - 1,
	}
}

func (r *ringView) slot(i uint32) []byte {
	o := int(i&r.mask) * descSize
	return r.descs[o : o+descSize]
}

// channel is one side's view of a session: it produces on one avail ring
// and one used ring, consumes the other two. Frames [mine, mine+frames) are
// ours to fill; [theirs, theirs+frames) are the other side's.
type channel struct {
	mem  []byte
	lay  layout
	ctr  *counters
	mine uint32 // first frame index of our partition
	thrs uint32 // first frame index of theirs

	myWait, peerWait *atomic.Uint32
	myEv, peerEv     int // eventfds (owned by the Link or Peer): we sleep on myEv, kick peerEv

	// Producer state, guarded by txMu (WritePackets may be called
	// concurrently).
	txMu       sync.Mutex
	outAvail   ringView // we produce
	outHead    uint32   // our private head of outAvail
	outUsed    ringView // we consume (our frames coming back)
	outUsedTl  uint32   // our private tail of outUsed
	outUsedHd  uint32   // last valid head seen on outUsed
	free       []uint32 // our free frames
	lent       []bool   // lent[i-mine]: frame i is with the other side
	outPending bool     // published since the last kick check
	kickOwed   bool     // a lazy flush skipped its kick; the receive loop kicks before it sleeps
	faultSeq   uint32   // InjectFault's count, to vary the bad values

	// Consumer state, guarded by rxMu: the receive goroutine holds it for
	// a batch; InjectFault, writing as a hostile peer, takes it too.
	rxMu      sync.Mutex
	inAvail   ringView // we consume
	inTail    uint32
	inHead    uint32 // last valid head seen on inAvail
	inUsed    ringView
	inUsedHd  uint32   // our private head of inUsed
	inUsedTl  uint32   // last valid tail seen on inUsed
	usedFrame []uint32 // usedFrame[k&mask]: the frame we returned in inUsed's slot k
	// held[i-thrs]: frame i of theirs is ours until they take it back:
	// from its descriptor on inAvail until their tail on inUsed passes
	// the slot we returned it in. A descriptor naming a held frame is a
	// frame reused before it came back, and is refused.
	held []bool

	rxActive atomic.Bool // the receive loop is running (not asleep): it will settle kickOwed
	closed   atomic.Bool
	evMu     sync.RWMutex // held for reading while asleep on myEv; for writing to close the eventfds
	evClosed bool         // +checklocks:evMu
	dead     bool         // +checklocks:txMu; set at teardown, after which nothing is published
}

// newChannel builds one side. stackSide picks which rings and partition are
// ours. The caller has zeroed a fresh segment (stack side) or mapped one.
func newChannel(mem []byte, l layout, ctr *counters, stackSide bool, myEv, peerEv int) *channel {
	c := &channel{mem: mem, lay: l, ctr: ctr, myEv: myEv, peerEv: peerEv}
	oa, ou, ia, iu := ringTXAvail, ringTXUsed, ringRXAvail, ringRXUsed
	mw, pw := offStackWait, offPeerWait
	c.mine, c.thrs = 0, l.frames
	if !stackSide {
		oa, ou, ia, iu = ringRXAvail, ringRXUsed, ringTXAvail, ringTXUsed
		mw, pw = offPeerWait, offStackWait
		c.mine, c.thrs = l.frames, 0
	}
	c.outAvail, c.outUsed = newRingView(mem, l, oa), newRingView(mem, l, ou)
	c.inAvail, c.inUsed = newRingView(mem, l, ia), newRingView(mem, l, iu)
	c.myWait, c.peerWait = word32(mem, mw), word32(mem, pw)
	c.free = make([]uint32, 0, l.frames)
	for i := l.frames; i > 0; i-- {
		c.free = append(c.free, c.mine+i-1)
	}
	c.lent = make([]bool, l.frames)
	c.held = make([]bool, l.frames)
	c.usedFrame = make([]uint32, l.slots)
	return c
}

// consumerHead loads an untrusted producer index and checks it: it may not
// move backwards from the last valid value nor run more than a ring ahead of
// our tail. An invalid value is counted and ignored (last valid one kept).
func (c *channel) consumerHead(r *ringView, last *uint32, tail uint32) uint32 {
	h := r.head.Load()
	if h == *last {
		return h
	}
	if int32(h-*last) < 0 {
		c.countBad(r, h, &c.ctr.idxBack)
		return *last
	}
	if h-tail > r.mask+1 {
		c.countBad(r, h, &c.ctr.idxOver)
		return *last
	}
	*last = h
	return h
}

// countBad counts a rejected index value once, not on every poll that
// sees it again.
func (c *channel) countBad(r *ringView, v uint32, ctr *atomic.Uint64) {
	if v != r.lastBad {
		r.lastBad = v
		ctr.Add(1)
	}
}

// producerTail is consumerHead's mirror for the consumer's index on a ring
// we produce: it may move only forward and never past our head.
func (c *channel) producerTail(r *ringView, last *uint32, head uint32) uint32 {
	t := r.tail.Load()
	if t == *last {
		return t
	}
	if int32(t-*last) < 0 {
		c.countBad(r, t, &c.ctr.idxBack)
		return *last
	}
	if t-*last > head-*last {
		c.countBad(r, t, &c.ctr.idxOver)
		return *last
	}
	*last = t
	return t
}

// reclaimLocked takes back frames the other side returned on outUsed. A
// return names a frame as it was lent, at its start (sendLocked lends
// nothing else): one naming a lent frame elsewhere can only be forged,
// and is refused without ending the loan.
func (c *channel) reclaimLocked() {
	h := c.consumerHead(&c.outUsed, &c.outUsedHd, c.outUsedTl)
	for ; c.outUsedTl != h; c.outUsedTl++ {
		d := getDesc(c.outUsed.slot(c.outUsedTl))
		i, err := c.lay.validate(d, c.mine)
		if err == nil && (!c.lent[i-c.mine] || d.off != uint64(c.lay.frameOff(i))) {
			err = errNotOwned
		}
		if err != nil {
			c.ctr.reject(err)
			continue
		}
		c.lent[i-c.mine] = false
		c.free = append(c.free, i)
	}
	c.outUsed.tail.Store(c.outUsedTl)
}

// tryReclaim takes back returned frames unless a sender is busy (it will
// reclaim itself), so frames come home, and forged returns are caught,
// while this side sends nothing.
func (c *channel) tryReclaim() {
	if c.txMu.TryLock() {
		c.reclaimLocked()
		c.txMu.Unlock()
	}
}

// errNoFrame: all our frames are lent to the other side.
var errNoFrame = errors.New("ring: no free frame")

// sendLocked fills one of our frames with fill (n bytes, n ≤ frameSize) and
// publishes it. The kick is left to flushLocked so a batch costs one.
func (c *channel) sendLocked(n int, fill func([]byte)) error {
	// Out of frames: poll the used ring a bounded while (the other side
	// returns frames as soon as it has copied them, before it delivers),
	// then drop. Never wait unbounded: two stacks whose receive loops both
	// transmit could wait on each other.
	for i := 0; len(c.free) == 0; i++ {
		c.reclaimLocked()
		if len(c.free) > 0 {
			break
		}
		if i == txWaitRounds {
			return errNoFrame
		}
		runtime.Gosched()
	}
	// Frames we own never exceed the ring's slots (frames ≤ slots), so a
	// free frame always has a slot; a consumer whose tail lags is bounded
	// by the frames we have lent.
	i := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	off := c.lay.frameOff(i)
	fill(c.mem[off : off+n])
	putDesc(c.outAvail.slot(c.outHead), desc{off: uint64(off), len: uint32(n)})
	c.lent[i-c.mine] = true
	c.outHead++
	c.outAvail.head.Store(c.outHead)
	c.outPending = true
	return nil
}

// flushLocked kicks the other side once if it published anything and the
// other side is sleeping. A lazy flush (only pure TCP ACKs published) owes
// the kick instead while our receive loop runs: the data an application
// answers with usually follows within microseconds and its kick covers
// both, and otherwise the loop pays the debt before it sleeps (settle).
// Two of the four frames of a request/response are such ACKs; waking the
// other process costs more than delivering them.
func (c *channel) flushLocked(lazy bool) {
	if !c.outPending {
		return
	}
	c.outPending = false
	if c.peerWait.Load() == 0 {
		return
	}
	if lazy && c.rxActive.Load() {
		c.kickOwed = true
		return
	}
	c.kickOwed = false
	c.kick()
}

// settle pays an owed kick; the receive loop calls it before it sleeps.
func (c *channel) settle() {
	c.txMu.Lock()
	if c.kickOwed && !c.dead {
		c.kickOwed = false
		if c.peerWait.Load() != 0 {
			c.kick()
		}
	}
	c.txMu.Unlock()
}

// kick wakes the other side.
func (c *channel) kick() {
	c.ctr.kicks.Add(1)
	kickEventfd(c.peerEv)
}

// recvBatch takes up to max valid frames from inAvail, calls fn with each
// frame's bytes (valid only during the call), and returns the frames on
// inUsed. It returns the number of descriptors consumed (valid or not).
func (c *channel) recvBatch(max int, fn func([]byte)) int {
	c.rxMu.Lock()
	defer c.rxMu.Unlock()
	h := c.consumerHead(&c.inAvail, &c.inHead, c.inTail)
	n := 0
	for c.inTail != h && n < max {
		d := getDesc(c.inAvail.slot(c.inTail))
		c.inTail++
		n++
		i, err := c.lay.validate(d, c.thrs)
		if err == nil && c.held[i-c.thrs] {
			c.takenBack() // they may have taken it back and refilled it
			if c.held[i-c.thrs] {
				err = errNotOwned
			}
		}
		if err != nil {
			c.ctr.reject(err)
			continue
		}
		c.held[i-c.thrs] = true
		fn(c.mem[d.off : d.off+uint64(d.len)])
		c.giveBack(i, d)
	}
	if n > 0 {
		c.inAvail.tail.Store(c.inTail)
		c.inUsed.head.Store(c.inUsedHd)
	}
	return n
}

// giveBack returns frame i on inUsed; it stays held until they take it
// back (takenBack). They lent at most frames ≤ slots frames, so the used
// ring has room unless its consumer index is hostile; then the frame stays
// with us (counted) rather than overwrite.
func (c *channel) giveBack(i uint32, d desc) {
	t := c.takenBack()
	if c.inUsedHd-t > c.inUsed.mask {
		c.ctr.idxOver.Add(1)
		return
	}
	putDesc(c.inUsed.slot(c.inUsedHd), d)
	c.usedFrame[c.inUsedHd&c.inUsed.mask] = i
	c.inUsedHd++
}

// takenBack reads their tail on inUsed and ends our hold on every frame it
// has passed since the last call. It returns the (valid) tail.
func (c *channel) takenBack() uint32 {
	from := c.inUsedTl
	t := c.producerTail(&c.inUsed, &c.inUsedTl, c.inUsedHd)
	for ; from != t; from++ {
		c.held[c.usedFrame[from&c.inUsed.mask]-c.thrs] = false
	}
	return t
}

// pending reports whether inAvail has descriptors we have not consumed.
func (c *channel) pending() bool {
	return c.inAvail.head.Load() != c.inTail
}

// spinFor is how long the receive loop polls an empty ring, yielding to
// the process's other goroutines between polls, before it asks to be
// kicked and sleeps. A kick wakes a side asleep in read(2), and on a
// small VM that wake-up costs most of a short round trip, so a side that
// polls a little longer than a peer takes to answer avoids it (the round
// trip benchmarks beside this package measure it; the figures are in the
// commit that set spinFor). A side with nothing to do burns at most
// spinFor of CPU before it sleeps.
const spinFor = 50 * time.Microsecond

// txWaitRounds bounds how often a sender out of frames polls for returns.
const txWaitRounds = 256

// wait blocks until inAvail may have work or the channel is closed. It
// returns false once closed.
func (c *channel) wait() bool {
	start := time.Now()
	for i := 1; ; i++ {
		if c.closed.Load() {
			return false
		}
		if c.pending() {
			return true
		}
		if i%16 == 0 && time.Since(start) > spinFor {
			break
		}
		runtime.Gosched()
	}
	c.rxActive.Store(false)
	c.settle()
	c.myWait.Store(1)
	if c.pending() || c.closed.Load() {
		c.myWait.Store(0)
		c.rxActive.Store(true)
		return !c.closed.Load()
	}
	// Hold the eventfds open while asleep on one: a descriptor number
	// closed under us could be reused by the time read(2) starts.
	c.evMu.RLock()
	err := errClosed
	if !c.evClosed {
		err = sleepEventfd(c.myEv)
	}
	c.evMu.RUnlock()
	c.myWait.Store(0)
	c.rxActive.Store(true)
	if err != nil || c.closed.Load() {
		return false
	}
	c.ctr.wakeups.Add(1)
	return true
}

var errClosed = errors.New("ring: eventfds closed")

// closeEvents closes the eventfd files after shutdown, once no receive
// loop sleeps on them; wait then returns false at once.
func (c *channel) closeEvents(files []*os.File) {
	c.evMu.Lock()
	c.evClosed = true
	closeFiles(files)
	c.evMu.Unlock()
}

// shutdown stops the receive loop: it marks the channel closed and wakes the
// loop through our own eventfd.
func (c *channel) shutdown() {
	if c.closed.Swap(true) {
		return
	}
	kickEventfd(c.myEv)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
