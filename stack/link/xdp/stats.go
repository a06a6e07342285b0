package xdp

import "sync/atomic"

// Stats are a link's counters since Open, and the UMEM frames by owner.
// Frame and byte counts are of Ethernet frames.
type Stats struct {
	// RxFrames and RxBytes count frames delivered to the stack; RxBatches
	// the non-empty passes over the RX ring (RxFrames/RxBatches is the
	// average batch); RxSleeps the times the receive loop slept in poll(2).
	RxFrames, RxBytes, RxBatches, RxSleeps uint64
	// RxCopiedBytes counts bytes copied out of the UMEM into the stack's
	// buffers: every received byte (gVisor's views cannot wrap UMEM).
	// RxHeaderBytes counts the header bytes the split copied again into a
	// view of their own.
	RxCopiedBytes, RxHeaderBytes uint64
	// RxCsumCompleted counts frames whose partial TCP or UDP checksum the
	// link completed (Config.PartialChecksums).
	RxCsumCompleted uint64

	// Receive drops, by cause; each frame counted once, its UMEM frame
	// returned to the fill ring.
	RxDropShort       uint64 // shorter than the headers it claims (Ethernet, IPv4, IPv6, ARP)
	RxDropOversized   uint64 // longer than the MTU plus the Ethernet header
	RxDropNotForUs    uint64 // to another MAC, or an address, EtherType or message the program should have passed
	RxDropNotAttached uint64 // no stack attached
	RxDropBadDesc     uint64 // RX descriptor for a frame the kernel does not hold, or past its frame: skipped, frame untouched
	RxBadIndex        uint64 // RX ring producer index more than the ring's size ahead
	// TCP segments for a listening socket refused by admission
	// (link.Admission) over their class's budget: SYNs, and other
	// segments (every RST for a listener among them).
	RxDropFloodSYN, RxDropFloodCtl uint64
	// RxDropStale counts segments for a listener of a connection the
	// stack has closed (link.Admission's rule 10).
	RxDropStale uint64
	// RxFillDeferred counts receive frames that found the fill ring full
	// and waited for the next pass.
	RxFillDeferred uint64

	// TxFrames and TxBytes count frames put on the TX ring; TxCopiedBytes
	// the bytes copied into UMEM frames (every byte: the one copy, where a
	// NIC would read the stack's buffer by DMA).
	TxFrames, TxBytes, TxCopiedBytes uint64
	// TxKicks counts sendto calls made because the kernel asked
	// (XDP_RING_NEED_WAKEUP on the TX ring); TxKickErrors those that
	// failed other than with "busy".
	TxKicks, TxKickErrors uint64
	// Transmit drops: packets larger than a frame or the MTU, or no free
	// frame even after reaping completions and kicking (a stuck TX ring).
	TxDropTooBig, TxDropNoFrame uint64
	// TxBadCompletion counts completion entries for frames the kernel did
	// not hold: skipped.
	TxBadCompletion uint64

	// UMEM frames by owner at the time of the snapshot (gauges): receive
	// frames the kernel holds (fill ring, RX ring) and those waiting for
	// the fill ring; transmit frames free and those the kernel holds (TX
	// ring, completion ring). They always sum to the UMEM's frames.
	FramesRxKernel, FramesRxHeld, FramesTxFree, FramesTxKernel int
}

type counters struct {
	rxFrames, rxBytes, rxBatches, rxSleeps             atomic.Uint64
	rxCopied, rxHeader, rxCsumCompleted                atomic.Uint64
	rxDropShort, rxDropOversized, rxDropNotForUs       atomic.Uint64
	rxDropNotAttached, rxDropBadDesc, rxBadIndex       atomic.Uint64
	rxFillDeferred                                     atomic.Uint64
	txFrames, txBytes, txCopied, txKicks, txKickErrors atomic.Uint64
	txDropTooBig, txDropNoFrame, txBadCompletion       atomic.Uint64
	census                                             [4]atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		RxFrames: c.rxFrames.Load(), RxBytes: c.rxBytes.Load(), RxBatches: c.rxBatches.Load(), RxSleeps: c.rxSleeps.Load(),
		RxCopiedBytes: c.rxCopied.Load(), RxHeaderBytes: c.rxHeader.Load(), RxCsumCompleted: c.rxCsumCompleted.Load(),
		RxDropShort: c.rxDropShort.Load(), RxDropOversized: c.rxDropOversized.Load(), RxDropNotForUs: c.rxDropNotForUs.Load(),
		RxDropNotAttached: c.rxDropNotAttached.Load(), RxDropBadDesc: c.rxDropBadDesc.Load(), RxBadIndex: c.rxBadIndex.Load(),
		RxFillDeferred: c.rxFillDeferred.Load(),
		TxFrames:       c.txFrames.Load(), TxBytes: c.txBytes.Load(), TxCopiedBytes: c.txCopied.Load(),
		TxKicks: c.txKicks.Load(), TxKickErrors: c.txKickErrors.Load(),
		TxDropTooBig: c.txDropTooBig.Load(), TxDropNoFrame: c.txDropNoFrame.Load(), TxBadCompletion: c.txBadCompletion.Load(),
		FramesRxKernel: int(c.census[kernelRx].Load()), FramesRxHeld: int(c.census[heldRx].Load()),
		FramesTxFree: int(c.census[freeTx].Load()), FramesTxKernel: int(c.census[kernelTx].Load()),
	}
}
