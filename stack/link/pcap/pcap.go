// Package pcap is a link that captures: it wraps another link and writes
// every frame that crosses it, both ways, as a pcap record with its
// Ethernet header (LINKTYPE_ETHERNET), so tcpdump -r and tshark show ARP
// and the MAC addresses as well as IP. TSO super-frames appear whole, as a
// capture on a host with TSO shows them.
//
// The package owns the capture link (Link, built on link.Nested, so the
// wrapped link keeps the stack's zero-copy and admission hooks) and a
// capture file that never fails its writer (Writer). It does not own the
// wrapped link (Close closes it, as gVisor's nested links do) and does not
// parse the frames it records.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link"
)

// Pcap file constants (https://www.tcpdump.org/manpages/pcap-savefile.5.html,
// https://www.tcpdump.org/linktypes.html).
const (
	pcapMagic        = 0xa1b2c3d4 // microsecond timestamps, little-endian here
	pcapLinkEthernet = 1          // LINKTYPE_ETHERNET
	pcapHeaderLen    = 24
	pcapRecordLen    = 16
)

// Snap lengths New accepts: the bytes of each frame recorded, the rest
// counted in the record's original length only.
const (
	MinSnapLen = 64
	MaxSnapLen = 262144 // tcpdump's default
)

// ErrSnapLen reports a snap length outside MinSnapLen..MaxSnapLen.
var ErrSnapLen = errors.New("pcap: snap length out of range")

// Link is the capture around a link. link.Nested forwards every link
// method and every hook of the stack to the wrapped link; Link overrides
// only the two paths a frame takes, to record it.
type Link struct {
	link.Nested

	snap int
	mu   sync.Mutex // serialises records: Write is called from every link goroutine
	w    io.Writer  // +checklocks:mu
	err  error      // +checklocks:mu; the first write error, which ends the capture
}

var (
	_ gstack.LinkEndpoint = (*Link)(nil)
	_ link.PayloadHooker  = (*Link)(nil)
	_ link.Admitter       = (*Link)(nil)
)

// New wraps inner so that every frame is written to w, one Write call per
// pcap record, after the file header, which New writes. Link serialises
// its calls to w. A write error ends the capture (Err returns it); the
// traffic goes on.
func New(inner gstack.LinkEndpoint, w io.Writer, snapLen int) (*Link, error) {
	if inner == nil {
		return nil, errors.New("pcap: nil inner link")
	}
	if snapLen < MinSnapLen || snapLen > MaxSnapLen {
		return nil, fmt.Errorf("%w: %d, want %d to %d", ErrSnapLen, snapLen, MinSnapLen, MaxSnapLen)
	}
	var h [pcapHeaderLen]byte
	binary.LittleEndian.PutUint32(h[0:], pcapMagic)
	binary.LittleEndian.PutUint16(h[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(snapLen))
	binary.LittleEndian.PutUint32(h[20:], pcapLinkEthernet)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcap: file header: %w", err)
	}
	l := &Link{w: w, snap: snapLen}
	l.Init(inner, l)
	return l, nil
}

// Err returns the write error that ended the capture, or nil.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: a received frame
// is recorded, then passed up.
func (l *Link) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	l.record(pkt)
	l.Nested.DeliverNetworkPacket(proto, pkt)
}

// WritePackets implements stack.LinkEndpoint: frames are recorded (their
// Ethernet header is in place: the NIC adds it before writing), then
// written.
func (l *Link) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	for _, pkt := range pkts.AsSlice() {
		l.record(pkt)
	}
	return l.Nested.WritePackets(pkts)
}

// record writes one frame: the link header the link parsed or the NIC
// added, then the rest, up to the snap length. It reads the packet's
// bytes and takes no reference to them.
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = err
	}
}

// Writer is a capture file for Link: one Write per record, buffered. It
// never fails its caller: the first error is logged, kept for Close, and
// ends the capture; Close may run while a link still writes.
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
