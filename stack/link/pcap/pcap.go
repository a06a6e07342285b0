package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
	"github.com/zcnet/zcnet/tap"
)

// Packet capture (-pcap): a link wrapper (Link) around the NIC's link
// writes every frame it passes, both ways, as a pcap record with its
// Ethernet header (LINKTYPE_ETHERNET), so tcpdump -r and tshark show ARP
// and the MAC addresses as well as IP. TSO super-frames appear whole, as a
// capture on a host with TSO shows them.

// Pcap file constants (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
// https://www.tcpdump.org/linktypes.html).
const (
	pcapMagic        = 0xa1b2c3d4 // microsecond timestamps, little-endian here
	pcapLinkEthernet = 1          // LINKTYPE_ETHERNET
	pcapHeaderLen    = 24
	pcapRecordLen    = 16
)

// Link is the capture around a zcnet link. nested.Endpoint forwards
// everything else; the hooks the stack installs that are not LinkEndpoint
// methods are forwarded by hand: the payload hook for zero-copy receive,
// the connection lookup and SYN pressure hook for admission. Without them
// every received byte would be copied and floods at listeners unbounded.
type Link struct {
	nested.Endpoint
	inner gstack.LinkEndpoint
	w     *Writer
	snap  int
}

var _ gstack.LinkEndpoint = (*Link)(nil)

// SetPayloadHook implements the stack's payload hook interface by passing
// the hook to the wrapped link.
func (l *Link) SetPayloadHook(fn link.PayloadHook) {
	if h, ok := l.inner.(interface{ SetPayloadHook(link.PayloadHook) }); ok {
		h.SetPayloadHook(fn)
	}
}

// SetConnLookup passes the stack's connection lookup to the wrapped link,
// which needs it to budget segments at listeners (see tap.ConnLookup).
func (l *Link) SetConnLookup(fn tap.ConnLookup) {
	if h, ok := l.inner.(interface{ SetConnLookup(tap.ConnLookup) }); ok {
		h.SetConnLookup(fn)
	}
}

// SetSYNPressure passes the stack's SYN pressure hook to the wrapped link.
func (l *Link) SetSYNPressure(fn tap.SYNPressure) {
	if h, ok := l.inner.(interface{ SetSYNPressure(tap.SYNPressure) }); ok {
		h.SetSYNPressure(fn)
	}
}

// NewLink wraps link so that every frame is written to w, after the
// file header.
func NewLink(link gstack.LinkEndpoint, w *Writer, snapLen int) (*Link, error) {
	var h [pcapHeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], pcapMagic)
	binary.LittleEndian.PutUint16(h[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(snapLen))
	binary.LittleEndian.PutUint32(h[20:], pcapLinkEthernet)
	w.Write(h[:])
	l := &Link{inner: link, w: w, snap: snapLen}
	l.Endpoint.Init(link, l)
	return l, nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: a received frame
// is recorded, then passed up.
func (l *Link) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	l.record(pkt)
	l.Endpoint.DeliverNetworkPacket(proto, pkt)
}

// WritePackets implements stack.LinkEndpoint: frames are recorded (their
// Ethernet header is in place: the NIC adds it before writing), then
// written.
func (l *Link) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		l.record(pkt)
	}
	return l.Endpoint.WritePackets(pkts)
}

// record writes one frame: the link header the link parsed or the NIC
// added, then the rest, up to the snap length.
func (l *Link) record(pkt *gstack.PacketBuffer) {
	size := pkt.Size() // headers and data, the link header included
	capLen := min(size, l.snap)
	b := make([]byte, pcapRecordLen, pcapRecordLen+capLen)
	now := time.Now()
	binary.LittleEndian.PutUint32(b[0:], uint32(now.Unix()))
	binary.LittleEndian.PutUint32(b[4:], uint32(now.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(b[8:], uint32(capLen))
	binary.LittleEndian.PutUint32(b[12:], uint32(size))
	for _, v := range pkt.AsSlices() {
		if room := pcapRecordLen + capLen - len(b); len(v) > room {
			v = v[:room]
		}
		b = append(b, v...)
	}
	l.w.Write(b)
}

// Writer is the capture file. Link calls Write once per frame, from
// every link goroutine at once; Writer serialises the calls, buffers
// them, and never fails: the first error is logged, kept for Close, and
// ends the capture.
type Writer struct {
	log  *slog.Logger
	path string

	mu        sync.Mutex
	f         *os.File      // +checklocks:mu; nil once closed
	w         *bufio.Writer // +checklocks:mu
	err       error         // +checklocks:mu; first write error
	lastFlush time.Time     // +checklocks:mu
	header    bool          // +checklocks:mu; the file header is written

	records atomic.Uint64 // packets written
	lost    atomic.Uint64 // packets not written: after an error or Close
}

// pcapFlushEvery bounds how stale the file is while the capture runs, so
// it can be read (tcpdump -r) before the daemon exits.
const pcapFlushEvery = time.Second

func Create(path string, log *slog.Logger) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	return &Writer{log: log, path: path, f: f, w: bufio.NewWriterSize(f, 1<<20), lastFlush: time.Now()}, nil
}

// Write implements io.Writer for the sniffer: one pcap record (or the file
// header) per call. It always reports success.
func (p *Writer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil || p.err != nil {
		p.lost.Add(1)
		return len(b), nil
	}
	_, err := p.w.Write(b)
	if err == nil {
		if p.header {
			p.records.Add(1)
		}
		p.header = true
		if now := time.Now(); now.Sub(p.lastFlush) >= pcapFlushEvery {
			p.lastFlush = now
			err = p.w.Flush()
		}
	}
	if err != nil {
		p.err = err
		p.log.Error("packet capture stopped", "file", p.path, "err", err)
	}
	return len(b), nil
}

// Close flushes and closes the file; it returns the first error the capture
// met. Writes after Close are counted as lost.
func (p *Writer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return p.err
	}
	if err := p.w.Flush(); err != nil && p.err == nil {
		p.err = err
	}
	if err := p.f.Close(); err != nil && p.err == nil {
		p.err = err
	}
	p.f = nil
	if p.err != nil {
		return fmt.Errorf("pcap %s: %w", p.path, p.err)
	}
	return nil
}

// Records is the number of packets written.
func (p *Writer) Records() uint64 { return p.records.Load() }

// Lost is the number of packets not written: after an error or Close.
func (p *Writer) Lost() uint64 { return p.lost.Load() }
