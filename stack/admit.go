package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/zcnet/zcnet/stack/link"
)

// synPressure is the link.SYNPressure of the stack's links: SYN cookies are
// on for every listener while any link refuses SYNs over its budget, so
// that a listener answers each SYN it gets without creating a half-open
// connection, and so serves more of them (new connections then go without
// window scaling and SACK, which gVisor's cookies do not carry).
func (st *Stack) synPressure(on bool) {
	delta, edge := int32(-1), int32(0)
	if on {
		delta, edge = 1, 1
	}
	if st.synFloods.Add(delta) != edge {
		return // another link is still (or already) under pressure
	}
	opt := tcpip.TCPAlwaysUseSynCookies(on)
	if err := st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		st.log.Warn("SYN cookies", "on", on, "err", err.String())
		return
	}
	st.log.Info("SYN flood: links refuse SYNs over their budget; SYN cookies for every listener", "on", on)
}

// connLookup returns the link.ConnLookup of NIC nic: a demuxer lookup, as
// gVisor would do it on delivery, of the frame's TCP 4-tuple.
func (st *Stack) connLookup(nic tcpip.NICID) link.ConnLookup {
	return func(frame []byte) link.ConnKind {
		netProto, id, ok := tcpID(frame)
		if !ok {
			return link.ConnNone
		}
		ep := st.s.FindTransportEndpoint(netProto, tcp.ProtocolNumber, id, nic)
		if ep == nil && netProto == header.IPv4ProtocolNumber {
			// A dual-stack (IPv6) socket also takes IPv4.
			ep = st.s.FindTransportEndpoint(header.IPv6ProtocolNumber, tcp.ProtocolNumber, id, nic)
		}
		return connKind(ep)
	}
}

// connected reports whether the TCP segment in frame belongs to a
// connection of its own (not a listener, not a closed port).
func (st *Stack) connected(frame []byte) bool {
	return st.connLookup(0)(frame) == link.ConnEstablished
}

// connKind says whether ep, found for a TCP segment, queues it on a
// listener.
func connKind(ep gstack.TransportEndpoint) link.ConnKind {
	switch e := ep.(type) {
	case nil:
		return link.ConnNone
	case *tcp.Endpoint:
		if e.EndpointState() == tcp.StateListen {
			return link.ConnListener
		}
	}
	return link.ConnEstablished
}

// tcpID parses the TCP 4-tuple of an Ethernet frame, as seen from the
// stack (local = destination).
func tcpID(frame []byte) (tcpip.NetworkProtocolNumber, gstack.TransportEndpointID, bool) {
	var id gstack.TransportEndpointID
	if len(frame) < header.EthernetMinimumSize {
		return 0, id, false
	}
	l3 := frame[header.EthernetMinimumSize:]
	var l4 []byte
	proto := header.Ethernet(frame).Type()
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(l3) < header.IPv4MinimumSize {
			return 0, id, false
		}
		ip := header.IPv4(l3)
		hl := int(ip.HeaderLength())
		if hl < header.IPv4MinimumSize || len(l3) < hl {
			return 0, id, false
		}
		id.LocalAddress, id.RemoteAddress = ip.DestinationAddress(), ip.SourceAddress()
		l4 = l3[hl:]
	case header.IPv6ProtocolNumber:
		if len(l3) < header.IPv6MinimumSize {
			return 0, id, false
		}
		ip := header.IPv6(l3)
		id.LocalAddress, id.RemoteAddress = ip.DestinationAddress(), ip.SourceAddress()
		l4 = l3[header.IPv6MinimumSize:]
	default:
		return 0, id, false
	}
	if len(l4) < header.TCPMinimumSize {
		return 0, id, false
	}
	t := header.TCP(l4)
	id.LocalPort, id.RemotePort = t.DestinationPort(), t.SourcePort()
	return proto, id, true
}
