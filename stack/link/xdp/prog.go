package xdp

import (
	"encoding/binary"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The XDP program, assembled here rather than compiled from C, so building
// zcnet needs no clang and no generated object file.
//
// It sends to the socket only what belongs to the stack and passes every
// other frame to the kernel unchanged (XDP_PASS), so the host's own
// traffic on the interface keeps working:
//
//   - IPv4 whose destination is in the map addrs4;
//   - ARP whose target protocol address is in addrs4 (requests for our
//     addresses and the replies to our requests);
//   - IPv6 whose destination is in addrs6;
//   - ICMPv6 neighbour solicitations (RFC 4861 §4.3, sent to a multicast
//     address) whose target is in addrs6.
//
// Everything else — other addresses, multicast and broadcast IP, other
// EtherTypes, frames too short to hold the headers read — is XDP_PASS.
// The redirect goes through the XSKMAP xsks keyed by the receive queue,
// with XDP_PASS as the action when no socket serves that queue (the flags
// argument of bpf_redirect_map, kernel 5.3 and later), so frames on
// another queue are never dropped.

// Map names, as the program's instructions reference them.
const (
	mapAddrs4 = "addrs4"
	mapAddrs6 = "addrs6"
	mapXSKs   = "xsks"
	progName  = "zcnet_xdp"
)

// maxAddrs bounds the stack addresses each address map holds.
const maxAddrs = 64

// maxQueues bounds the queue index the socket map can hold.
const maxQueues = 256

// Offsets in struct xdp_md (include/uapi/linux/bpf.h).
const (
	xdpMDData         = 0
	xdpMDDataEnd      = 4
	xdpMDRxQueueIndex = 16
)

// XDP verdicts.
const (
	xdpPass = 2
)

// Frame offsets (Ethernet header 14 bytes, no VLAN tag).
const (
	offEtherType = 12
	offL3        = 14
	offIPv4Dst   = offL3 + 16 // RFC 791
	endIPv4Hdr   = offL3 + 20
	offARPTPA    = offL3 + 24 // RFC 826, Ethernet/IPv4: target protocol address
	endARP       = offL3 + 28
	offIPv6Next  = offL3 + 6 // RFC 8200
	offIPv6Dst   = offL3 + 24
	endIPv6Hdr   = offL3 + 40
	offICMPv6    = endIPv6Hdr
	offNSTarget  = offICMPv6 + 8 // RFC 4861 §4.3
	endNS        = offNSTarget + 16
)

const (
	icmpv6Proto           = 58
	icmpv6NeighborSolicit = 135
)

// wire16 is the value a native-endian 16-bit load gives for the big-endian
// bytes of v: how the program compares EtherTypes.
func wire16(v uint16) int32 {
	return int32(binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v)))
}

// programSpec returns the collection of the program and its three maps.
// It is pure: nothing is loaded.
func programSpec() *ebpf.CollectionSpec {
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			mapAddrs4: {Name: mapAddrs4, Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: maxAddrs},
			mapAddrs6: {Name: mapAddrs6, Type: ebpf.Hash, KeySize: 16, ValueSize: 1, MaxEntries: maxAddrs},
			mapXSKs:   {Name: mapXSKs, Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: maxQueues},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progName: {Name: progName, Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: instructions()},
		},
	}
}

// instructions is the program. Registers: R6 the context (kept across
// calls), R2 the packet start, R3 its end, R4 and R5 scratch; the key for a
// map lookup is copied to the stack below R10.
func instructions() asm.Instructions {
	// bound jumps to pass unless the packet holds end bytes.
	bound := func(end int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, end),
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		}
	}
	// copy16 copies 16 bytes at R2+off to R10-16.
	copy16 := func(off int16) asm.Instructions {
		var ins asm.Instructions
		for i := int16(0); i < 16; i += 4 {
			ins = append(ins,
				asm.LoadMem(asm.R5, asm.R2, off+i, asm.Word),
				asm.StoreMem(asm.RFP, -16+i, asm.R5, asm.Word))
		}
		return ins
	}
	var p asm.Instructions
	add := func(ins ...asm.Instruction) { p = append(p, ins...) }
	addAll := func(ins asm.Instructions) { p = append(p, ins...) }

	add(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, xdpMDData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMDDataEnd, asm.Word),
	)
	addAll(bound(offL3))
	add(
		asm.LoadMem(asm.R5, asm.R2, offEtherType, asm.Half),
		asm.JEq.Imm(asm.R5, wire16(0x0800), "ipv4"),
		asm.JEq.Imm(asm.R5, wire16(0x0806), "arp"),
		asm.JEq.Imm(asm.R5, wire16(0x86dd), "ipv6"),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	// IPv4: the destination address.
	p = append(p, bound(endIPv4Hdr)...)
	p[len(p)-3] = p[len(p)-3].WithSymbol("ipv4")
	add(
		asm.LoadMem(asm.R5, asm.R2, offIPv4Dst, asm.Word),
		asm.Ja.Label("lookup4"),
	)
	// ARP: the target protocol address.
	p = append(p, bound(endARP)...)
	p[len(p)-3] = p[len(p)-3].WithSymbol("arp")
	add(
		asm.LoadMem(asm.R5, asm.R2, offARPTPA, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word).WithSymbol("lookup4"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapAddrs4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.Ja.Label("redirect"),
	)
	// IPv6: the destination, or a neighbour solicitation's target when the
	// destination is multicast.
	p = append(p, bound(endIPv6Hdr)...)
	p[len(p)-3] = p[len(p)-3].WithSymbol("ipv6")
	add(
		asm.LoadMem(asm.R5, asm.R2, offIPv6Dst, asm.Byte),
		asm.JNE.Imm(asm.R5, 0xff, "unicast6"),
		asm.LoadMem(asm.R5, asm.R2, offIPv6Next, asm.Byte),
		asm.JNE.Imm(asm.R5, icmpv6Proto, "pass"),
	)
	addAll(bound(endNS))
	add(
		asm.LoadMem(asm.R5, asm.R2, offICMPv6, asm.Byte),
		asm.JNE.Imm(asm.R5, icmpv6NeighborSolicit, "pass"),
	)
	addAll(copy16(offNSTarget))
	add(asm.Ja.Label("lookup6"))
	c := copy16(offIPv6Dst)
	c[0] = c[0].WithSymbol("unicast6")
	addAll(c)
	add(
		asm.Mov.Reg(asm.R2, asm.RFP).WithSymbol("lookup6"),
		asm.Add.Imm(asm.R2, -16),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapAddrs6),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		// Redirect to the socket of this queue; XDP_PASS if there is none.
		asm.LoadMem(asm.R2, asm.R6, xdpMDRxQueueIndex, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapXSKs),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
	return p
}
