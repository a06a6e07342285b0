//go:build linux

package xdp

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// TestVeth runs ping, TCP both ways with a hash check and UDP datagrams
// between a kernel peer and the stack on an AF_XDP link, in generic and
// native mode, checks the host's own address on the same interface still
// answers (XDP_PASS), and that every UMEM frame comes back.
func TestVeth(t *testing.T) {
	for _, mode := range []AttachMode{AttachGeneric, AttachNative} {
		t.Run(mode.String(), func(t *testing.T) { testVeth(t, mode) })
	}
}

func testVeth(t *testing.T, mode AttachMode) {
	e := newVeth(t)
	e.open(t, Config{Attach: mode})
	info := e.link.Info()
	t.Logf("attached %s, bound %s, frames %d×%d, pinned %v", info.AttachString(), info.BindString(), info.Frames, info.FrameSize, info.Pinned)
	if info.Native != (mode == AttachNative) {
		t.Fatalf("asked %v, got native=%v", mode, info.Native)
	}
	out := e.zns.MustRun("ip", "-d", "link", "show", "dev", e.zdev)
	want := map[AttachMode]string{AttachGeneric: "xdpgeneric", AttachNative: "xdp "}[mode]
	if !strings.Contains(out, want) {
		t.Fatalf("ip link shows no %q program:\n%s", want, out)
	}

	e.ping(t, stackAddr4)
	e.ping(t, stackAddr6)
	// The host's own address on the same interface: the program passes it.
	before := e.link.Stats()
	e.ping(t, hostAddr4)
	if st := e.link.Stats(); st.RxFrames != before.RxFrames {
		t.Errorf("pinging the host's address reached the stack: %d frames", st.RxFrames-before.RxFrames)
	}

	deadline := time.Now().Add(60 * time.Second)
	n := int64(8 << 20)
	// kernel → stack
	_, accepted := stackListenTCP(t, e.stack, stackAddr4+":5001")
	var kc net.Conn
	e.kernelDo(t, func() (err error) {
		kc, err = net.DialTimeout("tcp", stackAddr4+":5001", 10*time.Second)
		return err
	})
	sc := <-accepted
	if sc == nil {
		t.Fatal("stack accept failed")
	}
	transfer(t, kc, sc, n, deadline)
	kc.Close()
	sc.Close()
	// stack → kernel, over IPv6
	var kl net.Listener
	e.kernelDo(t, func() (err error) {
		kl, err = net.Listen("tcp", "["+kernelAddr6+"]:5002")
		return err
	})
	defer kl.Close()
	kacc := make(chan net.Conn, 1)
	go func() {
		c, _ := kl.Accept()
		kacc <- c
	}()
	fa, proto := fullAddr(t, "["+kernelAddr6+"]:5002")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	sc2, err := gonet.DialContextTCP(ctx, e.stack, fa, proto)
	cancel()
	if err != nil {
		t.Fatalf("stack dial: %v", err)
	}
	kc2 := <-kacc
	if kc2 == nil {
		t.Fatal("kernel accept failed")
	}
	transfer(t, sc2, kc2, n, deadline)
	sc2.Close()
	kc2.Close()

	udpEcho(t, e, 200)

	st := e.link.Stats()
	t.Logf("stats: %+v", st)
	if st.RxDropBadDesc+st.RxBadIndex+st.TxBadCompletion+st.TxKickErrors+st.RxDropShort+st.RxDropOversized != 0 {
		t.Errorf("errors counted: %+v", st)
	}
	if st.RxCopiedBytes < st.RxBytes || st.TxCopiedBytes != st.TxBytes {
		t.Errorf("copies not counted: %+v", st)
	}
	if !info.ZeroCopy && st.TxKicks == 0 {
		t.Errorf("copy mode sent %d frames without a kick", st.TxFrames)
	}
	ks, err := e.link.KernelStats()
	if err != nil {
		t.Fatalf("KernelStats: %v", err)
	}
	t.Logf("kernel: %+v", ks)

	// Every frame comes back: after Close, the receive half is the
	// kernel's (fill ring) or held, the transmit half free.
	e.link.Close()
	e.link.Wait()
	st = e.link.Stats()
	if st.FramesRxKernel+st.FramesRxHeld != info.Frames/2 || st.FramesTxFree != info.Frames/2 || st.FramesTxKernel != 0 {
		t.Errorf("frames not all back: %+v", st)
	}
	out = e.zns.MustRun("ip", "-d", "link", "show", "dev", e.zdev)
	if strings.Contains(out, "prog/xdp") {
		t.Errorf("program still attached after Close:\n%s", out)
	}
}

// udpEcho sends count datagrams from a kernel socket to a stack socket that
// echoes them, and checks each reply.
func udpEcho(t *testing.T, e *xdpEnv, count int) {
	t.Helper()
	fa, proto := fullAddr(t, stackAddr4+":7")
	sc, err := gonet.DialUDP(e.stack, &fa, nil, proto)
	if err != nil {
		t.Fatalf("stack UDP: %v", err)
	}
	defer sc.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 2048)
		for {
			n, from, err := sc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = sc.WriteTo(b[:n], from)
		}
	}()
	defer func() { sc.Close(); <-done }()
	var kc net.Conn
	e.kernelDo(t, func() (err error) {
		kc, err = net.Dial("udp", stackAddr4+":7")
		return err
	})
	defer kc.Close()
	b := make([]byte, 2048)
	got := 0
	for i := 0; i < count; i++ {
		msg := fmt.Appendf(nil, "datagram %d %s", i, strings.Repeat("x", i*5))
		if _, err := kc.Write(msg); err != nil {
			t.Fatalf("kernel send: %v", err)
		}
		_ = kc.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := kc.Read(b)
		if err != nil {
			continue // a lost datagram, counted below
		}
		if string(b[:n]) != string(msg) {
			t.Fatalf("datagram %d: echoed %q", i, b[:n])
		}
		got++
	}
	if got < count*9/10 {
		t.Fatalf("%d of %d datagrams echoed", got, count)
	}
}

// TestKilledDetaches checks the program leaves the interface when its
// process dies without closing anything: a child attaches and is killed
// with SIGKILL; the bpf_link dies with its file descriptor.
func TestKilledDetaches(t *testing.T) {
	e := newVeth(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := e.zns.Cmd(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+e.zdev)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := readLine(out)
	if err != nil || !strings.HasPrefix(line, "ready") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %q, %v", line, err)
	}
	show := e.zns.MustRun("ip", "-d", "link", "show", "dev", e.zdev)
	if !strings.Contains(show, "prog/xdp") {
		t.Fatalf("child says %q but no program is attached:\n%s", line, show)
	}
	// ip netns exec runs the child as its own process (exec, no fork), so
	// the process killed is the one holding the link.
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The kernel releases the link when the last reference to its file
	// goes, which the exit of the process does; poll the interface for a
	// bounded time for the release to show.
	for end := time.Now().Add(10 * time.Second); ; {
		show = e.zns.MustRun("ip", "-d", "link", "show", "dev", e.zdev)
		if !strings.Contains(show, "prog/xdp") {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("program still attached 10 s after the child was killed:\n%s", show)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestVethPeerOffload: the kernel peer keeps its veth's checksum offload
// on, so its TCP and UDP checksums arrive partial; with PartialChecksums
// the link completes them and TCP and UDP work. Native mode: attaching it
// turns the peer's segmentation offload off (veth does), where in generic
// mode the peer's GSO super-frames would not fit a UMEM frame.
func TestVethPeerOffload(t *testing.T) {
	e := newVeth(t)
	e.kns.MustRun("ethtool", "-K", e.kdev, "tx", "on")
	e.open(t, Config{Attach: AttachNative, PartialChecksums: true})
	_, accepted := stackListenTCP(t, e.stack, stackAddr4+":5003")
	var kc net.Conn
	e.kernelDo(t, func() (err error) {
		kc, err = net.DialTimeout("tcp", stackAddr4+":5003", 10*time.Second)
		return err
	})
	defer kc.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("stack accept failed")
	}
	defer sc.Close()
	transfer(t, kc, sc, 2<<20, time.Now().Add(60*time.Second))
	udpEcho(t, e, 20)
	st := e.link.Stats()
	if st.RxCsumCompleted == 0 {
		t.Fatalf("no partial checksum completed: %+v", st)
	}
	t.Logf("completed %d partial checksums of %d frames", st.RxCsumCompleted, st.RxFrames)
}
