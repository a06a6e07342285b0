//go:build linux

package main

import (
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/zcnet/zcnet/integration/contenders"
)

// stockServe is stock gVisor as a user builds it, with gVisor's defaults:
// a plain TAP device dev, fdbased, IPv4/IPv6/ARP/TCP/UDP/ICMP, and gonet
// echo servers on TCP and UDP port 7 at 192.0.2.2. It runs until SIGTERM
// or SIGKILL.
func stockServe(dev string) error {
	fd, err := contenders.OpenPlainTAP(dev)
	if err != nil {
		return err
	}
	s, err := contenders.NewStock(fd, netip.MustParsePrefix(serverAddr+"/24"), 1500, false)
	if err != nil {
		return err
	}
	ap := netip.AddrPortFrom(netip.MustParseAddr(serverAddr), 7)
	ln, err := s.ListenTCP(ap)
	if err != nil {
		return err
	}
	pc, err := s.ListenUDP(ap)
	if err != nil {
		return err
	}
	go contenders.EchoUDP(pc)
	go contenders.EchoTCP(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
