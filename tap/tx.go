package tap

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Transmit path, on the caller's goroutine. In the order a packet meets it:
//
//  1. WritePackets: for each packet pick a queue by its flow hash
//     (pkt.Hash, which gVisor's TCP sets per connection), so a flow stays
//     on one queue and its segments keep their order; packets without a
//     hash (ARP, NDP, ICMP) use queue 0. A bare TCP ACK may be held back
//     briefly for the reply that makes it redundant (writeOrHold,
//     tx_ackhold.go).
//  2. writePacket: with offloads, compute the virtio-net header (txVnetHdr:
//     NEEDS_CSUM and, for super-frames, the TSO fields) into a scratch
//     buffer.
//  3. One writev of [virtio-net header][the packet's views]: no copy in user
//     space; the kernel copies once and, for super-frames, segments.
//  4. If the queue is full (EAGAIN, rare on a TAP), wait in the runtime
//     poller until it is writable and retry.

// txScratch is one writer's iovec array and header buffer, pooled so a
// steady stream of writes allocates nothing.
type txScratch struct {
	vnet  [VnetHdrLen]byte
	iov   []unix.Iovec
	n     int
	errno syscall.Errno
	// tryFn and waitFn are s.try and s.wait bound once (a method value
	// allocates each time it is made).
	tryFn  func(fd uintptr)
	waitFn func(fd uintptr) bool
}

var txPool = sync.Pool{New: func() any {
	s := &txScratch{iov: make([]unix.Iovec, 0, 8)}
	s.tryFn = s.try
	s.waitFn = s.wait
	return s
}}

// try is the RawConn.Control callback: one writev, whatever the outcome.
// Control takes a reference on the descriptor but no lock, so writers on
// the same queue do not serialise in user space.
func (s *txScratch) try(fd uintptr) {
	for {
		s.n, s.errno = writev(int(fd), s.iov)
		if s.errno != unix.EINTR {
			return
		}
	}
}

// wait is the RawConn.Write callback used after EAGAIN: false parks the
// writer until the descriptor is writable.
func (s *txScratch) wait(fd uintptr) bool {
	s.try(fd)
	return s.errno != unix.EAGAIN
}

// WritePackets implements stack.LinkWriter.WritePackets: step 1. It writes
// the packets in order and stops at the first error, returning how many
// were written. The packets stay owned by the caller.
func (l *Link) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		l.adm.noteTx(pkt)
		q := l.queues[0]
		if len(l.queues) > 1 {
			q = l.queues[pkt.Hash%uint32(len(l.queues))]
		}
		write := l.writePacket
		if l.ackHold {
			write = l.writeOrHold
		}
		if err := write(q, pkt); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// writePacket writes one packet to q: steps 2 to 4.
func (l *Link) writePacket(q *queue, pkt *stack.PacketBuffer) tcpip.Error {
	s := txPool.Get().(*txScratch)
	defer txPool.Put(s)
	s.iov = s.iov[:0]
	gso := false
	if l.vnet {
		h := txVnetHdr(pkt)
		h.encode(s.vnet[:])
		gso = h.gsoType != vnetGSONone
		s.iov = appendIovec(s.iov, s.vnet[:])
	}
	size := pkt.Size()
	views, off := pkt.AsViewList()
	var lin *buffer.View
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		s.iov = appendIovec(s.iov, b[off:])
		off = 0
	}
	if len(s.iov) > iovMax {
		// More views than one writev takes: linearise (never seen
		// with gVisor's TCP, whose segments hold a few views).
		lin = pkt.ToView()
		q.c.txCopied.Add(uint64(lin.Size()))
		s.iov = s.iov[:0]
		if l.vnet {
			s.iov = appendIovec(s.iov, s.vnet[:])
		}
		s.iov = appendIovec(s.iov, lin.AsSlice())
	}
	err := q.rc.Control(s.tryFn)
	if err == nil && s.errno == unix.EAGAIN {
		err = q.rc.Write(s.waitFn)
	}
	// Drop the references to the packet's memory before pooling.
	clear(s.iov)
	if lin != nil {
		lin.Release()
	}
	switch {
	case err != nil:
		// The descriptor is closed (Close) or its poller failed.
		q.c.txErrors.Add(1)
		return &tcpip.ErrClosedForSend{}
	case s.errno != 0:
		q.c.txErrors.Add(1)
		return translateErrno(s.errno)
	}
	q.c.txFrames.Add(1)
	q.c.txBytes.Add(uint64(size))
	if gso {
		q.c.txGSO.Add(1)
	}
	return nil
}

// appendIovec appends an iovec for b, skipping empty slices (a zero-length
// iovec is legal but wasted).
func appendIovec(iov []unix.Iovec, b []byte) []unix.Iovec {
	if len(b) == 0 {
		return iov
	}
	iov = append(iov, unix.Iovec{})
	setIovec(&iov[len(iov)-1], b)
	return iov
}
