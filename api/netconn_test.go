package api_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/api/apitest"
	"github.com/zcnet/zcnet/evchan/evchantest"
)

// netConns connects a net adapter on A to one on B at addr and returns
// both ends: the dialer on A, the accepted conn on B.
func netConns(t *testing.T, p *apitest.Pair, addr string) (a, b *api.TCPConn) {
	t.Helper()
	ln, err := p.B.Net().Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	c, err := p.A.Net().DialContext(evchantest.Context(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := <-acc
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { s.Close() })
	return c.(*api.TCPConn), s.(*api.TCPConn)
}

// pattern returns n deterministic bytes that differ from one offset to the
// next, so a lost, doubled or reordered chunk changes the hash.
func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// TestNetConnStreamCopyBudget streams 64 MiB (16 MiB under the race
// detector) from a net adapter on B to one on A, over IPv4 and IPv6, reads
// it with Read into a 64 KiB slice and checks every byte. Then the copy
// budget: the reader's socket copied exactly the bytes Read returned, once,
// straight from the stack, and handed nothing over; the writer's socket
// copied exactly the bytes written, once, and wrote none in place; the
// stacks' counters agree; nothing is held; and the reader's stack kept no
// zero-copy shadows (the net adapters register no flow: their Read copies
// anyway).
func TestNetConnStreamCopyBudget(t *testing.T) {
	size := 64 << 20
	if raceEnabled {
		size = 16 << 20
	}
	for _, tc := range []struct{ name, addr string }{{"v4", "192.0.2.2:5101"}, {"v6", "[2001:db8::2]:5101"}} {
		t.Run(tc.name, func(t *testing.T) {
			p := apitest.NewPair(t, apitest.PairConfig{})
			reader, writer := netConns(t, p, tc.addr)
			data := pattern(size, 1)
			werr := apitest.SendAll(writer, data)
			h := sha256.New()
			buf := make([]byte, 64<<10)
			got, err := io.CopyBuffer(h, struct{ io.Reader }{reader}, buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(data); got != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("read %d bytes (want %d), hash equal %v", got, size, bytes.Equal(h.Sum(nil), want[:]))
			}
			rs, ws := reader.Stats(), writer.Stats()
			if rs.RxCopied != uint64(size) || rs.RxHandedOver != 0 {
				t.Fatalf("reader copied %d and handed over %d uncopied; want %d and 0 (%+v)", rs.RxCopied, rs.RxHandedOver, size, rs)
			}
			if rs.HeldBytes != 0 {
				t.Fatalf("reader holds %d bytes after reading everything", rs.HeldBytes)
			}
			if ws.TxCopied != uint64(size) || ws.TxInPlace != 0 {
				t.Fatalf("writer copied %d, in place %d; want %d and 0", ws.TxCopied, ws.TxInPlace, size)
			}
			if ws.RxCopied != 0 || ws.RxHandedOver != 0 || rs.TxCopied != 0 || rs.TxInPlace != 0 {
				t.Fatalf("bytes counted in the direction nothing flowed: reader %+v writer %+v", rs.Counters, ws.Counters)
			}
			// One socket per stack saw traffic: the stacks' books are its
			// books.
			if sa, sb := p.A.Counters(), p.B.Counters(); sa.RxCopied != rs.RxCopied || sa.RxHandedOver != 0 || sb.TxCopied != ws.TxCopied || sb.TxInPlace != 0 {
				t.Fatalf("stack counters A %+v, B %+v disagree with the sockets' reader %+v, writer %+v", sa, sb, rs.Counters, ws.Counters)
			}
			if zs := p.Pair.A.ZeroCopyStats(); zs.Flows != 0 || zs.Shadowed != 0 || rs.RxHandoffs != 0 {
				t.Fatalf("the reader's stack shadowed %d payloads for %d flows, %d hand-offs: a net.Conn copies, it needs none", zs.Shadowed, zs.Flows, rs.RxHandoffs)
			}
		})
	}
}

// TestNetConnPartialReads reads a stream with slices from 1 byte to 9 KiB,
// most much smaller than the hand-offs, so nearly every Read starts or ends
// inside a Buf, and some span several; the bytes must come out in order,
// and the copy budget must still balance.
func TestNetConnPartialReads(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	reader, writer := netConns(t, p, "192.0.2.2:5102")
	const size = 2 << 20
	data := pattern(size, 2)
	werr := make(chan error, 1)
	go func() {
		// Writes of odd sizes, so segment and hand-off edges fall anywhere.
		r := rand.New(rand.NewPCG(3, 4))
		for off := 0; off < size; {
			n := min(size-off, 1+r.IntN(20000))
			if _, err := writer.Write(data[off : off+n]); err != nil {
				werr <- err
				return
			}
			off += n
		}
		werr <- writer.CloseWrite()
	}()
	r := rand.New(rand.NewPCG(5, 6))
	got := make([]byte, 0, size)
	buf := make([]byte, 9<<10)
	reads, multi := 0, 0
	for {
		n := 1 + r.IntN(len(buf))
		if r.IntN(4) == 0 {
			n = 1 + r.IntN(16) // some very small reads
		}
		m, err := reader.Read(buf[:n])
		got = append(got, buf[:m]...)
		reads++
		if m > 1500 {
			multi++ // more than one MSS-sized hand-off in one Read
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m == 0 {
			t.Fatalf("Read(%d bytes) returned 0 bytes and no error", n)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		i := 0
		for i < min(len(got), len(data)) && got[i] == data[i] {
			i++
		}
		t.Fatalf("read %d bytes of %d; first difference at offset %d", len(got), len(data), i)
	}
	if multi == 0 {
		t.Errorf("no Read of up to 9 KiB returned more than 1500 bytes in %d reads: Read does not gather ready hand-offs", reads)
	}
	st := reader.Stats()
	if st.RxCopied != size || st.RxHandedOver != 0 || st.HeldBytes != 0 {
		t.Fatalf("after %d reads: copied %d, handed over %d, held %d; want %d, 0, 0", reads, st.RxCopied, st.RxHandedOver, st.HeldBytes, size)
	}
	// After EOF, Read keeps returning EOF.
	if n, err := reader.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
}

// TestNetConnCloseReleases closes conns with received data left unread (a
// TCP stream read in part, which stays in the stack: a TCPConn holds no
// pool memory; a UDP datagram the stack reassembled from fragments, which
// the socket copied into the pool) and checks that everything is given
// back: the sockets hold nothing and the pool's slots are all free.
func TestNetConnCloseReleases(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	reader, writer := netConns(t, p, "192.0.2.2:5103")
	data := pattern(1<<20, 7)
	if err := <-apitest.SendAll(writer, data); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(reader, one); err != nil || one[0] != data[0] {
		t.Fatalf("first byte %d, %v", one[0], err)
	}
	buf := make([]byte, 100)
	if _, err := io.ReadFull(reader, buf); err != nil || !bytes.Equal(buf, data[1:101]) {
		t.Fatalf("next 100 bytes: %v", err)
	}
	if st := reader.Stats(); st.HeldBytes != 0 || st.RxCopied != 101 {
		t.Fatalf("reader mid-stream: holds %d bytes, copied %d; want 0 and the 101 read (%+v)", st.HeldBytes, st.RxCopied, st)
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	if st := reader.Stats(); st.HeldBytes != 0 {
		t.Fatalf("closed reader still holds %d bytes", st.HeldBytes)
	}
	if _, err := reader.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}

	// A fragmented datagram: the socket joins the fragments into one pool
	// buffer (a copy), and the read copies it again; both are counted.
	srv, err := p.B.Net().ListenPacket("udp", "192.0.2.2:5104")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := p.A.Net().ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	big := pattern(4000, 8) // three fragments at MTU 1500
	small := pattern(300, 9)
	to := srv.LocalAddr()
	// The TCP connection above resolved the neighbours, and the pair does
	// not drop: each datagram is sent once.
	srv.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, 5000)
	for _, d := range [][]byte{small, big} {
		if _, err := cl.WriteTo(d, to); err != nil {
			t.Fatal(err)
		}
		n, from, err := srv.ReadFrom(got)
		if err != nil || !bytes.Equal(got[:n], d) {
			t.Fatalf("datagram of %d bytes: got %d bytes, %v", len(d), n, err)
		}
		if from.String() != cl.LocalAddr().String() && from.(*net.UDPAddr).Port != cl.LocalAddr().(*net.UDPAddr).Port {
			t.Fatalf("sender %v, want %v", from, cl.LocalAddr())
		}
	}
	us := srv.(*api.UDPConn).Stats()
	if want := uint64(2*len(big) + len(small)); us.RxCopied != want || us.RxHandedOver != 0 {
		t.Fatalf("UDP: copied %d, handed over %d; want %d (the joined datagram twice, the small one once) and 0", us.RxCopied, us.RxHandedOver, want)
	}
	// The double count proves the joined datagram was a pool buffer; the
	// read released it, and Close releases what is queued.
	srv.Close()
	cl.Close()
	writer.Close()
	if ps := p.PoolB.Stats(); ps.SlotsInUse != 0 || ps.Buffers != 0 {
		t.Fatalf("pool B after Close: %d slots in %d buffers in use", ps.SlotsInUse, ps.Buffers)
	}
	if ps := p.PoolA.Stats(); ps.SlotsInUse != 0 || ps.Buffers != 0 {
		t.Fatalf("pool A after Close: %d slots in %d buffers in use", ps.SlotsInUse, ps.Buffers)
	}
}

// TestNetConnDeadlines checks what package net promises about deadlines:
// a deadline moved into the past wakes a blocked Read (net/http relies on
// it), a Write that cannot finish returns what it wrote and the timeout,
// and an expired deadline fails even a Read that has data waiting.
func TestNetConnDeadlines(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	a, b := netConns(t, p, "192.0.2.2:5105")

	blocked := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := a.Read(make([]byte, 10))
		blocked <- err
	}()
	<-started
	a.SetReadDeadline(time.Now().Add(time.Hour))
	a.SetReadDeadline(time.Unix(1, 0))
	if err := <-blocked; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked Read after the deadline moved into the past: %v", err)
	}
	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with an expired deadline and data waiting: %v", err)
	}
	a.SetReadDeadline(time.Time{})
	if n, err := a.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Fatalf("Read after clearing the deadline: %d, %v", n, err)
	}

	// B does not read: A's Write of far more than both buffers hold must
	// stop at the deadline, having written part of it.
	big := make([]byte, 64<<20)
	a.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := a.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write into a full window: %d, %v; want os.ErrDeadlineExceeded", n, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write deadline error is not a net.Error timeout: %#v", err)
	}
	// n may be 0 on a machine too loaded to start the Write within the
	// deadline; it can never be the whole.
	if n >= 64<<20 {
		t.Fatalf("Write past its deadline wrote %d bytes", n)
	}
	if st := a.Stats(); st.TxCopied != uint64(n) {
		t.Fatalf("TxCopied %d after writing %d", st.TxCopied, n)
	}
}

// TestNetConnRaces runs Reads, Writes, deadline changes and Close at once
// (meant for -race): every call ends with data or one of the errors package
// net gives, nothing blocks past Close, and nothing stays held.
func TestNetConnRaces(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	for round := range 8 {
		a, b := netConns(t, p, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(5110+round)).String())
		var wg sync.WaitGroup
		check := func(what string, err error) {
			if err == nil || err == io.EOF || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			var oe *net.OpError
			if errors.As(err, &oe) { // a reset from the peer closing: still net's shape
				return
			}
			t.Errorf("%s: unexpected %T %v", what, err, err)
		}
		for _, c := range []*api.TCPConn{a, b} {
			wg.Add(3)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1+round*1000)
				for {
					_, err := c.Read(buf)
					if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						check("read", err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					if _, err := c.Write(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						check("write", err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				for i := range 200 {
					d := time.Duration(i%5) * time.Millisecond
					c.SetDeadline(time.Now().Add(d))
					if i%3 == 0 {
						c.SetReadDeadline(time.Time{})
					}
				}
				c.SetDeadline(time.Time{})
			}()
		}
		// Close both ends while everything runs.
		closed := make(chan struct{})
		time.AfterFunc(time.Duration(round)*time.Millisecond, func() {
			a.Close()
			b.Close()
			close(closed)
		})
		wg.Wait()
		<-closed
		for _, c := range []*api.TCPConn{a, b} {
			if st := c.Stats(); st.HeldBytes != 0 {
				t.Fatalf("round %d: a closed conn holds %d bytes", round, st.HeldBytes)
			}
		}
	}
}

// TestNetNeedsPool checks that a Net over a files-only Stack (no pool)
// refuses to open sockets, with package net's error shape, instead of
// opening conns that could never receive.
func TestNetNeedsPool(t *testing.T) {
	p := apitest.NewPair(t, apitest.PairConfig{})
	s, err := api.New(p.Pair.A, api.Options{FilesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := s.Net()
	_, derr := n.DialContext(evchantest.Context(t), "tcp", "192.0.2.2:7")
	_, lerr := n.Listen("tcp", ":7")
	_, perr := n.ListenPacket("udp", ":7")
	for _, err := range []error{derr, lerr, perr} {
		var oe *net.OpError
		if !errors.Is(err, api.ErrAssoc) || !errors.As(err, &oe) {
			t.Errorf("Net without a pool: %v, want a *net.OpError wrapping ErrAssoc", err)
		}
	}
}
