package stack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link/pair"
)

// Fuzz targets for the zero-copy plumbing's view of outside input: the
// headers of every received frame pass through parseFlow (via the links'
// payload hook) before the stack sees them, and then through the stack.

// fuzzFrame builds an Ethernet frame with an IPv4 or IPv6 header and a TCP
// or UDP header and payload, for seeds.
func fuzzFrame(v6 bool, proto tcpip.TransportProtocolNumber, sport, dport uint16, payload []byte) []byte {
	var l4 []byte
	if proto == header.TCPProtocolNumber {
		l4 = make([]byte, header.TCPMinimumSize+len(payload))
		header.TCP(l4).Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, SeqNum: 1000, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 1000})
	} else {
		l4 = make([]byte, header.UDPMinimumSize+len(payload))
		header.UDP(l4).Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(l4))})
	}
	copy(l4[len(l4)-len(payload):], payload)
	var l3 []byte
	if v6 {
		l3 = make([]byte, header.IPv6MinimumSize+len(l4))
		header.IPv6(l3).Encode(&header.IPv6Fields{PayloadLength: uint16(len(l4)), TransportProtocol: proto, HopLimit: 64,
			SrcAddr: tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}), DstAddr: tcpip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})})
	} else {
		l3 = make([]byte, header.IPv4MinimumSize+len(l4))
		ip := header.IPv4(l3)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(l3)), TTL: 64, Protocol: uint8(proto),
			SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), DstAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 2})})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	copy(l3[len(l3)-len(l4):], l4)
	f := make([]byte, header.EthernetMinimumSize+len(l3))
	et := header.IPv4ProtocolNumber
	if v6 {
		et = header.IPv6ProtocolNumber
	}
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x01", DstAddr: "\x02\x00\x00\x00\x00\x02", Type: et})
	copy(f[header.EthernetMinimumSize:], l3)
	return f
}

func addFrameSeeds(f *testing.F) {
	f.Add(fuzzFrame(false, header.TCPProtocolNumber, 40000, 80, []byte("GET / HTTP/1.1\r\n")))
	f.Add(fuzzFrame(true, header.TCPProtocolNumber, 40000, 80, []byte("payload")))
	f.Add(fuzzFrame(false, header.UDPProtocolNumber, 40001, 53, []byte("query")))
	f.Add(fuzzFrame(true, header.UDPProtocolNumber, 40001, 53, []byte("query")))
	f.Add(withHopByHop(fuzzFrame(true, header.UDPProtocolNumber, 40001, 53, []byte("query"))))
	f.Add([]byte{})
	f.Add(make([]byte, header.EthernetMinimumSize))
}

// withHopByHop returns an IPv6 frame with an empty hop-by-hop options
// header (8 bytes, PadN) inserted before its transport header.
func withHopByHop(f []byte) []byte {
	const l3 = header.EthernetMinimumSize
	g := append(bytes.Clone(f[:l3+header.IPv6MinimumSize]), f[l3+6], 0, 1, 4, 0, 0, 0, 0)
	g = append(g, f[l3+header.IPv6MinimumSize:]...)
	ip := header.IPv6(g[l3:])
	ip.SetNextHeader(0)
	ip.SetPayloadLength(ip.PayloadLength() + 8)
	return g
}

// FuzzParseFlow checks parseFlow against the header layout on any input:
// it never panics or changes its input, accepts only IPv4 or IPv6 frames
// carrying TCP or UDP, and when it accepts, the key it returns is the
// frame's own addresses and ports seen from the receiver (and the TCP
// sequence number the frame's). The key is then fed to the registry's hook
// with a flow registered for it, which must keep the flow within its bound.
func FuzzParseFlow(f *testing.F) {
	addFrameSeeds(f)
	// One registry for all inputs (it is 256 KiB of port counters); each
	// input registers its flow and closes it again.
	st := &Stack{}
	f.Fuzz(func(t *testing.T, hdr []byte) {
		orig := bytes.Clone(hdr)
		key, seq, ok := parseFlow(hdr)
		if !bytes.Equal(hdr, orig) {
			t.Fatal("parseFlow changed its input")
		}
		if !ok {
			return
		}
		var src, dst []byte
		var l4off int
		switch header.Ethernet(hdr).Type() {
		case header.IPv4ProtocolNumber:
			l3 := hdr[header.EthernetMinimumSize:]
			src, dst = l3[12:16], l3[16:20]
			l4off = header.EthernetMinimumSize + int(l3[0]&0x0f)*4
		case header.IPv6ProtocolNumber:
			l3 := hdr[header.EthernetMinimumSize:]
			src, dst = l3[8:24], l3[24:40]
			l4off = header.EthernetMinimumSize + header.IPv6MinimumSize
			// Past the extension headers gVisor walks: hop-by-hop,
			// routing (no segments left), destination options by
			// their length; fragment (atomic) and experiment headers
			// as 8 bytes.
			for next := l3[6]; next != uint8(key.proto); {
				n := 8
				switch next {
				case 0, 43, 60:
					n = 8 * (int(hdr[l4off+1]) + 1)
				case 44, 253, 254:
				default:
					t.Fatalf("accepted a transport behind IPv6 header %d", next)
				}
				next = hdr[l4off]
				l4off += n
			}
		default:
			t.Fatalf("accepted Ethernet type %#x", header.Ethernet(hdr).Type())
		}
		if key.proto != header.TCPProtocolNumber && key.proto != header.UDPProtocolNumber {
			t.Fatalf("accepted transport protocol %d", key.proto)
		}
		l4min := header.UDPMinimumSize
		if key.proto == header.TCPProtocolNumber {
			l4min = header.TCPMinimumSize
		}
		if l4off+l4min > len(hdr) {
			t.Fatalf("accepted a %d-byte frame whose transport header needs %d", len(hdr), l4off+l4min)
		}
		l4 := hdr[l4off:]
		if !bytes.Equal(key.remote.Addr().AsSlice(), src) || !bytes.Equal(key.local.Addr().AsSlice(), dst) {
			t.Fatalf("key %v <- %v, frame %x -> %x", key.local, key.remote, dst, src)
		}
		if key.remote.Port() != binary.BigEndian.Uint16(l4) || key.local.Port() != binary.BigEndian.Uint16(l4[2:]) {
			t.Fatalf("key ports %d <- %d, frame %x", key.local.Port(), key.remote.Port(), l4[:4])
		}
		if key.proto == header.TCPProtocolNumber && uint32(seq) != binary.BigEndian.Uint32(l4[4:]) {
			t.Fatalf("sequence number %d, frame %x", seq, l4[4:8])
		}

		// The hook with a flow for exactly this key: the payload after the
		// headers becomes one shadow, within the flow's bound.
		const bound = 4096
		fl, err := st.RegisterFlow(key.proto, key.local, key.remote, bound)
		if err != nil {
			if key.local.Port() == 0 {
				return // RegisterFlow wants a local port
			}
			t.Fatal(err)
		}
		defer fl.Close()
		for i := range 3 {
			v := buffer.NewViewWithData(bytes.Repeat(hdr[:min(len(hdr), 1500)], 1+i))
			st.zc.hook(hdr, v, i)
			v.Release()
			if s := fl.Stats(); s.ShadowBytes > bound && s.Shadows > 1 {
				t.Fatalf("flow holds %d shadows, %d bytes, over its %d-byte bound", s.Shadows, s.ShadowBytes, bound)
			}
		}
		// Registration unmaps IPv4-mapped addresses and parseFlow does not;
		// such frames are invalid on the wire (RFC 4291 §2.5.5.2) and never
		// reach a socket, so they need no shadow.
		mapped := normAP(key.local) != key.local || normAP(key.remote) != key.remote
		if s := fl.Stats(); s.Shadows == 0 && !mapped {
			t.Fatal("the hook kept no shadow for a frame of a registered flow")
		}
		fl.Close()
		if s := fl.Stats(); s.Shadows != 0 || s.ShadowBytes != 0 {
			t.Fatalf("closed flow still holds %+v", s)
		}
	})
}

// fuzzStack is a stack on one end of an in-process pair, with sockets and
// zero-copy flows listening, and the other end of the pair left unattached
// so that a test can write any frame into it.
type fuzzStack struct {
	st      *Stack
	in      *pair.Endpoint    // write frames here
	rx      *pair.Endpoint    // the stack's end
	mac     tcpip.LinkAddress // the stack's MAC
	udp     tcpip.Endpoint
	udpFlow *Flow
	sent    uint64
}

func newFuzzStack(tb testing.TB) *fuzzStack {
	tb.Helper()
	in, rx, err := pair.New(pair.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	st, err := New(Options{})
	if err != nil {
		in.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if _, err := st.AddNIC(rx, NICConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")}}); err != nil {
		tb.Fatal(err)
	}
	fs := &fuzzStack{st: st, in: in, rx: rx, mac: rx.LinkAddress()}
	var wq waiter.Queue
	ln, terr := st.Netstack().NewEndpoint(tcp.ProtocolNumber, header.IPv6ProtocolNumber, &wq)
	if terr != nil {
		tb.Fatal(terr)
	}
	tb.Cleanup(ln.Close)
	if terr := ln.Bind(tcpip.FullAddress{Port: 80}); terr != nil {
		tb.Fatal(terr)
	}
	if terr := ln.Listen(16); terr != nil {
		tb.Fatal(terr)
	}
	lf, err := st.RegisterFlow(tcp.ProtocolNumber, netip.AddrPortFrom(netip.Addr{}, 80), netip.AddrPort{}, 64<<10)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(lf.Close)
	fs.udp, terr = st.Netstack().NewEndpoint(udp.ProtocolNumber, header.IPv6ProtocolNumber, &wq)
	if terr != nil {
		tb.Fatal(terr)
	}
	tb.Cleanup(fs.udp.Close)
	if terr := fs.udp.Bind(tcpip.FullAddress{Port: 53}); terr != nil {
		tb.Fatal(terr)
	}
	if fs.udpFlow, err = st.RegisterFlow(udp.ProtocolNumber, netip.AddrPortFrom(netip.Addr{}, 53), netip.AddrPort{}, 64<<10); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(fs.udpFlow.Close)
	return fs
}

// deliver writes frame into the pair towards the stack and waits until the
// stack's end has processed it (delivered or dropped).
func (fs *fuzzStack) deliver(tb testing.TB, frame []byte) {
	tb.Helper()
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	var l gstack.PacketBufferList
	l.PushBack(pkt)
	n, terr := fs.in.WritePackets(l)
	pkt.DecRef()
	if terr != nil || n != 1 {
		tb.Fatalf("WritePackets: %d, %v", n, terr)
	}
	fs.sent++
	if !evchantest.Poll(evchantest.Timeout, func() bool {
		s := fs.rx.Stats()
		return s.RxFrames+s.RxDropsBadFrame >= fs.sent
	}) {
		tb.Fatalf("frame %d not processed in %v: %+v", fs.sent, evchantest.Timeout, fs.rx.Stats())
	}
}

// takeWriter reads a datagram the way package api does: each slice the
// endpoint passes is looked up in the flow's shadows, and a reference
// found there must hold exactly the slice's bytes.
type takeWriter struct {
	tb   testing.TB
	flow *Flow
}

func (w takeWriter) Write(p []byte) (int, error) {
	if v := w.flow.Take(p); v != nil {
		if !bytes.Equal(v.AsSlice(), p) {
			w.tb.Fatalf("Take returned %d bytes that differ from the %d-byte slice", v.Size(), len(p))
		}
		v.Release()
	}
	return len(p), nil
}

// FuzzReceiveFrame writes any frame into a running stack — through the
// in-process link's receive path, the header split, the zero-copy hook
// (parseFlow) and all of gVisor's parsing — with a TCP listener and a UDP
// socket with zero-copy flows waiting. The stack must not panic, every
// frame must be processed (delivered or dropped), the flows must stay
// within their bound, and whatever the UDP socket receives must be handed
// over consistently by Flow.Take.
func FuzzReceiveFrame(f *testing.F) {
	addFrameSeeds(f)
	fs := newFuzzStack(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		// Aim the frame at the stack: only the MAC addresses are fixed,
		// the Ethernet type and everything after are the fuzzer's.
		if len(frame) < header.EthernetMinimumSize {
			frame = append(frame, make([]byte, header.EthernetMinimumSize-len(frame))...)
		}
		frame = bytes.Clone(frame)
		copy(frame, fs.mac)
		copy(frame[6:], "\x02\x00\x00\x00\x00\x01")
		fs.deliver(t, frame)
		for {
			_, terr := fs.udp.Read(takeWriter{t, fs.udpFlow}, tcpip.ReadOptions{})
			if terr != nil {
				break
			}
		}
		if s := fs.udpFlow.Stats(); s.ShadowBytes > 64<<10 && s.Shadows > 1 {
			t.Fatalf("UDP flow over its bound: %+v", s)
		}
	})
}

// TestFuzzHarnessReachesSockets: the harness of FuzzReceiveFrame is only
// worth its time if well-formed frames reach the sockets through the
// zero-copy path; a valid datagram must be read and handed over by Take.
func TestFuzzHarnessReachesSockets(t *testing.T) {
	fs := newFuzzStack(t)
	frame := fuzzFrame(false, header.UDPProtocolNumber, 40001, 53, []byte("a datagram for the harness"))
	copy(frame, fs.mac)
	fs.deliver(t, frame)
	var got bytes.Buffer
	res, terr := fs.udp.Read(&got, tcpip.ReadOptions{Peek: true})
	if terr != nil || got.String() != "a datagram for the harness" {
		t.Fatalf("UDP socket read %d bytes %q, %v", res.Count, got.String(), terr)
	}
	if _, terr := fs.udp.Read(takeWriter{t, fs.udpFlow}, tcpip.ReadOptions{}); terr != nil {
		t.Fatal(terr)
	}
	if s := fs.udpFlow.Stats(); s.Taken != 1 {
		t.Fatalf("flow stats %+v: the datagram was not handed over", s)
	}
}
