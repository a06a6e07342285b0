//go:build linux

package contenders

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/zcnet/zcnet/stack"
)

// StockNIC is the NIC ID of a Stock's one NIC.
const StockNIC tcpip.NICID = 1

// Stock is gVisor built from its public packages only, as a gVisor user
// would: fdbased.New on a plain TAP device's descriptor (no virtio-net
// header: fdbased enables GSO only on socket descriptors), a stack with
// IPv4, IPv6, ARP, TCP, UDP and ICMP, and gonet's adapters.
type Stock struct {
	S  *gstack.Stack
	fd int
}

// NewStock builds the stock stack on fd (an OpenPlainTAP descriptor, which
// it owns from now on, closing it on failure too) with the IPv4 address
// addr and frames of mtu bytes. With tune, TCP gets the options zcnet's
// stack applies (TuneLikeZcnet), so the two differ only in the link and the
// socket interface; without, gVisor's defaults.
func NewStock(fd int, addr netip.Prefix, mtu uint32, tune bool) (*Stock, error) {
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	ss := &Stock{S: s, fd: fd}
	fail := func(err error) (*Stock, error) { ss.Close(); return nil, err }
	if tune {
		if err := TuneLikeZcnet(s); err != nil {
			return fail(err)
		}
	}
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: mtu, EthernetHeader: true, Address: tcpip.LinkAddress(mac)})
	if err != nil {
		return fail(fmt.Errorf("fdbased.New: %v", err))
	}
	if terr := s.CreateNIC(StockNIC, ep); terr != nil {
		return fail(fmt.Errorf("CreateNIC: %v", terr))
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(addr.Addr().As4()), PrefixLen: addr.Bits()},
	}
	if terr := s.AddProtocolAddress(StockNIC, pa, gstack.AddressProperties{}); terr != nil {
		return fail(fmt.Errorf("AddProtocolAddress: %v", terr))
	}
	s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: StockNIC})
	return ss, nil
}

// Close removes the NIC (fdbased's Attach(nil) stops and waits for its
// dispatcher), closes the stack, then the descriptor.
func (ss *Stock) Close() error {
	ss.S.RemoveNIC(StockNIC)
	ss.S.Close()
	ss.S.Wait()
	return unix.Close(ss.fd)
}

func full(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// ListenTCP listens on ap (IPv4) with gonet.
func (ss *Stock) ListenTCP(ap netip.AddrPort) (net.Listener, error) {
	return gonet.ListenTCP(ss.S, full(ap), ipv4.ProtocolNumber)
}

// ListenUDP binds ap (IPv4) with gonet.
func (ss *Stock) ListenUDP(ap netip.AddrPort) (net.PacketConn, error) {
	laddr := full(ap)
	return gonet.DialUDP(ss.S, &laddr, nil, ipv4.ProtocolNumber)
}

// Counters snapshots the stack's TCP and UDP counters and its NIC's.
func (ss *Stock) Counters() map[string]uint64 {
	st := ss.S.Stats()
	m := map[string]uint64{
		"udp_received":     st.UDP.PacketsReceived.Value(),
		"udp_rcvbuf_drops": st.UDP.ReceiveBufferErrors.Value(),
		"tcp_retransmits":  st.TCP.Retransmits.Value(),
		"tcp_timeouts":     st.TCP.Timeouts.Value(),
	}
	if nic, ok := ss.S.NICInfo()[StockNIC]; ok {
		m["link_rx_frames"] = nic.Stats.Rx.Packets.Value()
		m["link_rx_bytes"] = nic.Stats.Rx.Bytes.Value()
		m["link_tx_frames"] = nic.Stats.Tx.Packets.Value()
		m["link_tx_bytes"] = nic.Stats.Tx.Bytes.Value()
	}
	return m
}

// TuneLikeZcnet applies zcnet's stack defaults to a bare gVisor stack:
// zcnet's send and receive buffer ranges (gVisor's own 1 MiB buffers cap a
// stream's window), SACK, cubic, receive-buffer auto-tuning, and loss
// recovery by the duplicate-ACK threshold only.
func TuneLikeZcnet(s *gstack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	cc := tcpip.CongestionControlOption(stack.CongestionCubic)
	snd := tcpip.TCPSendBufferSizeRangeOption(stack.DefaultTCPSendBuffer)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption(stack.DefaultTCPReceiveBuffer)
	var recovery tcpip.TCPRecovery // stack.Options.RACK's default: duplicate-ACK threshold only
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate, &cc, &snd, &rcv, &recovery} {
		if terr := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); terr != nil {
			return fmt.Errorf("stock TCP option %T: %v", opt, terr)
		}
	}
	if terr := s.SetOption(tcpip.SendBufferSizeOption{Min: stack.DefaultTCPSendBuffer.Min, Default: gstack.DefaultBufferSize, Max: stack.DefaultTCPSendBuffer.Max}); terr != nil {
		return fmt.Errorf("stock send buffer limits: %v", terr)
	}
	if terr := s.SetOption(tcpip.ReceiveBufferSizeOption{Min: stack.DefaultTCPReceiveBuffer.Min, Default: gstack.DefaultBufferSize, Max: stack.DefaultTCPReceiveBuffer.Max}); terr != nil {
		return fmt.Errorf("stock receive buffer limits: %v", terr)
	}
	return nil
}
