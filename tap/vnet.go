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
// the headers) and frameLen its full length. With a partial checksum the
// kernel says where the transport header starts (csum_start), which also
// skips IPv6 extension headers; otherwise the headers are parsed
// (HeaderLen).
func rxSplitLen(h *vnetHdr, head []byte, frameLen int) int {
	if h != nil && h.flags&vnetFNeedsCsum != 0 {
		l4 := int(h.csumStart)
		var n int
		switch h.csumOffset {
		case tcpCsumOffset:
			if l4+header.TCPMinimumSize > len(head) {
				return 0
			}
			n = l4 + int(header.TCP(head[l4:]).DataOffset())
			if n < l4+header.TCPMinimumSize {
				return 0
			}
		case udpCsumOffset:
			n = l4 + header.UDPMinimumSize
		default:
			return 0
		}
		if n >= frameLen || n >= len(head) || n > maxSplitHeader {
			return 0
		}
		return n
	}
	return HeaderLen(head)
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

// csumVerdict is the outcome of software checksum verification.
type csumVerdict uint8

const (
	// csumNone: nothing the stack would skip needs checking (not IP, or a
	// transport whose checksum gVisor always verifies, such as ICMP).
	csumNone csumVerdict = iota
	// csumGood: every checksum gVisor would skip was checked and is right.
	csumGood
	// csumBad: a checksum is wrong; the frame must be dropped.
	csumBad
	// csumUnverifiable: the IPv4 header checksum (if any) is right, but
	// the transport checksum cannot be checked frame by frame: a fragment
	// (it covers the reassembled datagram) or an IPv6 extension header we
	// do not walk.
	csumUnverifiable
	// csumMalformed: the headers are inconsistent; gVisor drops such
	// frames itself and counts them, so they are passed on.
	csumMalformed
)

// verifyChecksums checks, in software, the checksums that gVisor skips for a
// link with CapabilityRXChecksumOffload: the IPv4 header checksum and the TCP
// and UDP checksums. It is used for frames whose virtio-net header vouches for
// nothing (neither NEEDS_CSUM nor DATA_VALID); the stack cannot be told per
// packet, because the NIC overwrites pkt.RXChecksumValidated from the link's
// capabilities.
//
// The frame is head followed by tail (the two receive views); the Ethernet,
// IP and transport headers must lie in head, which is the case for every
// frame the link reads (its first view is at least minHeadView bytes).
func verifyChecksums(head, tail []byte) csumVerdict {
	if len(head) < header.EthernetMinimumSize {
		return csumNone
	}
	frameLen := len(head) + len(tail)
	l3 := head[header.EthernetMinimumSize:]
	l3Len := frameLen - header.EthernetMinimumSize
	var (
		proto      uint8
		l4off      int // from the start of the IP header
		l4len      int // transport header + payload
		src, dst   tcpip.Address
		unverified bool
	)
	isV4 := false
	switch header.Ethernet(head).Type() {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(l3)
		if !ip.IsValid(l3Len) || int(ip.HeaderLength()) > len(l3) {
			return csumMalformed
		}
		if !ip.IsChecksumValid() {
			return csumBad
		}
		isV4 = true
		if ip.More() || ip.FragmentOffset() != 0 {
			return csumUnverifiable
		}
		proto = ip.Protocol()
		l4off = int(ip.HeaderLength())
		l4len = int(ip.TotalLength()) - l4off
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	case header.IPv6ProtocolNumber:
		if len(l3) < header.IPv6MinimumSize {
			return csumMalformed
		}
		ip := header.IPv6(l3)
		if header.IPv6MinimumSize+int(ip.PayloadLength()) > l3Len {
			return csumMalformed
		}
		proto, l4off, unverified = walkIPv6Ext(l3)
		l4len = header.IPv6MinimumSize + int(ip.PayloadLength()) - l4off
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	default:
		return csumNone
	}
	var csumOff int
	switch proto {
	case uint8(header.TCPProtocolNumber):
		csumOff = tcpCsumOffset
		if l4len < header.TCPMinimumSize {
			return csumMalformed
		}
	case uint8(header.UDPProtocolNumber):
		csumOff = udpCsumOffset
		if l4len < header.UDPMinimumSize {
			return csumMalformed
		}
	default:
		switch {
		case unverified:
			return csumUnverifiable
		case isV4:
			// ICMP and the rest: gVisor verifies their checksums
			// itself; the IPv4 header checksum was checked above.
			return csumGood
		default:
			return csumNone
		}
	}
	if unverified {
		return csumUnverifiable
	}
	start := header.EthernetMinimumSize + l4off
	if start+csumOff+2 > len(head) {
		return csumMalformed
	}
	if proto == uint8(header.UDPProtocolNumber) && isV4 &&
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
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(proto), src, dst, uint16(l4len))
	if checksum.Combine(xsum, c.Checksum()) != 0xffff {
		return csumBad
	}
	return csumGood
}

// walkIPv6Ext follows the IPv6 extension headers that carry a standard
// length field (hop-by-hop, destination options), to find the transport
// header. Routing headers (the pseudo-header then uses the final
// destination), fragments and anything else end the walk with
// unverifiable set.
func walkIPv6Ext(l3 []byte) (proto uint8, off int, unverifiable bool) {
	proto = header.IPv6(l3).NextHeader()
	off = header.IPv6MinimumSize
	for i := 0; i < 8; i++ {
		switch tcpip.TransportProtocolNumber(proto) {
		case tcpip.TransportProtocolNumber(header.IPv6HopByHopOptionsExtHdrIdentifier),
			tcpip.TransportProtocolNumber(header.IPv6DestinationOptionsExtHdrIdentifier):
			if off+2 > len(l3) {
				return proto, off, true
			}
			next, n := l3[off], (int(l3[off+1])+1)*8
			proto, off = next, off+n
		case tcpip.TransportProtocolNumber(header.IPv6RoutingExtHdrIdentifier),
			tcpip.TransportProtocolNumber(header.IPv6FragmentExtHdrIdentifier):
			return proto, off, true
		default:
			return proto, off, false
		}
	}
	return proto, off, true
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
