//go:build linux

package main

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

// stockNIC is the stock stack's only NIC.
const stockNIC tcpip.NICID = 1

// newStock builds the anchor from gVisor's public packages only, as a gVisor
// user would: a plain TAP device (no virtio-net header: fdbased enables GSO
// only on socket descriptors), fdbased.New on its descriptor, a stack with
// IPv4, IPv6, ARP, TCP, UDP and ICMP, and a server on gonet's listeners,
// which it returns.
//
// Unless cfg.stockDefaults is set, TCP gets the options zcnet's stack applies
// (stack.DefaultTCPSendBuffer and DefaultTCPReceiveBuffer, SACK, cubic,
// receive-buffer auto-tuning), so the two differ only in the link and the
// socket interface; gVisor's own 1 MiB buffers cap a stream's window.
func newStock(t *topology, ns netns, dev string, kernel, stackAddr netip.Prefix, cfg config) (*server, func() map[string]uint64, error) {
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, err = openPlainTAP(dev)
		return err
	}); err != nil {
		return nil, nil, err
	}
	// Teardown order: remove the NIC (fdbased's Attach(nil) stops and
	// waits for its dispatcher), close the stack, then the descriptor.
	var s *gstack.Stack
	t.onClose(func() error {
		if s != nil {
			s.RemoveNIC(stockNIC)
			s.Close()
			s.Wait()
		}
		return unix.Close(fd)
	})
	if err := addrDev(ns, dev, kernel); err != nil {
		return nil, nil, err
	}
	s = gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	if !cfg.stockDefaults {
		if err := tuneStock(s); err != nil {
			return nil, nil, err
		}
	}
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: mtu, EthernetHeader: true, Address: tcpip.LinkAddress(mac)})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: fdbased.New: %v", errSetup, err)
	}
	if terr := s.CreateNIC(stockNIC, ep); terr != nil {
		return nil, nil, fmt.Errorf("%w: CreateNIC: %v", errSetup, terr)
	}
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(stackAddr.Addr().As4()), PrefixLen: stackAddr.Bits()},
	}
	if terr := s.AddProtocolAddress(stockNIC, pa, gstack.AddressProperties{}); terr != nil {
		return nil, nil, fmt.Errorf("%w: AddProtocolAddress: %v", errSetup, terr)
	}
	s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: stockNIC})

	// Registered after the stack, so it is closed before it.
	srv := serveOn(t, netip.AddrPortFrom(stackAddr.Addr(), portZC), cfg)

	full := func(off int) tcpip.FullAddress {
		ap := srv.port(off)
		return tcpip.FullAddress{Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
	}
	var ls netListeners
	for _, l := range []struct {
		off int
		ln  *net.Listener
	}{{offSink, &ls.sink}, {offSource, &ls.source}, {offEcho, &ls.echo}} {
		ln, err := gonet.ListenTCP(s, full(l.off), ipv4.ProtocolNumber)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gonet.ListenTCP %s: %v", errSetup, srv.port(l.off), err)
		}
		*l.ln = ln
	}
	laddr := full(offUDP)
	pc, err := gonet.DialUDP(s, &laddr, nil, ipv4.ProtocolNumber)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: gonet.DialUDP %s: %v", errSetup, srv.port(offUDP), err)
	}
	ls.udp = pc
	srv.serveNet(ls)
	return srv, func() map[string]uint64 { return stockCounters(s) }, nil
}

// stockCounters snapshots the stock stack's UDP counters and its NIC's.
func stockCounters(s *gstack.Stack) map[string]uint64 {
	st := s.Stats()
	m := map[string]uint64{
		"udp_received":     st.UDP.PacketsReceived.Value(),
		"udp_rcvbuf_drops": st.UDP.ReceiveBufferErrors.Value(),
		"tcp_retransmits":  st.TCP.Retransmits.Value(),
		"tcp_timeouts":     st.TCP.Timeouts.Value(),
	}
	if nic, ok := s.NICInfo()[stockNIC]; ok {
		m["link_rx_frames"] = nic.Stats.Rx.Packets.Value()
		m["link_rx_bytes"] = nic.Stats.Rx.Bytes.Value()
		m["link_tx_frames"] = nic.Stats.Tx.Packets.Value()
		m["link_tx_bytes"] = nic.Stats.Tx.Bytes.Value()
	}
	return m
}

// tuneStock applies zcnet's stack defaults to a bare gVisor stack.
func tuneStock(s *gstack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	cc := tcpip.CongestionControlOption(stack.CongestionCubic)
	snd := tcpip.TCPSendBufferSizeRangeOption(stack.DefaultTCPSendBuffer)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption(stack.DefaultTCPReceiveBuffer)
	var recovery tcpip.TCPRecovery // stack.Options.RACK's default: duplicate-ACK threshold only
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate, &cc, &snd, &rcv, &recovery} {
		if terr := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); terr != nil {
			return fmt.Errorf("%w: stock TCP option %T: %v", errSetup, opt, terr)
		}
	}
	if terr := s.SetOption(tcpip.SendBufferSizeOption{Min: stack.DefaultTCPSendBuffer.Min, Default: gstack.DefaultBufferSize, Max: stack.DefaultTCPSendBuffer.Max}); terr != nil {
		return fmt.Errorf("%w: stock send buffer limits: %v", errSetup, terr)
	}
	if terr := s.SetOption(tcpip.ReceiveBufferSizeOption{Min: stack.DefaultTCPReceiveBuffer.Min, Default: gstack.DefaultBufferSize, Max: stack.DefaultTCPReceiveBuffer.Max}); terr != nil {
		return fmt.Errorf("%w: stock receive buffer limits: %v", errSetup, terr)
	}
	return nil
}
