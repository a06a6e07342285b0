package hostile

import (
	"bytes"
	"net"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/tap"
)

// capture is a NetworkDispatcher that hands each frame it is given to a
// channel, whole (Ethernet header included).
type capture chan []byte

func (c capture) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	select {
	case c <- append([]byte(nil), v.AsSlice()...):
	default:
	}
}

func (capture) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestInjectorReachesTAPUnchanged: a malformed frame written with an
// Injector on the kernel side of a TAP device arrives at the link on the
// other side byte for byte, with and without a virtio-net header on the
// injecting socket.
func TestInjectorReachesTAPUnchanged(t *testing.T) {
	ns := nstest.New(t)
	name := nstest.UniqueName(t, "zh")
	var link *tap.Link
	if err := ns.Do(func() (err error) {
		link, err = tap.Open(tap.Config{Name: name, Offload: tap.OffloadOff, Queues: 1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer link.Wait()
	defer link.Close()
	frames := make(capture, 16)
	link.Attach(frames)
	ns.MustRun("sysctl", "-q", "-w", "net.ipv6.conf."+name+".disable_ipv6=1")
	ns.MustRun("ip", "link", "set", name, "up")

	var plain, vnet *Injector
	var kernelMAC net.HardwareAddr
	if err := ns.Do(func() (err error) {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		kernelMAC = ifc.HardwareAddr
		if plain, err = NewInjector(name, false); err != nil {
			return err
		}
		vnet, err = NewInjector(name, true)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	defer vnet.Close()

	n := testNet
	n.SrcMAC, n.DstMAC = tcpip.LinkAddress(kernelMAC), link.LinkAddress()
	seg := TCP{SrcPort: 1, DstPort: 2, Flags: header.TCPFlagSyn | header.TCPFlagFin}.Marshal(n.Src4, n.Dst4)
	bad := BadL4Checksum(SetIPv4TotalLength(n.FrameV4(header.TCPProtocolNumber, seg, IPv4{}), 30))

	expect := func(how string) {
		t.Helper()
		// Skip anything else the kernel sends (there should be nothing
		// with IPv6 off and no address, but be tolerant).
		timeout := time.After(10 * time.Second)
		for {
			select {
			case got := <-frames:
				if bytes.Equal(got, bad) {
					return
				}
			case <-timeout:
				t.Fatalf("%s: injected frame did not arrive unchanged", how)
			}
		}
	}
	if sent, err := plain.Send(bad); err != nil || sent != 1 {
		t.Fatalf("Send: %d, %v", sent, err)
	}
	expect("plain")
	if err := vnet.SendVnet(VnetHdr{}, bad); err != nil {
		t.Fatal(err)
	}
	expect("vnet")
	if err := plain.SendVnet(VnetHdr{}, bad); err == nil {
		t.Fatal("SendVnet on a plain injector succeeded")
	}
}
