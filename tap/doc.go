// Package tap is zcnet's link over a Linux TAP device: Link, a gVisor
// stack.LinkEndpoint that carries Ethernet frames between the stack and
// the kernel through /dev/net/tun (link.go, rx.go, tx.go, vnet.go,
// tun_linux.go). It speaks the virtio-net header with the kernel's
// checksum and segmentation offloads, splits headers from payload on
// receive, reads in batches per wake-up, and serves several queues in
// parallel (as many as the device allows, matched to how it was made:
// Config.Queues, Link.Info).
//
// It owns the device, its queues and reader goroutines, the offload and
// checksum handling (vnet.go), the fragment checker (frag.go), the
// admission budget for TCP segments at listeners (admit.go), the
// copy-break for small frames and the delivery hand-off (rx.go,
// rx_handoff.go), and the ACK hold on transmit (tx_ackhold.go).
//
// It does not own the link contract: the payload hook, the connection
// lookup and SYN pressure it takes from the stack, the header split and
// the Ethernet framing are package stack/link's, shared with the other
// links (stack/link/pair, ring, xdp; the impair and pcap wrappers). It
// does not know about sockets: the socket layer (packages stack and api)
// reaches the link only through gVisor's interfaces and those hooks.
//
// # Copies
//
// Receive: one copy, by the kernel, into views the link allocates from
// gVisor's pools; GSO super-frames of up to 64 KiB arrive whole, so the
// copy and the stack's per-packet work happen once per 64 KiB, not per MSS.
// The link then copies only the Ethernet, IP and TCP/UDP headers into a view
// of their own (the header split, link.SplitPayload), so the payload view is
// never copied on write by the stack (Stats.RxCopiedBytes counts the header
// bytes). Frames of at most 256 bytes (ACKs, small datagrams) are copied
// out whole instead, split the same way, so the MTU-sized receive view
// stays with the reader (Stats.RxCopyBreakFrames; their bytes count in
// RxCopiedBytes). Transmit: one writev of the stack's own views; the kernel copies
// and, for TCP super-frames, segments (host GSO).
//
// # Offloads and checksums
//
// With Config.Offload on (the default) the device is opened with
// IFF_VNET_HDR and a 12-byte header and TUNSETOFFLOAD CSUM|TSO4|TSO6 (and
// USO4|USO6 where the kernel has them). The kernel then hands the link TCP
// frames with a partial checksum (NEEDS_CSUM), which gVisor would reject
// unless the link advertises receive checksum offload; the stack cannot be
// told per packet (the NIC overwrites pkt.RXChecksumValidated from the
// link's capabilities), so the link advertises it and verifies in software
// every frame whose header carries neither NEEDS_CSUM nor DATA_VALID
// (Stats.RxCsumVerified, Stats.RxDropBadCsum). Because the capability
// covers every packet, two more checks close what it would let through:
// the IPv4 header checksum is verified on every frame, whatever its header
// says (Linux checks it always; gVisor skips it for such a link), and IP
// fragments, whose transport checksum covers the whole datagram, are held
// by a bounded fragment checker (frag.go) until their set is complete and
// then reassembled by the link and delivered whole, as one unfragmented
// packet made of the fragments' receive views, if the datagram's checksum
// is right (Stats.RxFragReassembled), or dropped together and counted
// (Stats.RxDropFrag*). Transmit checksum offload
// is never advertised; TCP segments go out with NEEDS_CSUM and the kernel
// completes them. vnet.go holds all of this and cites the kernel headers.
//
// # Why not github.com/songgao/water
//
// water opens TUN/TAP devices portably, but on Linux it cannot set
// IFF_VNET_HDR, TUNSETVNETHDRSZ or TUNSETOFFLOAD, and it hides the
// descriptor behind an io.ReadWriteCloser, so neither the offloads (where
// most of this link's throughput comes from) nor readv into the stack's
// own buffers are possible. The few ioctls needed are in tun_linux.go.
//
// # Shutting down
//
// Close the link (which removes its NIC from the stack) or remove the NIC,
// then close the stack. Stack.Wait waits for link endpoints while holding
// the stack's lock, which a reader in the middle of delivering a packet may
// need; closing the link first lets the readers finish outside that lock.
package tap
