package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/stack/link/frame"
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
// stack (local = destination). The frame may be cut after its headers.
func tcpID(b []byte) (tcpip.NetworkProtocolNumber, gstack.TransportEndpointID, bool) {
	var id gstack.TransportEndpointID
	var r frame.Repr
	if r.ParseHeaders(b) != nil || r.Depth < frame.DepthTransport || r.Proto != uint8(header.TCPProtocolNumber) {
		return 0, id, false
	}
	if r.IPVersion == 4 {
		id.LocalAddress, id.RemoteAddress = tcpip.AddrFrom4([4]byte(r.Dst[:4])), tcpip.AddrFrom4([4]byte(r.Src[:4]))
	} else {
		id.LocalAddress, id.RemoteAddress = tcpip.AddrFrom16(r.Dst), tcpip.AddrFrom16(r.Src)
	}
	id.LocalPort, id.RemotePort = r.DstPort, r.SrcPort
	return tcpip.NetworkProtocolNumber(r.EtherType), id, true
}
