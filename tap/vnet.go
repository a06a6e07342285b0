package tap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/frame"
)

// This file holds all of the virtio-net header and offload logic of the TAP
// link: the header layout, its validation on receive, the host-GSO fields on
// transmit, software checksum verification, and software segmentation of UDP
// GSO (USO) super-frames. It mirrors include/uapi/linux/virtio_net.h and the
// TUN_F_* offload flags of include/uapi/linux/if_tun.h.
//
// With IFF_VNET_HDR and TUNSETVNETHDRSZ 12, every read from and write to the
// TAP starts with a struct virtio_net_hdr_v1, little-endian (TUNSETVNETLE):
//
//	offset size field        meaning
//	0      1    flags        NEEDS_CSUM 0x01: checksum is partial (see csum_*)
//	                         DATA_VALID 0x02: checksum already verified
//	                         RSC_INFO   0x04: not used by tun
//	1      1    gso_type     NONE 0, TCPV4 1, UDP 3 (UFO), TCPV6 4,
//	                         UDP_L4 5 (USO); | ECN 0x80
//	2      2    hdr_len      Ethernet+IP+L4 header bytes (a hint: the kernel
//	                         reports its linear head, which may be longer)
//	4      2    gso_size     payload bytes per segment (MSS for TCP)
//	6      2    csum_start   where checksumming starts, from the frame's start
//	8      2    csum_offset  where the sum is stored, from csum_start
//	10     2    num_buffers  merged receive buffers; always 0 from tun
//
// The 10-byte struct virtio_net_hdr lacks num_buffers; using it while the
// device is set to 12 shifts every frame by two bytes, so the size is set
// explicitly rather than left at the kernel's default of 10.

// VnetHdrLen is the size of the virtio-net header that precedes every frame
// when offloads are on (struct virtio_net_hdr_v1).
const VnetHdrLen = 12

// Offsets of the virtio_net_hdr_v1 fields (see the table above).
const (
	vnetFlags      = 0
	vnetGSOType    = 1
	vnetHdrLenOff  = 2
	vnetGSOSize    = 4
	vnetCsumStart  = 6
	vnetCsumOffset = 8
	vnetNumBuffers = 10
)

// virtio_net_hdr flags (VIRTIO_NET_HDR_F_*).
const (
	vnetFNeedsCsum = 0x01
	vnetFDataValid = 0x02
	vnetFRSCInfo   = 0x04
)

// virtio_net_hdr gso types (VIRTIO_NET_HDR_GSO_*).
const (
	vnetGSONone  = 0
	vnetGSOTCPv4 = 1
	vnetGSOUDP   = 3
	vnetGSOTCPv6 = 4
	vnetGSOUDPL4 = 5
	vnetGSOECN   = 0x80
)

// Checksum field offsets within the transport header, as csum_offset carries
// them.
const (
	tcpCsumOffset = 16 // header.TCPChecksumOffset
	udpCsumOffset = 6  // header.UDPChecksumOffset
)

// Offloads is a set of TUNSETOFFLOAD features (TUN_F_* in
// include/uapi/linux/if_tun.h): which kinds of partially checksummed and
// GSO frames the kernel may hand to the link instead of finishing them itself.
type Offloads uint32

// TUN_F_* values.
const (
	// OffloadCsum (TUN_F_CSUM): frames may carry a partial checksum
	// (NEEDS_CSUM). Required by all the others.
	OffloadCsum Offloads = 0x01
	// OffloadTSO4 (TUN_F_TSO4): TCP over IPv4 super-frames up to 64 KiB.
	OffloadTSO4 Offloads = 0x02
	// OffloadTSO6 (TUN_F_TSO6): TCP over IPv6 super-frames.
	OffloadTSO6 Offloads = 0x04
	// OffloadTSOECN (TUN_F_TSO_ECN): TSO with CWR; never requested, so the
	// kernel segments such frames itself.
	OffloadTSOECN Offloads = 0x08
	// OffloadUSO4 (TUN_F_USO4): UDP GSO super-frames over IPv4; the link
	// segments them in software (headers copied, payload shared).
	OffloadUSO4 Offloads = 0x20
	// OffloadUSO6 (TUN_F_USO6): UDP GSO super-frames over IPv6.
	OffloadUSO6 Offloads = 0x40
)

// offloadsWanted is what Open asks for; offloadsBasic is the fallback for
// kernels without USO (before 6.2), which reject unknown bits with EINVAL.
const (
	offloadsBasic  = OffloadCsum | OffloadTSO4 | OffloadTSO6
	offloadsWanted = offloadsBasic | OffloadUSO4 | OffloadUSO6
)

// String lists the set flags, e.g. "csum|tso4|tso6".
func (o Offloads) String() string {
	if o == 0 {
		return "none"
	}
	names := []struct {
		f Offloads
		n string
	}{{OffloadCsum, "csum"}, {OffloadTSO4, "tso4"}, {OffloadTSO6, "tso6"}, {OffloadTSOECN, "tso_ecn"}, {OffloadUSO4, "uso4"}, {OffloadUSO6, "uso6"}}
	var parts []string
	for _, n := range names {
		if o&n.f != 0 {
			parts = append(parts, n.n)
			o &^= n.f
		}
	}
	if o != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(o)))
	}
	return strings.Join(parts, "|")
}

// errBadVnetHeader is wrapped by every rejection of a received header; frames
// so rejected are dropped and counted under Stats.RxDropBadVnetHdr.
var errBadVnetHeader = errors.New("tap: bad virtio-net header")

// vnetHdr is a decoded struct virtio_net_hdr_v1.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
	numBuffers uint16
}

// decode fills h from the first VnetHdrLen bytes of b.
func (h *vnetHdr) decode(b []byte) error {
	if len(b) < VnetHdrLen {
		return fmt.Errorf("%w: %d bytes, want %d", errBadVnetHeader, len(b), VnetHdrLen)
	}
	*h = vnetHdr{
		flags:      b[vnetFlags],
		gsoType:    b[vnetGSOType],
		hdrLen:     binary.LittleEndian.Uint16(b[vnetHdrLenOff:]),
		gsoSize:    binary.LittleEndian.Uint16(b[vnetGSOSize:]),
		csumStart:  binary.LittleEndian.Uint16(b[vnetCsumStart:]),
		csumOffset: binary.LittleEndian.Uint16(b[vnetCsumOffset:]),
		numBuffers: binary.LittleEndian.Uint16(b[vnetNumBuffers:]),
	}
	return nil
}

// encode writes h into the first VnetHdrLen bytes of b.
func (h *vnetHdr) encode(b []byte) {
	_ = b[VnetHdrLen-1]
	b[vnetFlags] = h.flags
	b[vnetGSOType] = h.gsoType
	binary.LittleEndian.PutUint16(b[vnetHdrLenOff:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[vnetGSOSize:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[vnetCsumStart:], h.csumStart)
	binary.LittleEndian.PutUint16(b[vnetCsumOffset:], h.csumOffset)
	binary.LittleEndian.PutUint16(b[vnetNumBuffers:], h.numBuffers)
}

// gso returns the gso type without the ECN bit.
func (h *vnetHdr) gso() uint8 { return h.gsoType &^ vnetGSOECN }

// validateRx checks a received header against the frame it precedes, the way
// virtio_net_hdr_to_skb does in the kernel: known flags and gso types only, a
// partial checksum whose field lies inside the frame, and a non-zero segment
// size for GSO frames, which must also carry a partial checksum. UFO (gso
// type UDP, IP-fragmenting) is never requested and is rejected.
func (h *vnetHdr) validateRx(frameLen int) error {
	if h.flags&^(vnetFNeedsCsum|vnetFDataValid|vnetFRSCInfo) != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errBadVnetHeader, h.flags)
	}
	if h.flags&vnetFNeedsCsum != 0 {
		start, off := int(h.csumStart), int(h.csumOffset)
		if start < header.EthernetMinimumSize || start+off+2 > frameLen {
			return fmt.Errorf("%w: csum_start %d + csum_offset %d outside a %d-byte frame", errBadVnetHeader, start, off, frameLen)
		}
		if off != tcpCsumOffset && off != udpCsumOffset {
			return fmt.Errorf("%w: csum_offset %d is neither TCP's nor UDP's", errBadVnetHeader, off)
		}
	}
	switch h.gso() {
	case vnetGSONone:
		if h.gsoType&vnetGSOECN != 0 {
			return fmt.Errorf("%w: ECN bit without a gso type", errBadVnetHeader)
		}
		return nil
	case vnetGSOTCPv4, vnetGSOTCPv6, vnetGSOUDPL4:
	default:
		return fmt.Errorf("%w: gso_type %#x", errBadVnetHeader, h.gsoType)
	}
	if h.gsoSize == 0 {
		return fmt.Errorf("%w: gso_type %#x with gso_size 0", errBadVnetHeader, h.gsoType)
	}
	if h.flags&vnetFNeedsCsum == 0 {
		return fmt.Errorf("%w: gso_type %#x without NEEDS_CSUM", errBadVnetHeader, h.gsoType)
	}
	want := tcpCsumOffset
	if h.gso() == vnetGSOUDPL4 {
		want = udpCsumOffset
	}
	if int(h.csumOffset) != want {
		return fmt.Errorf("%w: gso_type %#x with csum_offset %d", errBadVnetHeader, h.gsoType, h.csumOffset)
	}
	return nil
}

// rxSplitLen returns where the software header split cuts a received frame:
// the length of its Ethernet, IP and TCP or UDP headers, or 0 for no split.
// head is the start of the frame as it lies in the link's first receive view
// (the whole frame, or at least minHeadView bytes of it, which always covers
// the headers) and frameLen its full length. The headers are parsed
// (frame.Repr, IPv6 extension headers walked); with a partial checksum the
// kernel also says where the transport header starts (csum_start), and a
// frame whose headers say otherwise is not split.
func rxSplitLen(h *vnetHdr, head []byte, frameLen int) int {
	var r frame.Repr
	err := r.ParseHead(head, frameLen)
	return rxSplitParsed(h, head, &r, err)
}

// rxSplitParsed is rxSplitLen of a frame already parsed: r and err are
// what r.ParseHead(head, frameLen) left and returned.
func rxSplitParsed(h *vnetHdr, head []byte, r *frame.Repr, err error) int {
	if h != nil && h.flags&vnetFNeedsCsum != 0 && int(h.csumStart) != r.L4Off {
		return 0
	}
	return link.SplitAt(r, err, len(head))
}

// txVnetHdr computes the virtio-net header for an outbound packet (host GSO).
//
// gVisor's TCP, on a link that reports stack.HostGSOSupported, sets
// pkt.GSOOptions on every segment of an established connection, ACKs
// included, with NeedsCsum and only the pseudo-header sum in the checksum
// field (CHECKSUM_PARTIAL); such packets must go out with NEEDS_CSUM or the
// peer sees a wrong checksum. gso_type is set only when the payload exceeds
// the MSS, so the kernel segments just the super-frames. All other packets
// (SYN, RST from a listener, UDP, ICMP) carry full checksums and get a zero
// header: the link does not advertise TX checksum offload.
//
// csum_start is the Ethernet header plus the packet's actual network header
// (IPv6 extension headers included), csum_offset comes from the stack (16 for
// TCP), hdr_len is pkt.HeaderSize() (in this gVisor version the bytes pushed
// in front of the data: link, network and transport headers) and gso_size the
// MSS.
func txVnetHdr(pkt *stack.PacketBuffer) vnetHdr {
	var h vnetHdr
	gso := &pkt.GSOOptions
	if gso.Type != stack.GSOTCPv4 && gso.Type != stack.GSOTCPv6 {
		return h
	}
	h.hdrLen = uint16(pkt.HeaderSize())
	if gso.NeedsCsum {
		h.flags = vnetFNeedsCsum
		h.csumStart = uint16(len(pkt.LinkHeader().Slice()) + len(pkt.NetworkHeader().Slice()))
		h.csumOffset = gso.CsumOffset
	}
	if gso.MSS != 0 && pkt.Data().Size() > int(gso.MSS) {
		if gso.Type == stack.GSOTCPv4 {
			h.gsoType = vnetGSOTCPv4
		} else {
			h.gsoType = vnetGSOTCPv6
		}
		h.gsoSize = gso.MSS
	}
	return h
}

// Receive checks.
//
// gVisor's NIC marks every packet of a link that advertises
// CapabilityRXChecksumOffload as checksum-validated (nic.go sets
// pkt.RXChecksumValidated from the link's capabilities for each packet, so a
// per-packet flag would be overwritten), and the stack then skips the IPv4
// header checksum and the TCP and UDP checksums, of unfragmented packets and
// of the datagrams it reassembles alike. The link makes the capability true
// by checking, in software, what the stack skips:
//
//  1. the IPv4 header checksum of every IPv4 frame, whatever its virtio-net
//     header says (the flags speak of the transport checksum only; Linux's
//     ip_rcv_core checks the header checksum of every packet too);
//  2. the TCP or UDP checksum of every unfragmented packet whose virtio-net
//     header vouches for nothing (neither NEEDS_CSUM nor DATA_VALID), past
//     the IPv6 extension headers gVisor itself walks;
//  3. the TCP or UDP checksum of every fragmented datagram, before any of its
//     fragments reaches the stack (the fragment checker, frag.go). No flag
//     can vouch for a fragment: a frame's checksum state says nothing about
//     the datagram it belongs to.
//
// NEEDS_CSUM frames come from the host's own stack (the transport checksum
// is partial by design, and Linux trusts it for local delivery too) and
// DATA_VALID frames were verified by the host; only (1) and (3) apply to
// them, which costs the GSO fast path one 20-byte header sum per
// super-frame.

// csumVerdict is the outcome of the receive checks of one frame.
type csumVerdict uint8

const (
	// csumNone: nothing the stack would skip needs checking: not IP, a
	// transport whose checksum gVisor always verifies (ICMPv6), a frame
	// whose virtio-net header vouches for its transport checksum, or an
	// IPv6 packet that gVisor discards unread (a routing header with
	// segments left).
	csumNone csumVerdict = iota
	// csumGood: every checksum gVisor would skip was checked and is right.
	csumGood
	// csumBad: a checksum is wrong; the frame must be dropped.
	csumBad
	// csumMalformed: the headers are inconsistent in a way gVisor detects
	// frame by frame (lengths; a fragment that cannot belong to any
	// datagram), so that no transport ever sees the frame; gVisor drops
	// and counts such frames, so they are passed on.
	csumMalformed
	// csumFragment: an IP fragment (of any transport: the link reassembles
	// every fragmented datagram itself). It goes to the fragment checker,
	// which sees that the whole datagram's checksum is right, where gVisor
	// would skip it (TCP and UDP), before the datagram reaches the stack.
	// The fragInfo says where its data is.
	csumFragment
	// csumUncheckable: a checksum must be checked, but the headers that
	// locate it reach past the first receive view (HeadViewSize), which no
	// well-formed frame of the device's MTU does; the frame is dropped.
	csumUncheckable
)

// fragKey identifies the fragments of one datagram: source, destination,
// protocol and identification for IPv4 (RFC 791 §2.3), source, destination
// and identification for IPv6 (RFC 8200 §4.5), as gVisor's reassembly keys
// them.
type fragKey struct {
	src, dst tcpip.Address
	id       uint32
	proto    uint8 // IPv4's protocol field; 0 for IPv6
	v6       bool
}

// fragInfo describes a fragment, as verifyChecksums found it.
type fragInfo struct {
	key fragKey
	// data is where the fragment's data starts in the frame (after the
	// IPv4 header, or after the IPv6 fragment header), size its length,
	// and off its offset within the datagram's fragmentable part (the
	// fragment offset times 8).
	data, size, off int
	// more is the More Fragments flag.
	more bool
	// next is the protocol of the data: IPv4's protocol field, or the
	// next header field of the IPv6 fragment header (which only the first
	// fragment's is meant to be used).
	next uint8
}

// classify sorts out the fragments gVisor drops on its own, frame by frame
// and before any reassembly state is kept (RFC 791 §3.2, RFC 8200 §4.5):
// no data, a length that is not a multiple of 8 with more fragments to
// follow, or data reaching past maxLen, the largest fragmentable part
// gVisor accepts. They are malformed (passed on, for the stack to drop and
// count); the rest go to the fragment checker.
func (fi *fragInfo) classify(maxLen int) csumVerdict {
	if fi.size <= 0 || fi.more && fi.size%8 != 0 || fi.off+fi.size > maxLen {
		return csumMalformed
	}
	return csumFragment
}

// verifyChecksums runs the receive checks (see above) on one frame: head
// followed by tail (the two receive views). vouched says that the frame's
// virtio-net header vouches for its transport checksum (NEEDS_CSUM or
// DATA_VALID). For a csumFragment verdict it fills *fi.
//
// The Ethernet, IP and transport headers are read from head, which holds
// them for every frame up to the device's MTU (the first view is at least
// minHeadView bytes and sized for the MTU); payload bytes are summed from
// both views.
func verifyChecksums(head, tail []byte, vouched bool, fi *fragInfo) csumVerdict {
	var r frame.Repr
	err := r.ParseHead(head, len(head)+len(tail))
	return checkParsed(&r, err, head, tail, vouched, fi)
}

// checkParsed is verifyChecksums of a frame already parsed: r and err are
// what r.ParseHead(head, len(head)+len(tail)) left and returned.
func checkParsed(r *frame.Repr, err error, head, tail []byte, vouched bool, fi *fragInfo) csumVerdict {
	if r.Depth < frame.DepthLink || r.EtherType != frame.EtherTypeIPv4 && r.EtherType != frame.EtherTypeIPv6 {
		return csumNone
	}
	if r.Depth < frame.DepthIP {
		// The IP header's lengths or version are wrong; gVisor drops
		// the packet.
		return csumMalformed
	}
	var src, dst tcpip.Address
	if r.IPVersion == 4 {
		if !header.IPv4(head[header.EthernetMinimumSize:]).IsChecksumValid() {
			return csumBad
		}
		src, dst = tcpip.AddrFrom4([4]byte(r.Src[:4])), tcpip.AddrFrom4([4]byte(r.Dst[:4]))
		if r.Fragment {
			// Of any protocol: the link reassembles every datagram
			// (frag.go), and verifies the checksum of TCP and UDP ones.
			*fi = fragInfo{
				key:  fragKey{src: src, dst: dst, id: r.FragID, proto: r.Proto},
				data: r.L4Off, size: r.L4Len(), off: r.FragOff, more: r.MoreFrags, next: r.Proto,
			}
			return fi.classify(header.IPv4MaximumPayloadSize)
		}
		if r.Proto != uint8(header.TCPProtocolNumber) && r.Proto != uint8(header.UDPProtocolNumber) {
			// ICMP and the rest: gVisor verifies their checksums
			// itself.
			if vouched {
				return csumNone
			}
			return csumGood
		}
	} else {
		if r.Depth < frame.DepthNetwork {
			// The extension headers run past the packet (gVisor
			// drops it) or past the first view.
			if err == frame.ErrBeyondHead {
				return csumUncheckable
			}
			return csumMalformed
		}
		if r.Routed {
			// RFC 8200 §4.4: gVisor implements no routing type, so
			// it discards the packet (and answers with a Parameter
			// Problem) before any transport reads it. The final
			// destination, which the pseudo-header would need
			// (RFC 8200 §8.1), is not the packet's destination yet.
			return csumNone
		}
		src, dst = tcpip.AddrFrom16(r.Src), tcpip.AddrFrom16(r.Dst)
		if r.Fragment {
			*fi = fragInfo{
				key:  fragKey{src: src, dst: dst, id: r.FragID, v6: true},
				data: r.L4Off, size: r.L4Len(), off: r.FragOff, more: r.MoreFrags, next: r.Proto,
			}
			return fi.classify(header.IPv6MaximumPayloadSize)
		}
	}
	if vouched {
		return csumNone
	}
	var csumOff int
	switch r.Proto {
	case uint8(header.TCPProtocolNumber):
		csumOff = tcpCsumOffset
	case uint8(header.UDPProtocolNumber):
		csumOff = udpCsumOffset
	default:
		// An IPv6 transport other than TCP and UDP (ICMPv6): gVisor
		// verifies its checksum itself.
		return csumNone
	}
	if err == frame.ErrTruncated {
		// The IP packet is shorter than a transport header.
		return csumMalformed
	}
	// Otherwise the transport header is in the packet; a TCP data offset
	// that is wrong (ErrBadHeader) is gVisor's to drop, and the checksum
	// is checked all the same.
	start, l4len := r.L4Off, r.L4Len()
	if start+csumOff+2 > len(head) {
		// The packet holds the field (l4len is at least a header), the
		// first view does not.
		return csumUncheckable
	}
	if r.Proto == uint8(header.UDPProtocolNumber) && r.IPVersion == 4 &&
		head[start+csumOff] == 0 && head[start+csumOff+1] == 0 {
		// RFC 768: a zero UDP checksum over IPv4 means "none computed".
		return csumGood
	}
	var c checksum.Checksumer
	end := start + l4len
	if end <= len(head) {
		c.Add(head[start:end])
	} else {
		c.Add(head[start:])
		c.Add(tail[:end-len(head)])
	}
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(r.Proto), src, dst, uint16(l4len))
	if checksum.Combine(xsum, c.Checksum()) != 0xffff {
		return csumBad
	}
	return csumGood
}

// usoSegments returns how many datagrams a USO super-frame with payloadLen
// payload bytes holds, each gsoSize bytes but the last.
func usoSegments(payloadLen, gsoSize int) int {
	if gsoSize <= 0 || payloadLen <= 0 {
		return 0
	}
	return (payloadLen + gsoSize - 1) / gsoSize
}

// usoHeader writes into dst (a copy of the super-frame's Ethernet, IP and UDP
// headers, hdrLen bytes) the headers of datagram i of size payload bytes,
// the way the kernel's __udp_gso_segment does: IP total or payload length
// and UDP length for the datagram, IPv4 id incremented per datagram and the
// IPv4 header checksum recomputed. The UDP checksum field gets the
// pseudo-header sum for the datagram's length (still partial, as the
// NEEDS_CSUM super-frame was; the stack does not check it, because the link
// advertises receive checksum offload).
func usoHeader(dst []byte, l4off int, i, size int) bool {
	if len(dst) < l4off+header.UDPMinimumSize || l4off < header.EthernetMinimumSize {
		return false
	}
	l3 := dst[header.EthernetMinimumSize:]
	udpLen := header.UDPMinimumSize + size
	var src, dstAddr tcpip.Address
	switch header.Ethernet(dst).Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		// UDP right after a well-formed IPv4 header, where csum_start
		// says the UDP header is.
		if len(l3) < header.IPv4MinimumSize || ip.HeaderLength() < header.IPv4MinimumSize ||
			header.EthernetMinimumSize+int(ip.HeaderLength()) != l4off || ip.Protocol() != uint8(header.UDPProtocolNumber) {
			return false
		}
		ip.SetTotalLength(uint16(l4off - header.EthernetMinimumSize + udpLen))
		ip.SetID(ip.ID() + uint16(i))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		src, dstAddr = ip.SourceAddress(), ip.DestinationAddress()
	case header.IPv6ProtocolNumber:
		if l4off < header.EthernetMinimumSize+header.IPv6MinimumSize {
			return false
		}
		ip := header.IPv6(l3)
		ip.SetPayloadLength(uint16(l4off - header.EthernetMinimumSize - header.IPv6MinimumSize + udpLen))
		src, dstAddr = ip.SourceAddress(), ip.DestinationAddress()
	default:
		return false
	}
	udp := header.UDP(dst[l4off:])
	udp.SetLength(uint16(udpLen))
	udp.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dstAddr, uint16(udpLen)))
	return true
}

// sliceViews appends to dst clones of the views in src that cover
// [off, off+n) of their concatenated contents. The clones share the
// chunks of src (no bytes are copied); the caller owns them.
func sliceViews(dst []*buffer.View, src []*buffer.View, off, n int) []*buffer.View {
	for _, v := range src {
		if n == 0 {
			break
		}
		sz := v.Size()
		if off >= sz {
			off -= sz
			continue
		}
		c := v.Clone()
		c.TrimFront(off)
		take := min(n, c.Size())
		c.CapLength(take)
		dst = append(dst, c)
		n -= take
		off = 0
	}
	return dst
}
