package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"gvisor.dev/gvisor/pkg/tcpip/link/sniffer"

	"github.com/zcnet/zcnet/tap"
)

// Packet capture (-pcap): gVisor's sniffer link wraps the NIC's link and
// writes every packet it passes, both ways, as a pcap record (LINKTYPE_RAW:
// IP packets without the Ethernet header; TSO super-frames appear whole, as
// a capture on a host with TSO shows them). tcpdump -r and tshark read it.

// pcapLink is the sniffer around a zcnet link. It forwards the payload hook
// the stack installs for zero-copy receive and the connection lookup for
// admission, which the sniffer does not know about; without them every
// received byte would be copied and floods at listeners unbounded.
type pcapLink struct {
	*sniffer.Endpoint
	inner gstack.LinkEndpoint
}

// SetPayloadHook implements the stack's payload hook interface by passing
// the hook to the wrapped link.
func (l *pcapLink) SetPayloadHook(fn tap.PayloadHook) {
	if h, ok := l.inner.(interface{ SetPayloadHook(tap.PayloadHook) }); ok {
		h.SetPayloadHook(fn)
	}
}

// SetConnLookup passes the stack's connection lookup to the wrapped link,
// which needs it to budget segments at listeners (see tap.ConnLookup).
func (l *pcapLink) SetConnLookup(fn tap.ConnLookup) {
	if h, ok := l.inner.(interface{ SetConnLookup(tap.ConnLookup) }); ok {
		h.SetConnLookup(fn)
	}
}

// SetSYNPressure passes the stack's SYN pressure hook to the wrapped link.
func (l *pcapLink) SetSYNPressure(fn tap.SYNPressure) {
	if h, ok := l.inner.(interface{ SetSYNPressure(tap.SYNPressure) }); ok {
		h.SetSYNPressure(fn)
	}
}

// newPcapLink wraps link so that every packet is written to w.
func newPcapLink(link gstack.LinkEndpoint, w *pcapWriter, snapLen int) (*pcapLink, error) {
	// The sniffer also logs every packet through gVisor's log unless this
	// process-wide switch is off; the capture file is all we want.
	sniffer.LogPackets.Store(0)
	sn, err := sniffer.NewWithWriter(link, w, uint32(snapLen))
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	return &pcapLink{Endpoint: sn, inner: link}, nil
}

// pcapWriter is the file the sniffer writes to. The sniffer calls Write once
// per packet, from every link goroutine at once, and panics if Write fails;
// so pcapWriter serialises the calls, buffers them, and never fails: the
// first error is logged, kept for Close, and ends the capture.
type pcapWriter struct {
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

func createPcap(path string, log *slog.Logger) (*pcapWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", err)
	}
	return &pcapWriter{log: log, path: path, f: f, w: bufio.NewWriterSize(f, 1<<20), lastFlush: time.Now()}, nil
}

// Write implements io.Writer for the sniffer: one pcap record (or the file
// header) per call. It always reports success.
func (p *pcapWriter) Write(b []byte) (int, error) {
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
func (p *pcapWriter) Close() error {
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
