// Package xdp is a link that attaches a zcnet stack to one queue of a
// network interface through an AF_XDP socket: Link, a stack.LinkEndpoint.
//
// It owns the UMEM (one pinned dmapool region, registered once with
// XDP_UMEM_REG), the four rings shared with the kernel (fill, RX, TX,
// completion), the accounting of every UMEM frame, and the XDP program
// that chooses which frames come to the socket. It does not own the pool
// allocator (dmapool), the Ethernet framing, header split and payload hook
// (package stack/link, whose helpers it reuses), sockets (api) or the stack
// (stack).
//
// # The program
//
// Built in Go with github.com/cilium/ebpf's assembler (prog.go), so no C
// toolchain is needed: it redirects to the socket, through an XSKMAP, the
// frames for the stack's addresses (IPv4 and IPv6 destinations, ARP for
// them, neighbour solicitations for them) and passes every other frame to
// the kernel, so the host's own traffic on the interface keeps working.
// It runs in the driver's hook (native) where the driver has one, in the
// generic hook otherwise (Config.Attach; Info.Native says which). It is
// attached through a bpf_link held only by a file descriptor, so it is
// detached on Close and also when the process dies, however it dies.
//
// # Frames and copies
//
// The socket is bound zero-copy where the driver supports it and copy mode
// otherwise (Config.Bind; Info.ZeroCopy says which): in zero-copy mode the
// NIC writes received frames straight into the UMEM; in copy mode the
// kernel copies them there. Half the frames are for receive: they cycle
// fill ring → kernel → RX ring → link → fill ring. The link copies each
// received frame once, out of the UMEM into a gVisor view (gVisor's views
// cannot wrap foreign memory; Stats.RxCopiedBytes), and splits its headers
// from its payload as the TAP link does (link.HeaderLen, link.SplitPayload,
// link.PayloadHook). The other half is for transmit: a packet is copied
// once into a free frame (Stats.TxCopiedBytes), put on the TX ring, and
// comes back on the completion ring.
//
// # System calls
//
// None per frame. The receive loop takes batches off the RX ring; with
// nothing to take it polls the ring for Config.BusyPoll and then sleeps in
// poll(2). Transmit calls sendto only when the kernel set
// XDP_RING_NEED_WAKEUP on the TX ring (in copy mode it always does: the
// kernel sends only inside that call), and refilling the fill ring calls
// recvfrom only when the driver asked for it on that ring.
//
// # Checksums
//
// Frames arrive as they were on the wire and leave as the stack wrote
// them; there is no virtio-net header to carry offload state. The link
// claims no offload, so the stack computes every checksum it sends and
// verifies every one it receives. One consequence on a veth: a kernel peer
// on the other end with transmit checksum offload on (the veth default)
// sends TCP and UDP with partial checksums, which the stack rejects, as a
// host across a wire would never see them. Either turn it off there
// (ethtool -K PEER tx off, as most tests do) or set
// Config.PartialChecksums, and the link completes them (csum.go,
// Stats.RxCsumCompleted).
//
// # Bad input
//
// The kernel is trusted less than it could be: every RX descriptor and
// completion entry is checked against the frame book (frames.go) before
// the link touches the frame — out of the UMEM, a frame the kernel does not
// hold, data past its frame — and skipped with a count; a ring index more
// than a ring's size ahead is clamped and counted; frames the program
// should not have redirected (another MAC, address or EtherType),
// truncated and oversized frames are dropped and counted, their frames
// returned. A full fill ring defers frames to the next pass; a TX ring the
// kernel does not drain runs out of frames and drops packets, counted.
// Stats reports the frames by owner, which always sum to the UMEM's.
package xdp
