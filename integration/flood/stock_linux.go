//go:build linux

package main

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

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
)

// stockServe is stock gVisor as a user builds it, with gVisor's defaults:
// a plain TAP device dev, fdbased, IPv4/IPv6/ARP/TCP/UDP/ICMP, and gonet
// echo servers on TCP and UDP port 7 at 192.0.2.2. It runs until SIGTERM
// or SIGKILL.
func stockServe(dev string) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF %s: %w", dev, err)
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^0x01 | 0x02
	ep, err := fdbased.New(&fdbased.Options{FDs: []int{fd}, MTU: 1500, EthernetHeader: true, Address: tcpip.LinkAddress(mac)})
	if err != nil {
		return err
	}
	if terr := s.CreateNIC(1, ep); terr != nil {
		return fmt.Errorf("CreateNIC: %v", terr)
	}
	addr := tcpip.AddrFrom4([4]byte{192, 0, 2, 2})
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}}
	if terr := s.AddProtocolAddress(1, pa, gstack.AddressProperties{}); terr != nil {
		return fmt.Errorf("AddProtocolAddress: %v", terr)
	}
	s.AddRoute(tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1})
	full := tcpip.FullAddress{NIC: 1, Addr: addr, Port: 7}
	ln, err := gonet.ListenTCP(s, full, ipv4.ProtocolNumber)
	if err != nil {
		return err
	}
	pc, err := gonet.DialUDP(s, &full, nil, ipv4.ProtocolNumber)
	if err != nil {
		return err
	}
	go udpEcho(pc)
	go tcpEcho(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
