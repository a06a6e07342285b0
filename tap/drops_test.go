package tap

import (
	"net"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/tap/taptest"
)

// TestUncheckableDropped sends an IPv6 datagram whose extension headers
// push the UDP checksum past the first receive view (the smallest
// HeadViewSize, 512): the link cannot verify it frame by frame, and
// drops and counts it (RxDropUncheckable) rather than deliver it
// unchecked.
func TestUncheckableDropped(t *testing.T) {
	fa, fb, err := taptest.Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	link, err := OpenFD(Config{Name: "uncheck", Offload: OffloadOn, LinkAddress: net.HardwareAddr(stackMAC), HeadViewSize: 512}, fa)
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	peer := taptest.NewPeer(fb)
	defer peer.Close()
	d := &holdingDispatcher{}
	link.Attach(d)
	const ext = 600 // hop-by-hop options, all padding
	l4 := header.UDPMinimumSize + 8
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+ext+l4)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: peerMAC, DstAddr: stackMAC, Type: header.IPv6ProtocolNumber})
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
		PayloadLength: uint16(ext + l4), TransportProtocol: tcpip.TransportProtocolNumber(header.IPv6HopByHopOptionsExtHdrIdentifier), HopLimit: 64,
		SrcAddr: v6Peer, DstAddr: v6Stack})
	hbh := b[header.EthernetMinimumSize+header.IPv6MinimumSize:][:ext]
	hbh[0], hbh[1] = uint8(header.UDPProtocolNumber), ext/8-1
	for i, left := 2, ext-2; left > 0; {
		n := min(left, 257)
		if left-n == 1 { // a lone byte cannot be an option
			n--
		}
		hbh[i], hbh[i+1] = 1, byte(n-2) // PadN
		i, left = i+n, left-n
	}
	u := header.UDP(b[len(b)-l4:])
	u.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 7, Length: uint16(l4)})
	u.SetChecksum(^u.CalculateChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, v6Peer, v6Stack, uint16(l4))))
	if err := peer.Write(withVnet(vnetHdr{}, b)); err != nil {
		t.Fatal(err)
	}
	if !evchantest.Poll(5*time.Second, func() bool { return link.Stats().RxDropUncheckable+uint64(d.n.Load()) == 1 }) {
		t.Fatalf("frame neither dropped nor delivered: %+v", link.Stats())
	}
	if st := link.Stats(); st.RxDropUncheckable != 1 || d.n.Load() != 0 {
		t.Fatalf("RxDropUncheckable %d, delivered %d; want 1 and 0", st.RxDropUncheckable, d.n.Load())
	}
	link.Attach(nil)
	link.Wait()
}

// TestNotAttachedDropped covers the reader's guard for a frame read in the
// moment between the stack detaching (the dispatcher gone) and the reader
// stopping: it is dropped and counted, not delivered to a stale stack.
// The moment is made to last by clearing the dispatcher under a running
// reader, as Attach(nil) does first.
func TestNotAttachedDropped(t *testing.T) {
	link, _, peer := newPeerLink(t, OffloadOn)
	link.dispatch.Store(nil)
	if err := peer.Write(withVnet(vnetHdr{}, tcpSYN())); err != nil {
		t.Fatal(err)
	}
	if !evchantest.Poll(5*time.Second, func() bool { return link.Stats().RxDropNotAttached == 1 }) {
		t.Fatalf("RxDropNotAttached %d after a frame with no dispatcher, want 1", link.Stats().RxDropNotAttached)
	}
}
