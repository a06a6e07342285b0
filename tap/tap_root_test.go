//go:build linux

package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zcnet/zcnet/evchan/evchantest"
	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/stack/link"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Tests against the kernel, in a private network namespace (nstest skips
// them without root). The kernel side of the TAP is 192.0.2.1/24 and
// 2001:db8::1/64, the stack 192.0.2.2/24 and 2001:db8::2/64.

// tapEnv is a TAP link in a namespace with a stack on it.
type tapEnv struct {
	ns    *nstest.NS
	name  string
	link  *Link
	stack *stack.Stack
	// mirror checks every frame the stack sends (see startMirror); nil
	// when tc could not set it up.
	mirror *mirrorChecker
}

// newTAPEnv creates the TAP in a fresh namespace, addresses and brings up
// the kernel side, and builds a stack on the link.
func newTAPEnv(t *testing.T, cfg Config) *tapEnv {
	t.Helper()
	ns := nstest.New(t)
	e := &tapEnv{ns: ns, name: nstest.UniqueName(t, "zt")}
	cfg.Name = e.name
	if err := ns.Do(func() (err error) {
		e.link, err = Open(cfg)
		return err
	}); err != nil {
		t.Fatalf("Open in %s: %v", ns.Name(), err)
	}
	if e.link.Name() != e.name {
		t.Fatalf("device name %q, want %q", e.link.Name(), e.name)
	}
	e.mirror = startMirror(t, ns, e.name)
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", e.name)
	ns.MustRun("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", e.name, "nodad")
	ns.MustRun("ip", "link", "set", e.name, "up")
	e.stack = newStack(t, e.link, "192.0.2.2/24", "2001:db8::2/64")
	return e
}

// mirrorChecker is a plain TAP (no offloads) that receives, via tc, a copy
// of every frame the stack writes to the main TAP. The kernel cannot hand
// a partially checksummed or GSO frame to a device without offloads, so it
// segments super-frames and completes partial checksums in software on the
// way out; a wrong virtio-net header (a wrong csum_start, a missing
// NEEDS_CSUM) then shows up as a wrong checksum here, which a local
// socket, trusting the partial checksum, would never notice.
type mirrorChecker struct {
	link            *Link
	frames, checked atomic.Uint64
	mu              sync.Mutex
	bad             []string // +checklocks:mu
}

// startMirror creates the mirror TAP and the tc rule, or returns nil (and
// logs why) when tc lacks the classifier or action.
func startMirror(t *testing.T, ns *nstest.NS, dev string) *mirrorChecker {
	t.Helper()
	name := nstest.UniqueName(t, "zm")
	m := &mirrorChecker{}
	var devMAC net.HardwareAddr
	if err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		devMAC = ifc.HardwareAddr
		// The mirror's reader must accept frames addressed to the
		// main TAP's kernel side: it takes that MAC address.
		m.link, err = Open(Config{Name: name, Offload: OffloadOff, Queues: 1, LinkAddress: devMAC, MTU: 1500})
		return err
	}); err != nil {
		t.Fatalf("mirror TAP: %v", err)
	}
	t.Cleanup(func() {
		m.link.Close()
		m.link.Wait()
	})
	m.link.Attach(m)
	ns.MustRun("sysctl", "-q", "-w", "net.ipv6.conf."+name+".disable_ipv6=1")
	// A long queue: the mirror's reader competes for the CPU with the
	// transfer it watches, and the tun queue drops what does not fit.
	ns.MustRun("ip", "link", "set", name, "txqueuelen", "20000", "up")
	if _, err := ns.Run(10*time.Second, "tc", "qdisc", "add", "dev", dev, "clsact"); err != nil {
		t.Logf("no clsact qdisc, transmit checksums not checked: %v", err)
		return nil
	}
	// u32 matching nothing matches everything; matchall is not built
	// into every kernel.
	if _, err := ns.Run(10*time.Second, "tc", "filter", "add", "dev", dev, "ingress", "protocol", "all",
		"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", name); err != nil {
		if _, err2 := ns.Run(10*time.Second, "tc", "filter", "add", "dev", dev, "ingress", "protocol", "all",
			"matchall", "action", "mirred", "egress", "mirror", "dev", name); err2 != nil {
			t.Logf("no tc mirror, transmit checksums not checked: %v; %v", err, err2)
			return nil
		}
	}
	return m
}

// DeliverNetworkPacket implements stack.NetworkDispatcher for the mirror:
// it checks the frame's checksums with gVisor's header package.
func (m *mirrorChecker) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	m.frames.Add(1)
	v := pkt.ToView() // the whole frame, Ethernet header included
	defer v.Release()
	ok, err := checkFrameChecksums(v.AsSlice())
	if !ok {
		return
	}
	m.checked.Add(1)
	if err != nil {
		m.mu.Lock()
		if len(m.bad) < 10 {
			m.bad = append(m.bad, fmt.Sprintf("%v (%d-byte frame)", err, v.Size()))
		}
		m.mu.Unlock()
	}
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (m *mirrorChecker) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// verify fails t if any mirrored frame had a wrong checksum or fewer than
// min frames were checked. It waits briefly for the mirror's reader to
// catch up with the copies still queued.
func (m *mirrorChecker) verify(t *testing.T, min uint64) {
	t.Helper()
	if m == nil {
		return
	}
	if !evchantest.Poll(5*time.Second, func() bool { return m.checked.Load() >= min }) {
		t.Errorf("mirror checked %d frames (of %d), want at least %d", m.checked.Load(), m.frames.Load(), min)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.bad) > 0 {
		t.Errorf("mirror found wrong checksums in frames the stack sent: %s", strings.Join(m.bad, "; "))
	}
	t.Logf("mirror: %d frames, %d checked, 0 bad", m.frames.Load(), m.checked.Load())
}

// kernelDial connects from the namespace (kernel side) to the stack.
func (e *tapEnv) kernelDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := e.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("kernel dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kernelListen listens in the namespace and returns the listener.
func (e *tapEnv) kernelListen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := e.ns.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("kernel listen %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// kernelToStack moves n bytes from a kernel socket to a stack socket.
func (e *tapEnv) kernelToStack(t *testing.T, stackAddr string, n int64, deadline time.Time) {
	t.Helper()
	conns, errs := stackListen(t, e.stack, stackAddr)
	kc := e.kernelDial(t, stackAddr)
	var sc net.Conn
	select {
	case sc = <-conns:
	case err := <-errs:
		t.Fatalf("stack accept: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("stack accept timed out")
	}
	defer sc.Close()
	transfer(t, kc, sc, n, deadline)
}

// stackToKernel moves n bytes from a stack socket to a kernel socket.
func (e *tapEnv) stackToKernel(t *testing.T, kernelAddr string, n int64, deadline time.Time) {
	t.Helper()
	l := e.kernelListen(t, "tcp", kernelAddr)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	sc, err := stackDial(e.stack, l.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatalf("stack dial %s: %v", l.Addr(), err)
	}
	kc, ok := <-accepted
	if !ok {
		t.Fatal("kernel accept failed")
	}
	defer kc.Close()
	transfer(t, sc, kc, n, deadline)
}

// bulkSize is the TCP transfer size per direction: 64 MiB, less under the
// race detector, which slows gVisor by an order of magnitude.
func bulkSize() int64 {
	if raceEnabled {
		return 16 << 20
	}
	return 64 << 20
}

// TestTAP runs ping, TCP and UDP between the kernel and a stack over a TAP
// link, with offloads on and off and with one and two queues, and checks
// integrity, the offload counters and (through the mirror) every transmit
// checksum.
func TestTAP(t *testing.T) {
	for _, mode := range []OffloadMode{OffloadOn, OffloadOff} {
		for _, queues := range []int{1, 2} {
			t.Run(fmt.Sprintf("offload=%v/queues=%d", mode, queues), func(t *testing.T) {
				testTAP(t, mode, queues)
			})
		}
	}
}

func testTAP(t *testing.T, mode OffloadMode, queues int) {
	e := newTAPEnv(t, Config{Offload: mode, Queues: queues})
	if e.link.NumQueues() != queues {
		t.Fatalf("NumQueues %d, want %d", e.link.NumQueues(), queues)
	}
	out := e.ns.MustRun("ls", "/sys/class/net/"+e.name+"/queues")
	if got := strings.Count(out, "rx-"); got != queues {
		t.Fatalf("kernel reports %d rx queues (%q), want %d", got, out, queues)
	}
	if mode == OffloadOn && e.link.Offloads()&(OffloadCsum|OffloadTSO4|OffloadTSO6) != OffloadCsum|OffloadTSO4|OffloadTSO6 {
		t.Fatalf("offloads %v, want at least csum|tso4|tso6", e.link.Offloads())
	}
	t.Logf("device %s, offloads %v", e.name, e.link.Offloads())

	for _, dst := range []string{"192.0.2.2", "2001:db8::2"} {
		if out, err := e.ns.Run(20*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "5", dst); err != nil {
			t.Fatalf("ping %s: %v\n%s", dst, err, out)
		}
	}

	deadline := time.Now().Add(50 * time.Second)
	n := bulkSize()
	before := e.link.Stats()
	e.kernelToStack(t, "192.0.2.2:5001", n, deadline)
	mid := e.link.Stats()
	e.stackToKernel(t, "192.0.2.1:0", n, deadline)
	after := e.link.Stats()
	e.kernelToStack(t, "[2001:db8::2]:5002", n/8, deadline)
	e.stackToKernel(t, "[2001:db8::1]:0", n/8, deadline)
	udpEcho(t, e, "192.0.2.1:0", 50)
	udpEcho(t, e, "[2001:db8::1]:0", 50)

	st := e.link.Stats()
	t.Logf("stats: %+v", st)
	if st.RxDropBadCsum+st.RxDropBadVnetHdr+st.RxDropShort+st.RxReadErrors+st.TxErrors != 0 {
		t.Errorf("drops or errors: %+v", st)
	}
	if st.RxCopiedBytes > st.RxFrames*link.MaxSplitHeader {
		t.Errorf("copied %d bytes on receive for %d frames: more than headers", st.RxCopiedBytes, st.RxFrames)
	}
	if mode == OffloadOn {
		if mid.RxGSOFrames == before.RxGSOFrames {
			t.Errorf("kernel → stack: no GSO super-frame received")
		}
		if after.TxGSOFrames == mid.TxGSOFrames {
			t.Errorf("stack → kernel: no GSO super-frame sent")
		}
		// ICMP and NDP frames from the kernel carry full checksums
		// and no flags: verified in software.
		if st.RxCsumVerified == 0 {
			t.Errorf("no frame verified in software")
		}
	} else if st.RxGSOFrames+st.TxGSOFrames+st.RxCsumVerified != 0 {
		t.Errorf("offloads off, yet GSO or verification counted: %+v", st)
	}
	// The mirror is best effort (its queue drops what its reader cannot
	// take in time), but it must have seen most segments of the bulk
	// transfers: at least half of one per MSS.
	e.mirror.verify(t, uint64((n+n/8)/1448/2))
}

// udpEcho sends count datagrams from the stack to a kernel UDP socket that
// echoes them, one at a time, and checks each reply.
func udpEcho(t *testing.T, e *tapEnv, kernelAddr string, count int) {
	t.Helper()
	var pc net.PacketConn
	if err := e.ns.Do(func() (err error) {
		network := "udp4"
		if strings.HasPrefix(kernelAddr, "[") {
			network = "udp6"
		}
		pc, err = net.ListenPacket(network, kernelAddr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	done := make(chan struct{})
	defer func() { <-done }()
	defer pc.Close()
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if _, err := pc.WriteTo(buf[:n], from); err != nil {
				return
			}
		}
	}()
	raddr, proto := fullAddr(pc.LocalAddr().String())
	c, err := gonet.DialUDP(e.stack, nil, &raddr, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	// UDP may lose a datagram on a loaded machine (the kernel's backlog
	// is bounded); each is retried twice, and retries are reported.
	retries := 0
	for i := 0; i < count; i++ {
		msg := echoMsg(i)
		var n int
		var err error
		for try := 0; try < 3; try++ {
			if try > 0 {
				retries++
			}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			// A late echo of an earlier, retried datagram is
			// skipped; anything else is checked below.
			for {
				if n, err = c.Read(buf); err != nil || !isEarlierEcho(buf[:n], i) {
					break
				}
			}
			if err == nil {
				break
			}
		}
		if err != nil {
			ss := e.stack.Stats()
			out, _ := e.ns.Run(10*time.Second, "sh", "-c", "ip -s link show "+e.name+"; ip neigh; nstat -az | grep -i -E 'udp|InDiscards|InAddrErrors|Drop'")
			t.Fatalf("echo %d: %v\nlink %+v\nstack UDP rx %d sent %d unknown-port %d csum %d rcvbuf %d; IP rx %d delivered %d out %d; NIC rx %d tx %d\n%s", i, err, e.link.Stats(),
				ss.UDP.PacketsReceived.Value(), ss.UDP.PacketsSent.Value(), ss.UDP.UnknownPortErrors.Value(), ss.UDP.ChecksumErrors.Value(), ss.UDP.ReceiveBufferErrors.Value(),
				ss.IP.PacketsReceived.Value(), ss.IP.PacketsDelivered.Value(), ss.IP.PacketsSent.Value(), ss.NICs.Rx.Packets.Value(), ss.NICs.Tx.Packets.Value(), out)
		}
		if string(buf[:n]) != string(msg) {
			t.Fatalf("echo %d: got %q", i, buf[:n])
		}
	}
	if retries > 0 {
		t.Logf("UDP echo to %s: %d datagrams, %d retries", kernelAddr, count, retries)
	}
}

func echoMsg(i int) []byte {
	return []byte(fmt.Sprintf("datagram %d %s", i, strings.Repeat("x", i*20)))
}

// isEarlierEcho reports whether b is exactly datagram j for some j < i.
func isEarlierEcho(b []byte, i int) bool {
	for j := 0; j < i; j++ {
		if string(b) == string(echoMsg(j)) {
			return true
		}
	}
	return false
}

// TestTAPUSO sends UDP GSO (UDP_SEGMENT) writes from the kernel and checks
// that they reach the stack as super-frames, cut into the right datagrams.
func TestTAPUSO(t *testing.T) {
	e := newTAPEnv(t, Config{Queues: 1})
	if e.link.Offloads()&OffloadUSO4 == 0 {
		t.Skipf("kernel without USO (offloads %v)", e.link.Offloads())
	}
	addr, proto := fullAddr("192.0.2.2:7")
	sc, err := gonet.DialUDP(e.stack, &addr, nil, proto)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var kc *net.UDPConn
	if err := e.ns.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 7})
		kc = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	const gsoSize, segs, writes = 1200, 8, 4
	rc, err := kc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, gsoSize)
	}); err != nil || serr != nil {
		t.Fatalf("UDP_SEGMENT: %v %v", err, serr)
	}
	// The ARP exchange must be done before the burst, or the kernel queues
	// (and may drop) the super-frames while resolving.
	if out, err := e.ns.Run(20*time.Second, "ping", "-c", "1", "-W", "5", "192.0.2.2"); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	payload := make([]byte, gsoSize*segs)
	for w := 0; w < writes; w++ {
		for i := range payload {
			payload[i] = byte(w*segs + i/gsoSize)
		}
		if _, err := kc.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 4096)
	for i := 0; i < writes*segs; i++ {
		if err := sc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := sc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v (stats %+v)", i, writes*segs, err, e.link.Stats())
		}
		if n != gsoSize || buf[0] != byte(i) || buf[n-1] != byte(i) {
			t.Fatalf("datagram %d: %d bytes starting %d, want %d bytes of %d", i, n, buf[0], gsoSize, byte(i))
		}
	}
	st := e.link.Stats()
	if st.RxUSOFrames == 0 || st.RxUSODatagrams < writes*segs {
		t.Errorf("USO frames %d datagrams %d, want > 0 and ≥ %d", st.RxUSOFrames, st.RxUSODatagrams, writes*segs)
	}
}

// TestOpenErrors checks the errors Open reports for a missing clone device
// and for a caller without CAP_NET_ADMIN.
func TestOpenErrors(t *testing.T) {
	t.Run("no device", func(t *testing.T) {
		old := tunPath
		tunPath = "/nonexistent/net/tun"
		defer func() { tunPath = old }()
		_, err := Open(Config{Name: "zcnone0", Queues: 1})
		if !errors.Is(err, ErrNoDevice) {
			t.Fatalf("Open: %v, want ErrNoDevice", err)
		}
		if !strings.Contains(err.Error(), "modprobe tun") {
			t.Fatalf("error %q does not say how to fix it", err)
		}
	})
	t.Run("no permission", func(t *testing.T) {
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			nstest.Skip(t, "skipping: no /dev/net/tun")
		}
		// Capabilities are per thread: drop CAP_NET_ADMIN on a thread
		// of our own, which is never handed back to the runtime (the
		// goroutine ends locked, so the thread ends with it).
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				errc <- fmt.Errorf("capget: %w", err)
				return
			}
			data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				errc <- fmt.Errorf("capset: %w", err)
				return
			}
			l, err := Open(Config{Name: "zcperm0", Queues: 1})
			if err == nil {
				l.Close()
				err = errors.New("Open succeeded without CAP_NET_ADMIN")
			}
			errc <- err
		}()
		err := <-errc
		if !errors.Is(err, ErrPermission) {
			t.Fatalf("Open without CAP_NET_ADMIN: %v, want ErrPermission", err)
		}
		if !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Fatalf("error %q should wrap EPERM or EACCES and name CAP_NET_ADMIN", err)
		}
	})
}

// TestTAPDeviceDeleted checks that deleting the device under a link ends
// its readers with an error that Err reports.
func TestTAPDeviceDeleted(t *testing.T) {
	e := newTAPEnv(t, Config{Queues: 2})
	e.ns.MustRun("ip", "link", "del", e.name)
	if !evchantest.Poll(5*time.Second, func() bool { return e.link.Err() != nil }) {
		t.Fatalf("no reader error after the device was deleted (stats %+v)", e.link.Stats())
	}
	t.Logf("Err: %v", e.link.Err())
	if e.link.Stats().RxReadErrors == 0 {
		t.Errorf("RxReadErrors not counted")
	}
}
