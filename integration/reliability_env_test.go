package integration

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/impair"
	"github.com/zcnet/zcnet/tap"
)

// Shared fixture of the reliability tests: a zcnet stack in this
// process on a TAP device in a private namespace, optionally behind an
// impairment link, with the socket API and a pool over it; the kernel side
// of the device is the peer, driven by Go sockets made inside the namespace
// (nstest.Do) or by stock tools (hping3, ping). Addresses are the daemon
// tests' (peer4/stack4, peer6/stack6 in daemon_test.go).

// relConfig configures newRelEnv.
type relConfig struct {
	offload tap.OffloadMode
	queues  int            // 0: 1
	impair  *impair.Config // nil: the TAP link is attached as it is
	stack   stack.Options  // zero: defaults
	poolMiB int            // 0: 64
}

// relEnv is one stack on one TAP device, and its peer.
type relEnv struct {
	ns   *nstest.NS
	dev  string
	link *tap.Link
	imp  *impair.Endpoint // nil without impairment
	st   *stack.Stack
	api  *api.Stack
	pool *dmapool.Pool
}

// newRelEnv builds the environment; t.Cleanup tears it down in order (API,
// stack with its links, then the pool, which must have no buffer left).
func newRelEnv(t *testing.T, cfg relConfig) *relEnv {
	t.Helper()
	ns := nstest.New(t)
	e := &relEnv{ns: ns, dev: nstest.UniqueName(t, "zr")}
	if cfg.queues == 0 {
		cfg.queues = 1
	}
	if cfg.poolMiB == 0 {
		cfg.poolMiB = 64
	}
	if err := ns.Do(func() (err error) {
		e.link, err = tap.Open(tap.Config{Name: e.dev, Offload: cfg.offload, Queues: cfg.queues})
		return err
	}); err != nil {
		t.Fatalf("tap.Open in %s: %v", ns.Name(), err)
	}
	var link gstack.LinkEndpoint = e.link
	if cfg.impair != nil {
		imp, err := impair.New(e.link, *cfg.impair)
		if err != nil {
			e.link.Close()
			t.Fatal(err)
		}
		e.imp, link = imp, imp
	}
	pool, err := dmapool.New(dmapool.Config{Size: cfg.poolMiB << 20, Pin: dmapool.PinOff})
	if err != nil {
		link.Close()
		t.Fatal(err)
	}
	e.pool = pool
	t.Cleanup(func() {
		if st := pool.Stats(); st.Buffers != 0 {
			t.Errorf("pool: %d buffers still reserved at the end", st.Buffers)
		}
		if err := pool.Close(); err != nil {
			t.Errorf("pool close: %v", err)
		}
	})
	if e.st, err = stack.New(cfg.stack); err != nil {
		link.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	if _, err := e.st.AddNIC(link, stack.NICConfig{Name: e.dev, Addrs: []netip.Prefix{
		netip.MustParsePrefix(stack4 + "/24"), netip.MustParsePrefix(stack6 + "/64"),
	}}); err != nil {
		t.Fatal(err)
	}
	if e.api, err = api.New(e.st, api.Options{Pool: pool}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.api.Close() })
	ns.MustRun("ip", "addr", "add", peer4+"/24", "dev", e.dev)
	ns.MustRun("ip", "-6", "addr", "add", peer6+"/64", "dev", e.dev, "nodad")
	ns.MustRun("ip", "link", "set", e.dev, "up")
	return e
}

// counters returns the stack's counters (stack.Counters), the TAP link's
// (tap.Stats, as "tap.<Field>"), and the NICs' per-protocol counts of
// packets of unknown network and transport protocols, summed over the
// protocols ("NICs.UnknownL3ProtocolRcvdPackets", "…L4…"), which
// stack.Counters leaves out.
func (e *relEnv) counters() map[string]uint64 {
	c := e.st.Counters()
	v := reflect.ValueOf(e.link.Stats())
	for i := range v.NumField() {
		c["tap."+v.Type().Field(i).Name] = v.Field(i).Uint()
	}
	for _, info := range e.st.Netstack().NICInfo() {
		for name, m := range map[string]*tcpip.IntegralStatCounterMap{
			"NICs.UnknownL3ProtocolRcvdPackets": info.Stats.UnknownL3ProtocolRcvdPacketCounts,
			"NICs.UnknownL4ProtocolRcvdPackets": info.Stats.UnknownL4ProtocolRcvdPacketCounts,
		} {
			if m == nil {
				continue
			}
			for _, k := range m.Keys() {
				if sc, ok := m.Get(k); ok {
					c[name] += sc.Value()
				}
			}
		}
	}
	return c
}

// kernelListen listens on the kernel side of the namespace.
func (e *relEnv) kernelListen(t *testing.T, network, address string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := e.ns.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// kernelDial connects from the kernel side of the namespace.
func (e *relEnv) kernelDial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := e.ns.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// kernelUDP opens an unconnected UDP socket on the kernel side with a large
// receive buffer, so that drops are the network's, not the socket's.
func (e *relEnv) kernelUDP(t *testing.T, network, address string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := e.ns.Do(func() error {
		la, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP(network, la)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(8 << 20)
	c.SetWriteBuffer(8 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// ping checks that the stack answers count echo requests from the kernel
// side, over IPv4 and IPv6.
func (e *relEnv) ping(t *testing.T, count int) { e.pingAtLeast(t, count, count) }

// pingAtLeast sends count echo requests over IPv4 and over IPv6 and checks
// that at least min of each are answered (fewer than all on an impaired
// link).
func (e *relEnv) pingAtLeast(t *testing.T, count, min int) {
	t.Helper()
	need(t, "ping")
	n := strconv.Itoa(count)
	// -W alone waits for a late reply only until some reply has come;
	// after that, iputils' ping waits two round trips for the last one
	// and exits: a reply delayed on a loaded machine (after a flood, 3
	// round trips of 5-14 ms, the last reply later than 28 ms) was
	// counted missing. -w waits for count replies until its deadline
	// (sending more requests meanwhile).
	for _, args := range [][]string{
		{"ping", "-c", n, "-i", "0.2", "-W", "3", "-w", "20", stack4},
		{"ping", "-6", "-c", n, "-i", "0.2", "-W", "3", "-w", "20", stack6},
	} {
		out, _ := e.ns.Run(30*time.Second, args...) // ping exits 1 if any reply is missing
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s:\n%s", strings.Join(args, " "), out)
		}
		if got, _ := strconv.Atoi(m[2]); got < min {
			t.Fatalf("stack answered %d of %s echo requests, want at least %d:\n%s", got, n, min, out)
		}
	}
}

// kernelSNMP returns the kernel's protocol counters in the namespace
// (/proc/net/snmp and snmp6, as "Udp.InCsumErrors" and "Udp6InCsumErrors").
func (e *relEnv) kernelSNMP(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	snmp, err := e.ns.Run(10*time.Second, "cat", "/proc/net/snmp", "/proc/net/snmp6")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(snmp, "\n")
	for i := 0; i < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) == 2 { // snmp6: "Udp6InCsumErrors 0"
			if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = v
			}
			continue
		}
		// snmp: a header line "Udp: InDatagrams …" then a value line.
		if len(f) < 2 || !strings.HasSuffix(f[0], ":") || i+1 >= len(lines) {
			continue
		}
		v := strings.Fields(lines[i+1])
		if len(v) != len(f) || v[0] != f[0] {
			continue
		}
		for j := 1; j < len(f); j++ {
			if n, err := strconv.ParseUint(v[j], 10, 64); err == nil {
				out[strings.TrimSuffix(f[0], ":")+"."+f[j]] = n
			}
		}
		i++
	}
	return out
}

// relStream is the deterministic data a transfer sends: a ChaCha8 stream of
// size bytes from seed, written in 64 KiB pieces.
type relStream struct {
	seed [32]byte
	size int
}

func newRelStream(seed byte, size int) relStream {
	return relStream{seed: [32]byte{'z', 'c', 'r', seed}, size: size}
}

// sum returns the SHA-256 of the stream.
func (s relStream) sum() [32]byte {
	h := sha256.New()
	s.writeTo(h)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// writeTo writes the stream to w.
func (s relStream) writeTo(w io.Writer) (int64, error) {
	src := rand.NewChaCha8(s.seed)
	buf := make([]byte, 64<<10)
	var n int64
	for n < int64(s.size) {
		b := buf[:min(len(buf), s.size-int(n))]
		src.Read(b)
		m, err := w.Write(b)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// relHashReader reads r to the end and returns how much it read and the
// SHA-256 of it.
func relHashReader(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, relSum(h), err
}

func relSum(h hash.Hash) [32]byte {
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// relRecvAll receives from a zero-copy socket until the end of the stream,
// hashing and releasing every Buf; it returns the bytes and their SHA-256.
func relRecvAll(ctx context.Context, sock *api.Socket) (int64, [32]byte, error) {
	h := sha256.New()
	var n int64
	for {
		b, err := sock.Recv(ctx)
		if errors.Is(err, io.EOF) {
			return n, relSum(h), nil
		}
		if err != nil {
			return n, relSum(h), err
		}
		h.Write(b.Bytes())
		n += int64(b.Len())
		if err := b.Release(); err != nil {
			return n, relSum(h), err
		}
	}
}

// relTransferSize is size, or a quarter of it (at least 4 MiB) under the race
// detector or -short; ZCNET_RELIABILITY_MIB=n sets it outright.
func relTransferSize(size int) int {
	if s := os.Getenv("ZCNET_RELIABILITY_MIB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n << 20
		}
	}
	if raceEnabled || testing.Short() {
		return max(size/4, 4<<20)
	}
	return size
}

// relItoa formats a port.
func relItoa(p uint16) string { return strconv.Itoa(int(p)) }

// relMbps formats a rate.
func relMbps(bytes int64, d time.Duration) string {
	return fmt.Sprintf("%.0f Mbit/s", float64(bytes)*8/d.Seconds()/1e6)
}

// relHeapInuse returns the Go heap in use after garbage collection: the
// memory the stack (which lives in this process) holds. Two collections,
// because objects in sync.Pools (gVisor's buffer chunks) survive one.
func relHeapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// relDelta returns after[k] - before[k] for each key.
func relDelta(before, after map[string]uint64, keys ...string) uint64 {
	var d uint64
	for _, k := range keys {
		d += after[k] - before[k]
	}
	return d
}

// relHping3Sent parses "N packets transmitted" from hping3's summary (0 if
// absent).
func relHping3Sent(out string) int {
	m := regexp.MustCompile(`(\d+) packets transmitted`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// hashServer serves on a listener of the stack: each connection's bytes
// are hashed until the peer's FIN, and the SHA-256 is written back before
// the connection closes. It stops, and waits for its connections, in
// t.Cleanup.
func (e *relEnv) hashServer(t *testing.T, port uint16) {
	t.Helper()
	ln, err := e.api.Net().Listen("tcp", net.JoinHostPort(stack4, relItoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(60 * time.Second))
				_, sum, err := relHashReader(c)
				if err == nil {
					c.Write(sum[:])
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// transfer sends s from a kernel socket to the stack's hashServer on port
// and checks the SHA-256 the server returns.
func (e *relEnv) transfer(ctx context.Context, port uint16, s relStream) error {
	c, err := e.kernelDial(ctx, "tcp4", net.JoinHostPort(stack4, relItoa(port)))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return hashExchange(ctx, c, s)
}

// hashExchange sends s on c (which it closes), shuts c's sending side and
// checks the SHA-256 a hashServer answers with.
func hashExchange(ctx context.Context, c net.Conn, s relStream) error {
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := s.writeTo(c); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("%T cannot shut down its sending side", c)
	}
	if err := cw.CloseWrite(); err != nil {
		return err
	}
	var got [32]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return fmt.Errorf("read the server's hash: %w", err)
	}
	if want := s.sum(); got != want {
		return fmt.Errorf("server hashed %x, sent %x", got, want)
	}
	return nil
}

// heapPeak samples HeapInuse every 50 ms until stop is closed and returns
// the highest value seen on done.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	done := make(chan uint64, 1)
	go func() {
		var peak uint64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return done
}
