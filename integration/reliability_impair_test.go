package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/stack/link/impair"
	"github.com/zcnet/zcnet/tap"
)

// TestReliabilityTAPImpairedOffloadOff is, with its twin for offloads on,
// The integrity proof through a real TAP device: the stack's link is wrapped in an impairment link with loss,
// duplication, reordering (and corruption where it is meaningful) in both
// directions, and the kernel on the other side of the TAP is the peer. TCP
// moves 64 MiB each way (16 MiB under -race) and must arrive byte-identical
// (SHA-256); UDP datagrams carry their own SHA-256 and must arrive intact
// or not at all, every missing one accounted for by a counter.
//
// Which combination is meaningful:
//
//   - offload=off with corruption: plain frames, complete checksums in both
//     directions. Inbound corruption is caught by the stack (the impairment
//     link withholds RX checksum offload); outbound corruption is caught by
//     the kernel, which verifies what a device without offloads hands it.
//   - offload=on without corruption: the production configuration with
//     64 KiB GSO super-frames lost, duplicated and reordered whole. Corruption
//     is left out here because it cannot be caught on either side: outbound,
//     the TAP link marks TCP frames NEEDS_CSUM and the kernel completes (and
//     for local delivery trusts) the checksum over the damaged bytes; inbound,
//     the kernel's TCP frames carry only a partial checksum (NEEDS_CSUM),
//     which the stack rejects outright once the impairment link withholds
//     RX checksum offload, so no TCP connection could even open.
func TestReliabilityTAPImpairedOffloadOff(t *testing.T) {
	relImpairedTAP(t, tap.OffloadOff, issueFaults)
}

// issueFaults are the reliability tests' impairments, applied to each direction.
var issueFaults = impair.Impairments{Loss: 0.02, Duplicate: 0.01, Reorder: 0.05, Corrupt: 0.001}

// TestReliabilityTAPImpairedOffloadOn is the integrity proof with the TAP's
// offloads on, without corruption (see TestReliabilityTAPImpairedOffloadOff).
func TestReliabilityTAPImpairedOffloadOn(t *testing.T) {
	f := issueFaults
	f.Corrupt = 0 // see above: undetectable with offloads on either side
	relImpairedTAP(t, tap.OffloadOn, f)
}

// relImpairedTAP runs the integrity proof on a TAP with the given offload
// mode and impairments in both directions.
func relImpairedTAP(t *testing.T, offload tap.OffloadMode, faults impair.Impairments) {
	e := newRelEnv(t, relConfig{offload: offload, impair: &impair.Config{Seed: 9, Outbound: faults, Inbound: faults}})
	size := relTransferSize(64 << 20)
	kBefore := e.kernelSNMP(t)
	sBefore := e.st.Counters()

	t.Run("TCP kernel to stack", func(t *testing.T) { relTCPKernelToStack(t, e, newRelStream(1, size), 7100) })
	t.Run("TCP stack to kernel", func(t *testing.T) { relTCPStackToKernel(t, e, newRelStream(2, size), 7101) })
	t.Run("UDP kernel to stack", func(t *testing.T) {
		relUDPKernelToStack(t, e, "udp4", stack4, 7102)
		relUDPKernelToStack(t, e, "udp6", stack6, 7104)
	})
	t.Run("UDP stack to kernel", func(t *testing.T) {
		relUDPStackToKernel(t, e, "udp4", peer4, 7103)
		relUDPStackToKernel(t, e, "udp6", peer6, 7105)
	})
	e.pingAtLeast(t, 10, 5) // the echo requests and replies are impaired too

	// Every impairment must have been applied in each direction, or the
	// proof proves nothing.
	st := e.imp.Stats()
	for dir, d := range map[string]impair.DirectionStats{"outbound": st.Outbound, "inbound": st.Inbound} {
		t.Logf("%-8s in %7d passed %7d lost %5d dup %5d reord %5d corrupt %3d",
			dir, d.In, d.Passed, d.DroppedLoss, d.Duplicated, d.Reordered, d.Corrupted)
		if d.DroppedLoss == 0 || d.Duplicated == 0 || d.Reordered == 0 || (faults.Corrupt > 0) != (d.Corrupted > 0) {
			t.Errorf("%s: an impairment was never applied (or corruption applied without being asked): %+v", dir, d)
		}
	}
	sAfter, kAfter := e.st.Counters(), e.kernelSNMP(t)
	stackCaught := relDelta(sBefore, sAfter, "TCP.ChecksumErrors", "UDP.ChecksumErrors", "IP.MalformedPacketsReceived", "IP.MalformedFragmentsReceived")
	kernelCaught := relDelta(kBefore, kAfter, "Tcp.InCsumErrors", "Udp.InCsumErrors", "Udp6InCsumErrors", "Ip.InHdrErrors", "Ip6InHdrErrors")
	t.Logf("corrupted inbound %d, caught by the stack %d; corrupted outbound %d, caught by the kernel %d",
		st.Inbound.Corrupted, stackCaught, st.Outbound.Corrupted, kernelCaught)
	if faults.Corrupt > 0 && (stackCaught == 0 || kernelCaught == 0) {
		t.Errorf("corrupted packets were not caught: stack %d, kernel %d", stackCaught, kernelCaught)
	}
	t.Logf("stack as TCP sender: %d retransmits, %d timeouts, %d fast/%d SACK/%d TLP recoveries, %d spurious; kernel as sender: %d retransmitted segments",
		relDelta(sBefore, sAfter, "TCP.Retransmits"), relDelta(sBefore, sAfter, "TCP.Timeouts"),
		relDelta(sBefore, sAfter, "TCP.FastRecovery"), relDelta(sBefore, sAfter, "TCP.SACKRecovery"),
		relDelta(sBefore, sAfter, "TCP.TLPRecovery"), relDelta(sBefore, sAfter, "TCP.SpuriousRecovery"),
		relDelta(kBefore, kAfter, "Tcp.RetransSegs"))
}

// relTCPKernelToStack sends s from a kernel socket to a zero-copy socket of
// the stack and checks that it arrives byte-identical.
func relTCPKernelToStack(t *testing.T, e *relEnv, s relStream, port uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ln, err := e.api.ListenTCP(netip.AddrPortFrom(netip.MustParseAddr(stack4), port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		sock, err := ln.Accept(ctx)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer sock.Close()
		var r result
		r.n, r.sum, r.err = relRecvAll(ctx, sock)
		got <- r
	}()
	start := time.Now()
	c, err := e.kernelDial(ctx, "tcp4", net.JoinHostPort(stack4, relItoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := s.writeTo(c); err != nil {
		t.Fatalf("kernel write: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	r := <-got
	el := time.Since(start)
	if r.err != nil {
		t.Fatalf("stack receive after %d bytes: %v", r.n, r.err)
	}
	if want := s.sum(); r.n != int64(s.size) || r.sum != want {
		t.Fatalf("stack received %d bytes, SHA-256 %x; kernel sent %d, SHA-256 %x", r.n, r.sum, s.size, want)
	}
	t.Logf("%d MiB byte-identical in %v (%s)", s.size>>20, el.Round(time.Millisecond), relMbps(r.n, el))
}

// relStall is how long relTCPStackToKernel's kernel receiver may go
// without a byte before the transfer counts as stalled.
const relStall = 30 * time.Second

// stallReader reads from c, each read given relStall to return something:
// what TCP guarantees through loss is progress, not a rate, and a
// transfer's total time depends on how loaded the machine is.
type stallReader struct{ c net.Conn }

func (r stallReader) Read(b []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(relStall))
	return r.c.Read(b)
}

// relTCPStackToKernel sends s from the stack (net.Conn adapter) to a kernel
// socket and checks that it arrives byte-identical, with no stall longer
// than relStall. The stack's sender recovers from the impairments far more
// slowly than the kernel's, so on a loaded machine a fixed deadline for the
// whole transfer failed with the transfer still moving; the whole is
// bounded (3 minutes) only so the test ends.
func relTCPStackToKernel(t *testing.T, e *relEnv, s relStream, port uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ln := e.kernelListen(t, "tcp4", net.JoinHostPort(peer4, relItoa(port)))
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		var r result
		r.n, r.sum, r.err = relHashReader(stallReader{c})
		got <- r
	}()
	start := time.Now()
	c, err := e.api.Net().DialContext(ctx, "tcp", net.JoinHostPort(peer4, relItoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := s.writeTo(c); err != nil {
		t.Fatalf("stack write: %v", err)
	}
	if err := c.(*api.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		ln.Close()
		t.Fatalf("kernel did not receive everything in %v", time.Since(start).Round(time.Second))
	}
	el := time.Since(start)
	if r.err != nil {
		t.Fatalf("kernel receive after %d bytes: %v", r.n, r.err)
	}
	if want := s.sum(); r.n != int64(s.size) || r.sum != want {
		t.Fatalf("kernel received %d bytes, SHA-256 %x; stack sent %d, SHA-256 %x", r.n, r.sum, s.size, want)
	}
	t.Logf("%d MiB byte-identical in %v (%s)", s.size>>20, el.Round(time.Millisecond), relMbps(r.n, el))
}

// relUDPDatagrams is how many datagrams each UDP check sends.
const relUDPDatagrams = 2000

// relDatagram returns datagram i: its index, random bytes (up to 3000, so some
// are fragmented at MTU 1500) and the SHA-256 of what precedes it.
func relDatagram(r *rand.Rand, i int) []byte {
	body := make([]byte, 8+r.IntN(3000))
	binary.BigEndian.PutUint64(body, uint64(i))
	for j := 8; j < len(body); j++ {
		body[j] = byte(r.Uint32())
	}
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

// relUDPTally counts what a receiver saw.
type relUDPTally struct {
	seen                    map[uint64]bool
	intact, dups, corrupted int
	// highest is one more than the highest index seen intact, for the
	// sender's pacing.
	highest atomic.Int64
}

func (u *relUDPTally) add(d []byte) {
	if len(d) < 8+sha256.Size {
		u.corrupted++
		return
	}
	body, sum := d[:len(d)-sha256.Size], d[len(d)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		u.corrupted++
		return
	}
	i := binary.BigEndian.Uint64(body)
	if u.seen[i] {
		u.dups++
		return
	}
	u.seen[i] = true
	u.intact++
	if int64(i) >= u.highest.Load() {
		u.highest.Store(int64(i) + 1)
	}
}

// relPaced sends relUDPDatagrams datagrams with send, keeping at most 64
// ahead of the highest the receiver has seen (waiting at most 20 ms each
// time, in case the datagrams that would move it were lost), so that drops
// are the network's, not the receive buffers'.
func relPaced(u *relUDPTally, send func([]byte) error, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 9))
	for i := range relUDPDatagrams {
		evchantest.Poll(20*time.Millisecond, func() bool { return int64(i)-u.highest.Load() < 64 })
		if err := send(relDatagram(r, i)); err != nil {
			return err
		}
	}
	return nil
}

// relCheckTally fails t if a datagram arrived corrupted or none arrived, and
// logs the figures.
func relCheckTally(t *testing.T, what string, u *relUDPTally, dropped uint64) {
	t.Helper()
	missing := relUDPDatagrams - len(u.seen)
	t.Logf("UDP %s: %d sent, %d intact, %d duplicates, %d missing, %d corrupted; drop counters moved by %d",
		what, relUDPDatagrams, u.intact, u.dups, missing, u.corrupted, dropped)
	if u.corrupted != 0 {
		t.Errorf("UDP %s: %d datagrams delivered corrupted", what, u.corrupted)
	}
	if u.intact == 0 {
		t.Errorf("UDP %s: nothing arrived intact", what)
	}
	if missing > 0 && dropped == 0 {
		t.Errorf("UDP %s: %d datagrams missing and no counter accounts for them", what, missing)
	}
}

// relUDPKernelToStack sends datagrams from a kernel socket to a zero-copy UDP
// socket of the stack.
func relUDPKernelToStack(t *testing.T, e *relEnv, network, stackAddr string, port uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sock, err := e.api.ListenUDP(netip.AddrPortFrom(netip.MustParseAddr(stackAddr), port))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	local := peer4 + ":0"
	if network == "udp6" {
		local = "[" + peer6 + "]:0"
	}
	kc := e.kernelUDP(t, network, local)
	dst := &net.UDPAddr{IP: net.ParseIP(stackAddr), Port: int(port)}
	before, ib := e.st.Counters(), e.imp.Stats().Inbound
	u := &relUDPTally{seen: map[uint64]bool{}}
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- relPaced(u, func(b []byte) error { _, err := kc.WriteTo(b, dst); return err }, 1)
	}()
	senderDone := false
	for len(u.seen) < relUDPDatagrams {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		b, err := sock.Recv(rctx)
		rcancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("stack receive: %v", err)
			}
			if senderDone {
				break // a second of silence after the last datagram
			}
			select {
			case err := <-sendErr:
				if err != nil {
					t.Fatal(err)
				}
				senderDone = true
			default:
			}
			continue
		}
		u.add(b.Bytes())
		b.Release()
	}
	if !senderDone {
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
	}
	after, ia := e.st.Counters(), e.imp.Stats().Inbound
	dropped := ia.DroppedLoss - ib.DroppedLoss + relDelta(before, after,
		"UDP.ChecksumErrors", "UDP.MalformedPacketsReceived", "UDP.ReceiveBufferErrors",
		"IP.MalformedPacketsReceived", "IP.MalformedFragmentsReceived")
	relCheckTally(t, network+" kernel to stack", u, dropped)
}

// relUDPStackToKernel sends datagrams from a UDP socket of the stack (pool
// buffers, Send) to a kernel socket.
func relUDPStackToKernel(t *testing.T, e *relEnv, network, peerAddr string, port uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local := net.JoinHostPort(peerAddr, relItoa(port))
	kc := e.kernelUDP(t, network, local)
	sock, err := e.api.DialUDP(netip.MustParseAddrPort(local))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	kb, ob := e.kernelSNMP(t), e.imp.Stats().Outbound
	u := &relUDPTally{seen: map[uint64]bool{}}
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- relPaced(u, func(d []byte) error {
			b, err := e.api.Reserve(len(d))
			if err != nil {
				return err
			}
			copy(b.Bytes(), d)
			_, err = sock.Send(ctx, b)
			return err
		}, 2)
	}()
	buf := make([]byte, 64<<10)
	senderDone := false
	for len(u.seen) < relUDPDatagrams {
		kc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := kc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("kernel receive: %v", err)
			}
			if senderDone {
				break
			}
			select {
			case err := <-sendErr:
				if err != nil {
					t.Fatal(err)
				}
				senderDone = true
			default:
			}
			continue
		}
		u.add(buf[:n])
	}
	if !senderDone {
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
	}
	ka, oa := e.kernelSNMP(t), e.imp.Stats().Outbound
	dropped := oa.DroppedLoss - ob.DroppedLoss + relDelta(kb, ka,
		"Udp.InCsumErrors", "Udp.InErrors", "Udp.RcvbufErrors", "Udp6InCsumErrors", "Udp6InErrors", "Udp6RcvbufErrors",
		"Ip.InHdrErrors", "Ip.ReasmFails", "Ip6InHdrErrors", "Ip6ReasmFails")
	relCheckTally(t, network+" stack to kernel", u, dropped)
}
