package pcap_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/stack/link/pcap"
)

// counter is a NetworkDispatcher that counts the packets it is given.
type counter struct{ n int }

func (c *counter) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) { c.n++ }
func (*counter) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)      {}

func packet(n int) ([]byte, *stack.PacketBuffer) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
}

// failAfter fails every Write after the first n.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(b []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	f.n--
	return len(b), nil
}

// TestCaptureRecordsBothWays checks the file header and one record each
// way: received frames are recorded before the stack gets them, sent ones
// before the inner link writes them, each cut to the snap length with
// its original length kept.
func TestCaptureRecordsBothWays(t *testing.T) {
	inner := channel.New(4, 1500, "\x02\x00\x00\x00\x00\x01")
	var buf bytes.Buffer
	l, err := pcap.New(inner, &buf, pcap.MinSnapLen)
	if err != nil {
		t.Fatal(err)
	}
	d := &counter{}
	l.Attach(d)
	in, pkt := packet(100)
	inner.InjectInbound(header.IPv4ProtocolNumber, pkt)
	pkt.DecRef()
	out, pkt := packet(40)
	var pkts stack.PacketBufferList
	pkts.PushBack(pkt)
	if n, err := l.WritePackets(pkts); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	pkts.DecRef()
	if p := inner.Read(); p == nil {
		t.Fatal("the inner link did not get the packet")
	} else {
		p.DecRef()
	}
	if d.n != 1 {
		t.Fatalf("stack got %d packets, want 1", d.n)
	}
	f := buf.Bytes()
	le := binary.LittleEndian
	if len(f) < 24 || le.Uint32(f) != 0xa1b2c3d4 || le.Uint32(f[16:]) != pcap.MinSnapLen || le.Uint32(f[20:]) != 1 {
		t.Fatalf("file header % x", f[:min(len(f), 24)])
	}
	f = f[24:]
	for _, want := range []struct {
		data []byte
		orig int
	}{{in[:pcap.MinSnapLen], len(in)}, {out, len(out)}} {
		if len(f) < 16 {
			t.Fatalf("%d bytes left, want a record header", len(f))
		}
		capLen, orig := int(le.Uint32(f[8:])), int(le.Uint32(f[12:]))
		if capLen != len(want.data) || orig != want.orig || len(f) < 16+capLen || !bytes.Equal(f[16:16+capLen], want.data) {
			t.Fatalf("record: captured %d of %d bytes, want %d of %d and the frame's bytes", capLen, orig, len(want.data), want.orig)
		}
		f = f[16+capLen:]
	}
	if len(f) != 0 || l.Err() != nil {
		t.Fatalf("%d bytes after the records, Err %v", len(f), l.Err())
	}
	l.Close()
}

// TestNewRejectsAndWriteErrors checks New's errors, and that a writer that
// fails ends the capture (Err) but not the traffic.
func TestNewRejectsAndWriteErrors(t *testing.T) {
	inner := channel.New(4, 1500, "")
	if _, err := pcap.New(inner, &bytes.Buffer{}, pcap.MinSnapLen-1); !errors.Is(err, pcap.ErrSnapLen) {
		t.Fatalf("snap length %d: %v, want ErrSnapLen", pcap.MinSnapLen-1, err)
	}
	if _, err := pcap.New(inner, &bytes.Buffer{}, pcap.MaxSnapLen+1); !errors.Is(err, pcap.ErrSnapLen) {
		t.Fatalf("snap length %d: %v, want ErrSnapLen", pcap.MaxSnapLen+1, err)
	}
	if _, err := pcap.New(nil, &bytes.Buffer{}, pcap.MaxSnapLen); err == nil {
		t.Fatal("nil inner link accepted")
	}
	full := errors.New("disk full")
	if _, err := pcap.New(inner, &failAfter{err: full}, pcap.MaxSnapLen); !errors.Is(err, full) {
		t.Fatalf("failing file header: %v, want %v", err, full)
	}
	l, err := pcap.New(inner, &failAfter{n: 1, err: full}, pcap.MaxSnapLen)
	if err != nil {
		t.Fatal(err)
	}
	d := &counter{}
	l.Attach(d)
	for range 2 {
		_, pkt := packet(60)
		inner.InjectInbound(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
	}
	if d.n != 2 || !errors.Is(l.Err(), full) {
		t.Fatalf("stack got %d packets (want 2), Err %v (want %v)", d.n, l.Err(), full)
	}
	l.Close()
}

// TestWriterCountsRecordsAndLost captures into a file through Writer: the
// file holds the header and every record, Records counts the records (not
// the header), and writes after Close are counted as lost.
func TestWriterCountsRecordsAndLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	w, err := pcap.Create(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	inner := channel.New(4, 1500, "")
	l, err := pcap.New(inner, w, pcap.MaxSnapLen)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach(&counter{})
	for range 3 {
		_, pkt := packet(50)
		inner.InjectInbound(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, pkt := packet(50)
	inner.InjectInbound(header.IPv4ProtocolNumber, pkt)
	pkt.DecRef()
	l.Close()
	if w.Records() != 3 || w.Lost() != 1 {
		t.Fatalf("records %d lost %d, want 3 and 1", w.Records(), w.Lost())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := 24 + 3*(16+50); len(b) != want {
		t.Fatalf("file of %d bytes, want %d", len(b), want)
	}
	if _, err := pcap.Create(filepath.Join(path, "no"), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("Create under a file succeeded")
	}
}
