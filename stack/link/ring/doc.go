// Package ring is a vhost-style shared-memory link between two processes: a
// stack side (Link, a stack.LinkEndpoint) and a peer side (Peer, with
// PeerEndpoint to put a second gVisor stack on it). Frames live in one region
// of a Shared dmapool that both processes map; the two sides exchange
// descriptors over four single-producer single-consumer rings in that region
// and wake each other with eventfds, which a busy side suppresses.
//
// Each session (one peer, from its handshake until it goes) gets a segment
// of its own: a fresh memfd-backed pool, unmapped by the stack side when
// the session ends. A peer that closed its socket but lives on keeps only
// its old mapping, which no later session uses. With Config.GSO one frame
// carries a TCP segment of up to 64 KiB, as TSO super-frames cross a TAP
// device. A side with nothing to do sleeps in read(2) on its eventfd.
//
// It owns the layout, the rings, the descriptor validator, the set-up
// handshake over a unix socket (Listen on the stack side, Dial on the peer
// side; fds pass with SCM_RIGHTS) and the two endpoints. It does not own the
// pool allocator (dmapool), sockets (api) or the stack (stack).
//
// Flow, stack → peer (TX) and peer → stack (RX) are mirror images:
//
//  1. The producer takes one of its own free frames (frames are partitioned:
//     the first half belongs to the stack side, the second to the peer),
//     reclaiming returned frames from its "used" ring first.
//  2. It writes the frame (WritePackets serialises the packet straight into
//     the shared frame) and publishes a descriptor on its "avail" ring.
//  3. After a batch it kicks the consumer's eventfd, only if the consumer set
//     its waiting flag (notification suppression).
//  4. The consumer validates each descriptor (validate), copies the frame
//     once into a gVisor view (counted), returns the frame on the used ring,
//     splits headers from payload and delivers it.
//
// The peer is untrusted: every index and descriptor it writes is checked,
// bad ones are counted in Stats and skipped; the link keeps working. What
// it sends is budgeted like a TAP's kernel side (link.Admission): a flood
// of TCP segments at a listener is dropped over the budget and counted
// (RxDropsFloodSYN, RxDropsFloodCtl). A
// frame stays the receiver's from its descriptor until the sender's index
// on the used ring shows it was taken back, so a frame published again
// before that is refused. Peer.InjectFault writes each kind of bad entry
// (Fault) for tests of the stack side; package ringtest drives it.
package ring
