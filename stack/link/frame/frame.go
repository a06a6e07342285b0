// Package frame is the one parser of received Ethernet frames: Ethernet,
// then IPv4 or IPv6 (with the extension headers gVisor walks past on
// local delivery), then TCP, UDP or ICMP. Repr.Parse fills a caller-owned
// Repr with where each header lies and the fields the links and the stack
// read per packet (addresses, fragment information, ports, TCP sequence
// numbers and flags, the payload's place), checking every length against
// the others and against the bytes given: malformed input yields an error
// value (ErrTruncated, ErrBeyondHead, ErrBadHeader), never a panic, and
// parsing never allocates.
//
// The package owns the layout and validation of headers. It does not own
// checksums (the links verify them where they know which the stack skips),
// reassembly, or any decision about a frame (split, drop, admit): callers
// read the Repr and decide. VLAN tags, IPv6 jumbograms, AH and ESP are not
// parsed: an AH or ESP header ends the walk as if it were the transport.
package frame

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Errors Parse returns. Each says why the walk stopped; the Repr still
// describes the layers before the one that failed (see Repr.Depth).
var (
	// ErrTruncated: a header, or the packet an IP header states, runs
	// past the end of the frame (or of its IP packet).
	ErrTruncated = errors.New("frame: truncated")
	// ErrBeyondHead: a header lies inside the frame but past the bytes
	// given to ParseHead (the first receive view).
	ErrBeyondHead = errors.New("frame: header beyond the bytes at hand")
	// ErrBadHeader: a header's fields contradict each other (version,
	// IPv4 header length, IPv4 total length, TCP data offset).
	ErrBadHeader = errors.New("frame: bad header")
)

// Sizes and numbers of the headers parsed.
const (
	EthernetLen = 14
	IPv4MinLen  = 20
	IPv6Len     = 40 // the fixed header
	TCPMinLen   = 20
	UDPLen      = 8
	ICMPMinLen  = 4 // type, code, checksum
	IPv6FragLen = 8

	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86dd

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58

	ipv6HopByHop   = 0
	ipv6Routing    = 43
	ipv6Fragment   = 44
	ipv6DestOpts   = 60
	ipv6Experiment = 253
	ipv6Experim2   = 254
)

// Depth says how far a parse got: each value means the headers of that
// layer, and of all before it, were read and checked.
type Depth uint8

const (
	// DepthNone: not even an Ethernet header.
	DepthNone Depth = iota
	// DepthLink: the Ethernet header (EtherType). A frame that is not IP
	// stops here without an error.
	DepthLink
	// DepthIP: the fixed IP header: version, addresses, the packet's end
	// (IPEnd), IPv4's header length and fragment fields.
	DepthIP
	// DepthNetwork: the IPv6 extension headers too: Proto and L4Off name
	// the transport (or where the walk stopped: a fragment's data, a
	// routing header with segments left). Fragments and transports other
	// than TCP, UDP and ICMP stop here without an error.
	DepthNetwork
	// DepthTransport: the TCP, UDP or ICMP header: ports (TCP, UDP),
	// sequence numbers and flags (TCP), type and code (ICMP), and the
	// payload's place.
	DepthTransport
)

// Repr is a parsed frame. Offsets count from the frame's first byte. It
// holds no reference to the bytes parsed.
type Repr struct {
	// Depth is how far the parse got (see Depth).
	Depth Depth
	// FrameLen is the frame's length as the caller gave it.
	FrameLen int
	// EtherType is the Ethernet type field.
	EtherType uint16

	// IPVersion is 4 or 6 once the IP header is read, else 0.
	IPVersion uint8
	// IPHdrLen is IPv4's header length (options included) or IPv6's
	// fixed 40 bytes; ExtLen is the IPv6 extension headers walked past.
	IPHdrLen, ExtLen int
	// IPEnd is where the IP packet ends (total or payload length): at
	// most FrameLen; Ethernet padding follows it.
	IPEnd int
	// Src and Dst are the IP addresses: IPv4's in the first 4 bytes
	// (see SrcAddr, Src4).
	Src, Dst [16]byte

	// Fragment says the packet is an IP fragment that is not atomic: then
	// L4Off is where its data starts, Proto what the data is (IPv4's
	// protocol, or the IPv6 fragment header's next header) and the
	// transport is not parsed, even for the first fragment.
	Fragment  bool
	MoreFrags bool
	// FragID is the identification (16 bits for IPv4); FragOff the
	// data's offset in bytes within the datagram.
	FragID  uint32
	FragOff int
	// Routed says the walk stopped at an IPv6 routing header with
	// segments left (at L4Off, Proto 43), which gVisor does not forward
	// and discards.
	Routed bool

	// Proto is the transport protocol number and L4Off where its header
	// starts.
	Proto uint8
	L4Off int

	// Transport fields, at DepthTransport.
	SrcPort, DstPort uint16
	// TCP only: sequence and acknowledgement numbers and the flags byte.
	Seq, Ack uint32
	TCPFlags uint8
	// ICMP only.
	ICMPType, ICMPCode uint8
	// L4HdrLen is the transport header's length: TCP's data offset, 8
	// for UDP, 4 for ICMP.
	L4HdrLen int
	// PayloadOff is where the transport payload starts and PayloadLen
	// its length up to IPEnd: PayloadOff+PayloadLen <= FrameLen.
	PayloadOff, PayloadLen int
}

// unknownLen is the frame length ParseHeaders assumes: larger than any IP
// packet, so that only the headers' own fields bound the packet.
const unknownLen = 1 << 30

// Parse parses frame, a whole Ethernet frame.
func (r *Repr) Parse(frame []byte) error { return r.ParseHead(frame, len(frame)) }

// ParseHeaders parses hdr, the front of a frame whose length is not known
// (the header part of a header split): the headers must lie in hdr, and
// IPEnd and PayloadLen are what the IP header states, unchecked against
// the frame's end.
func (r *Repr) ParseHeaders(hdr []byte) error { return r.ParseHead(hdr, unknownLen) }

// ParseHead parses a frame of frameLen bytes of which head holds the
// first len(head) (a link's first receive view; frameLen below len(head)
// counts as len(head)). Lengths the headers state are checked against
// frameLen (ErrTruncated); the headers must also lie in head
// (ErrBeyondHead).
func (r *Repr) ParseHead(head []byte, frameLen int) error {
	*r = Repr{}
	r.FrameLen = max(frameLen, len(head))
	frameLen = r.FrameLen
	if err := need(head, frameLen, EthernetLen); err != nil {
		return err
	}
	r.EtherType = binary.BigEndian.Uint16(head[12:])
	r.Depth = DepthLink
	switch r.EtherType {
	case EtherTypeIPv4:
		return r.parseIPv4(head, frameLen)
	case EtherTypeIPv6:
		return r.parseIPv6(head, frameLen)
	}
	return nil
}

// need checks that the first n bytes of a frame of frameLen bytes are in
// b.
func need(b []byte, frameLen, n int) error {
	if n > frameLen {
		return ErrTruncated
	}
	if n > len(b) {
		return ErrBeyondHead
	}
	return nil
}

func (r *Repr) parseIPv4(b []byte, frameLen int) error {
	const off = EthernetLen
	if err := need(b, frameLen, off+IPv4MinLen); err != nil {
		return err
	}
	ip := b[off:]
	hl := int(ip[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || hl < IPv4MinLen || tl < hl {
		return ErrBadHeader
	}
	if off+tl > frameLen {
		return ErrTruncated
	}
	if off+hl > len(b) {
		return ErrBeyondHead
	}
	r.IPVersion, r.IPHdrLen, r.IPEnd = 4, hl, off+tl
	copy(r.Src[:4], ip[12:16])
	copy(r.Dst[:4], ip[16:20])
	r.Proto, r.L4Off = ip[9], off+hl
	fo := binary.BigEndian.Uint16(ip[6:])
	r.Depth = DepthNetwork
	if fo&0x3fff != 0 { // More Fragments or an offset
		r.Fragment, r.MoreFrags = true, fo&0x2000 != 0
		r.FragID, r.FragOff = uint32(binary.BigEndian.Uint16(ip[4:])), int(fo&0x1fff)*8
		return nil
	}
	return r.parseTransport(b)
}

func (r *Repr) parseIPv6(b []byte, frameLen int) error {
	const off = EthernetLen
	if err := need(b, frameLen, off+IPv6Len); err != nil {
		return err
	}
	ip := b[off:]
	if ip[0]>>4 != 6 {
		return ErrBadHeader
	}
	end := off + IPv6Len + int(binary.BigEndian.Uint16(ip[4:]))
	if end > frameLen {
		return ErrTruncated
	}
	r.IPVersion, r.IPHdrLen, r.IPEnd = 6, IPv6Len, end
	r.Src, r.Dst = [16]byte(ip[8:24]), [16]byte(ip[24:40])
	r.Depth = DepthIP
	w := Ext{ip[6], off + IPv6Len, ExtDone}
	if isExtWalked(w.Proto) {
		var err error
		if w, err = WalkIPv6Ext(b, w.Proto, w.Off, end); err != nil {
			return err
		}
	}
	r.Depth = DepthNetwork
	r.ExtLen = w.Off - off - IPv6Len
	r.Proto, r.L4Off = w.Proto, w.Off
	switch w.Stop {
	case ExtFragment:
		fh := b[w.Off:]
		fo := binary.BigEndian.Uint16(fh[2:])
		r.Fragment, r.MoreFrags = true, fo&1 != 0
		r.FragID, r.FragOff = binary.BigEndian.Uint32(fh[4:]), int(fo&^7)
		// The walk checked that the 8-byte fragment header is inside
		// the packet and b.
		r.Proto, r.L4Off = fh[0], w.Off+IPv6FragLen
		return nil
	case ExtRouted:
		r.Routed = true
		return nil
	}
	return r.parseTransport(b)
}

// parseTransport reads the transport header at r.L4Off, inside the IP
// packet and inside b.
func (r *Repr) parseTransport(b []byte) error {
	var n int
	switch r.Proto {
	case ProtoTCP:
		n = TCPMinLen
	case ProtoUDP:
		n = UDPLen
	case ProtoICMP, ProtoICMPv6:
		n = ICMPMinLen
	default:
		return nil
	}
	off := r.L4Off
	if off+n > r.IPEnd {
		return ErrTruncated
	}
	if off+n > len(b) {
		return ErrBeyondHead
	}
	h := b[off:]
	switch r.Proto {
	case ProtoTCP:
		n = int(h[12]>>4) * 4
		if n < TCPMinLen || off+n > r.IPEnd {
			return ErrBadHeader
		}
		if off+n > len(b) {
			return ErrBeyondHead
		}
		r.Seq, r.Ack = binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint32(h[8:])
		r.TCPFlags = h[13]
		fallthrough
	case ProtoUDP:
		r.SrcPort, r.DstPort = binary.BigEndian.Uint16(h), binary.BigEndian.Uint16(h[2:])
	default:
		r.ICMPType, r.ICMPCode = h[0], h[1]
	}
	r.L4HdrLen = n
	r.PayloadOff = off + n
	r.PayloadLen = r.IPEnd - r.PayloadOff
	r.Depth = DepthTransport
	return nil
}

// L4Len returns the bytes from L4Off to the IP packet's end: the
// transport header and payload, or a fragment's data.
func (r *Repr) L4Len() int { return r.IPEnd - r.L4Off }

// SrcAddr and DstAddr return the IP addresses (the zero Addr before
// DepthIP).
func (r *Repr) SrcAddr() netip.Addr { return r.addr(&r.Src) }

// DstAddr: see SrcAddr.
func (r *Repr) DstAddr() netip.Addr { return r.addr(&r.Dst) }

// SrcBytes and DstBytes return the addresses' bytes (4 or 16; none before
// DepthIP), aliasing r.
func (r *Repr) SrcBytes() []byte { return r.Src[:r.addrLen()] }

// DstBytes: see SrcBytes.
func (r *Repr) DstBytes() []byte { return r.Dst[:r.addrLen()] }

func (r *Repr) addrLen() int {
	switch r.IPVersion {
	case 4:
		return 4
	case 6:
		return 16
	}
	return 0
}

func (r *Repr) addr(a *[16]byte) netip.Addr {
	switch r.IPVersion {
	case 4:
		return netip.AddrFrom4([4]byte(a[:4]))
	case 6:
		return netip.AddrFrom16(*a)
	}
	return netip.Addr{}
}

// isExtWalked reports whether WalkIPv6Ext walks past header proto.
func isExtWalked(proto uint8) bool {
	switch proto {
	case ipv6HopByHop, ipv6Routing, ipv6Fragment, ipv6DestOpts, ipv6Experiment, ipv6Experim2:
		return true
	}
	return false
}

// ExtStop says why WalkIPv6Ext stopped.
type ExtStop uint8

const (
	// ExtDone: at a header the walk does not go past (a transport, or
	// one treated as such: AH, ESP, no next header, unknown).
	ExtDone ExtStop = iota
	// ExtFragment: at a fragment header that is not atomic.
	ExtFragment
	// ExtRouted: at a routing header with segments left.
	ExtRouted
)

// Ext is where WalkIPv6Ext stopped: header Proto at offset Off.
type Ext struct {
	Proto uint8
	Off   int
	Stop  ExtStop
}

// IPv6 extension header fields the walk reads (RFC 8200 §4):
//
//	offset size  field
//	0      1     next header         (every extension header)
//	1      1     hdr ext len         8-byte units beyond the first 8
//	                                 (hop-by-hop, routing, destination
//	                                 options; reserved in the fragment
//	                                 header, ignored by gVisor in the
//	                                 experiment header, both 8 bytes)
//	3      1     segments left       (routing)
//	2      2     offset<<3 | M       (fragment; 2 reserved bits between)
//	4      4     identification      (fragment)
const ipv6ExtMinLen = 8

// WalkIPv6Ext follows the IPv6 extension headers that gVisor walks past
// on local delivery, starting with header proto at offset off of b, to
// the transport header: hop-by-hop and destination options, routing
// headers with no segments left (RFC 8200 §4.4: ignored), atomic
// fragments (RFC 6946: whole packets) and experiment headers (gVisor reads
// them as 8 bytes). end is where the packet ends, counted like off; b may
// stop sooner. A header reaching past end is ErrTruncated; one whose
// first 8 bytes (all the walk reads) reach past b, ErrBeyondHead.
// Hop-by-hop headers are followed wherever they are, although gVisor
// accepts them only first: the walk may read more than the stack does,
// never less.
func WalkIPv6Ext(b []byte, proto uint8, off, end int) (Ext, error) {
	for {
		if !isExtWalked(proto) {
			return Ext{proto, off, ExtDone}, nil
		}
		if off+ipv6ExtMinLen > end {
			return Ext{proto, off, ExtDone}, ErrTruncated
		}
		if off+ipv6ExtMinLen > len(b) {
			return Ext{proto, off, ExtDone}, ErrBeyondHead
		}
		n := (int(b[off+1]) + 1) * 8
		switch proto {
		case ipv6Routing:
			if b[off+3] != 0 {
				return Ext{proto, off, ExtRouted}, nil
			}
		case ipv6Fragment:
			// Offset and M both zero make an atomic fragment.
			if binary.BigEndian.Uint16(b[off+2:])&0xfff9 != 0 {
				return Ext{proto, off, ExtFragment}, nil
			}
			n = ipv6ExtMinLen
		case ipv6Experiment, ipv6Experim2:
			n = ipv6ExtMinLen
		}
		proto = b[off]
		off += n
		if off > end {
			return Ext{proto, off, ExtDone}, ErrTruncated
		}
	}
}
