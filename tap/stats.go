package tap

import (
	"sync/atomic"

	"github.com/zcnet/zcnet/stack/link"
)

// Stats are a link's counters since Open. Frame and byte counts are of
// Ethernet frames, without the virtio-net header.
type Stats struct {
	// RxFrames and RxBytes count frames read from the device (before any
	// drop below).
	RxFrames, RxBytes uint64
	// RxWakeups counts reader wake-ups that found at least one frame;
	// RxFrames/RxWakeups is the average batch.
	RxWakeups uint64
	// RxRingBatches counts the readers' io_uring_enter calls, each a
	// batch of reads (Info.RxBatch); RxFrames/RxRingBatches is the frames
	// per system call. RxRingFallbacks counts queues whose reader gave
	// the ring up for readv (the kernel did not complete a read inline,
	// or refused a submission).
	RxRingBatches, RxRingFallbacks uint64
	// RxHandedOff counts frames a busy reader handed to its queue's
	// deliverer goroutine rather than delivering them itself.
	RxHandedOff uint64
	// RxGSOFrames counts TCP super-frames (gso_type TCPV4/TCPV6) handed to
	// the stack whole.
	RxGSOFrames uint64
	// RxUSOFrames counts UDP GSO super-frames, and RxUSODatagrams the
	// datagrams the link cut them into.
	RxUSOFrames, RxUSODatagrams uint64
	// RxCsumVerified counts frames whose virtio-net header vouched for
	// nothing and whose IPv4/TCP/UDP checksums the link checked in
	// software and found right.
	RxCsumVerified uint64
	// RxCsumUnverifiable counts IP fragments whose transport checksum
	// cannot be checked frame by frame (it covers the whole datagram):
	// each is held by the link's fragment checker until its datagram is
	// complete and checked, then delivered inside its reassembled
	// datagram (counted in RxFragReassembledFrames) or dropped (one of the
	// RxDropFrag* counters). None reaches the stack unchecked.
	RxCsumUnverifiable uint64
	// RxFragDatagrams counts fragmented TCP and UDP datagrams whose
	// checksum the link verified whole.
	RxFragDatagrams uint64
	// RxFragReassembled counts fragmented datagrams the link reassembled
	// and delivered whole, as one unfragmented packet whose payload is
	// the fragments' receive views (the stack's own reassembly is never
	// used), and RxFragReassembledFrames the fragments they were made of.
	// The headers the link writes for them, and the data of fragments
	// under 256 bytes, which it copies rather than pin a receive view
	// for, count in RxCopiedBytes.
	RxFragReassembled, RxFragReassembledFrames uint64
	// RxCopiedBytes counts bytes copied in user space on receive: the
	// split headers (and per-datagram headers of USO frames), whole frames
	// of at most 256 bytes (RxCopyBreakFrames), whole TCP segments that
	// carry no payload (headers only, see admit.go), and the headers and
	// small fragments of datagrams the link reassembles. The payload of a
	// larger frame or fragment is never copied.
	RxCopiedBytes uint64
	// RxCopyBreakFrames counts frames small enough to be copied out of
	// the receive view (the copy-break: ACKs, short requests, small
	// datagrams), so the view is reused for the next read.
	RxCopyBreakFrames uint64

	// Receive drops, by cause. Frames, each counted once.
	RxDropShort       uint64 // shorter than an Ethernet header
	RxDropBadVnetHdr  uint64 // virtio-net header rejected (see validateRx)
	RxDropBadCsum     uint64 // software verification failed: IPv4 header, TCP or UDP checksum
	RxDropNotForUs    uint64 // unicast to another MAC address
	RxDropNotAttached uint64 // no stack attached
	RxReadErrors      uint64 // read(2) failed other than EAGAIN
	// RxDropUncheckable: a checksum had to be checked but the headers
	// locating it reach past the first receive view (HeadViewSize), which
	// no frame within the device's MTU does.
	RxDropUncheckable uint64
	// Fragments dropped by the fragment checker (see frag.go):
	RxDropFragBadCsum   uint64 // their reassembled datagram's TCP or UDP checksum was wrong
	RxDropFragInvalid   uint64 // overlapping fragments, two different ends, data past the end, IPv6 headers that do not parse in the first fragment (RFC 5722, RFC 8200 §4.5), or a datagram longer than its IP header's length field can say
	RxDropFragDuplicate uint64 // exact duplicate of a held fragment (the first copy is kept)
	RxDropFragExpired   uint64 // datagram incomplete within the reassembly timeout (30 s IPv4, 60 s IPv6), or when the reader stopped
	RxDropFragLimit     uint64 // evicted or refused to stay within the checker's limits (datagrams, bytes, fragments per datagram)
	// TCP segments for a listening socket, dropped over the link's
	// admission budget (link.Admission):
	RxDropFloodSYN uint64 // SYNs
	RxDropFloodCtl uint64 // ACKs, RSTs and other control segments, and segments with payload; and every RST for a listener, which ignores it
	// RxDropStale counts segments for a listener that acknowledge a FIN
	// the stack sent on their 4-tuple: segments of a connection the
	// stack has closed (link.Admission's rule 10), dropped whatever the
	// budget.
	RxDropStale uint64

	// TxFrames and TxBytes count frames written to the device.
	TxFrames, TxBytes uint64
	// TxGSOFrames counts TCP super-frames written for the kernel to
	// segment (gso_type set).
	TxGSOFrames uint64
	// TxCopiedBytes counts bytes linearised on transmit, which happens
	// only for a packet of more than IOV_MAX views.
	TxCopiedBytes uint64
	// TxErrors counts frames the device refused.
	TxErrors uint64
	// TxAcksHeld counts bare TCP ACKs held back for a reply
	// (tx_ackhold.go); of those, TxAcksCoalesced were dropped because a
	// segment of the same connection carrying data (or a FIN)
	// acknowledged as much, and TxAcksTimedOut went out alone when no
	// reply came in time. The rest were written before another write.
	TxAcksHeld, TxAcksCoalesced, TxAcksTimedOut uint64
}

// counters is one queue's share of Stats. The receive side is written by
// the queue's reader goroutine (and the fragment counters by its fragment
// checker's expiry timer), the transmit side by any writer; all
// fields are atomics so Stats can read them at any time. The padding keeps
// queues' counters off each other's cache lines.
type counters struct {
	rxFrames, rxBytes, rxWakeups           atomic.Uint64
	rxGSO, rxUSO, rxUSODatagrams           atomic.Uint64
	rxVerified, rxUnverifiable, rxCopied   atomic.Uint64
	rxHandedOff, rxCopyBreak               atomic.Uint64
	rxRingBatches, rxRingFallbacks         atomic.Uint64
	dropShort, dropVnet, dropCsum          atomic.Uint64
	dropNotForUs, dropDetached, rxErrors   atomic.Uint64
	dropUncheckable, fragDatagrams         atomic.Uint64
	fragReassembled, fragReassembledFrames atomic.Uint64
	dropFragCsum, dropFragInvalid          atomic.Uint64
	dropFragDup, dropFragExpired           atomic.Uint64
	dropFragLimit                          atomic.Uint64

	_ [64]byte

	txFrames, txBytes, txGSO, txCopied, txErrors atomic.Uint64
	txAcksHeld, txAcksCoalesced, txAcksTimedOut  atomic.Uint64

	_ [64]byte
}

func (c *counters) addTo(s *Stats) {
	s.RxFrames += c.rxFrames.Load()
	s.RxBytes += c.rxBytes.Load()
	s.RxWakeups += c.rxWakeups.Load()
	s.RxRingBatches += c.rxRingBatches.Load()
	s.RxRingFallbacks += c.rxRingFallbacks.Load()
	s.RxGSOFrames += c.rxGSO.Load()
	s.RxUSOFrames += c.rxUSO.Load()
	s.RxUSODatagrams += c.rxUSODatagrams.Load()
	s.RxCsumVerified += c.rxVerified.Load()
	s.RxCsumUnverifiable += c.rxUnverifiable.Load()
	s.RxHandedOff += c.rxHandedOff.Load()
	s.RxCopiedBytes += c.rxCopied.Load()
	s.RxCopyBreakFrames += c.rxCopyBreak.Load()
	s.RxDropShort += c.dropShort.Load()
	s.RxDropBadVnetHdr += c.dropVnet.Load()
	s.RxDropBadCsum += c.dropCsum.Load()
	s.RxDropNotForUs += c.dropNotForUs.Load()
	s.RxDropNotAttached += c.dropDetached.Load()
	s.RxReadErrors += c.rxErrors.Load()
	s.RxDropUncheckable += c.dropUncheckable.Load()
	s.RxFragDatagrams += c.fragDatagrams.Load()
	s.RxFragReassembled += c.fragReassembled.Load()
	s.RxFragReassembledFrames += c.fragReassembledFrames.Load()
	s.RxDropFragBadCsum += c.dropFragCsum.Load()
	s.RxDropFragInvalid += c.dropFragInvalid.Load()
	s.RxDropFragDuplicate += c.dropFragDup.Load()
	s.RxDropFragExpired += c.dropFragExpired.Load()
	s.RxDropFragLimit += c.dropFragLimit.Load()
	s.TxFrames += c.txFrames.Load()
	s.TxBytes += c.txBytes.Load()
	s.TxGSOFrames += c.txGSO.Load()
	s.TxCopiedBytes += c.txCopied.Load()
	s.TxErrors += c.txErrors.Load()
	s.TxAcksHeld += c.txAcksHeld.Load()
	s.TxAcksCoalesced += c.txAcksCoalesced.Load()
	s.TxAcksTimedOut += c.txAcksTimedOut.Load()
}

// Totals implements link.Counted: the frame and byte totals of Stats.
func (l *Link) Totals() link.Totals {
	s := l.Stats()
	return link.Totals{RxFrames: s.RxFrames, RxBytes: s.RxBytes, TxFrames: s.TxFrames, TxBytes: s.TxBytes}
}
