package link

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Ethernet framing shared by every zcnet link (the TAP link, the in-process
// pair, the shared-memory ring, the AF_XDP socket): they carry the same
// frames and differ only in how the frames move.

// AddEthernetHeader pushes pkt's Ethernet header: to the route's remote
// MAC, from the route's local MAC or, when the route has none, from self.
// It implements stack.LinkEndpoint.AddHeader for zcnet's links.
func AddEthernetHeader(pkt *stack.PacketBuffer, self tcpip.LinkAddress) {
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = self
	}
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: src, DstAddr: pkt.EgressRoute.RemoteLinkAddress, Type: pkt.NetworkProtocolNumber})
}

// ParseEthernetHeader consumes pkt's Ethernet header and sets its network
// protocol; false if the packet is too short. It implements
// stack.LinkEndpoint.ParseHeader for zcnet's links.
func ParseEthernetHeader(pkt *stack.PacketBuffer) bool {
	hdr, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return false
	}
	pkt.NetworkProtocolNumber = header.Ethernet(hdr).Type()
	return true
}
