//go:build linux

package ring

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/integration/nstest"
	"github.com/zcnet/zcnet/tap"
)

// The baseline the issue asks for: two stacks on two TAP devices joined
// through the kernel, beside the ring in the same benchmark run. Both TAPs
// sit in one private network namespace, enslaved to a bridge there, so a
// frame crosses write(2) on one TAP, the kernel's bridge and read(2) on the
// other. As with the ring, the peer stack runs in a second process (this
// test binary, re-executed inside the namespace by ip netns exec). Needs
// root; without it these sub-benchmarks skip and say why:
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./stack/link/ring/

// tapModes maps the benchmark kinds to the TAP link's offload mode: "tap"
// is the link as the ring compares to it, frame for frame (MTU 1500, no
// GSO); "tap-offload" is its default, where TCP crosses the kernel in
// 64 KiB super-frames.
var tapModes = map[string]tap.OffloadMode{"tap": tap.OffloadOff, "tap-offload": tap.OffloadOn}

// tapStacks builds the TAP pair and returns the stack on this side; the
// peer process serves serveEcho's services at peerAddr.
func tapStacks(b *testing.B, kind string) *stack.Stack {
	ns := nstest.New(b) // skips without root
	br, ta, tb := nstest.UniqueName(b, "zrb"), nstest.UniqueName(b, "zra"), nstest.UniqueName(b, "zrp")
	ns.MustRun("ip", "link", "add", br, "type", "bridge")
	ns.MustRun("ip", "link", "set", br, "up")
	var link *tap.Link
	if err := ns.Do(func() (err error) {
		link, err = tap.Open(tap.Config{Name: ta, Queues: 1, Offload: tapModes[kind]})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	ns.MustRun("ip", "link", "set", ta, "master", br, "up")
	cmd := startHelperCmd(b, exec.Command("ip", "netns", "exec", ns.Name(), os.Args[0], "-test.run=^$"), kind, tb)
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ns.MustRun("ip", "link", "set", tb, "master", br, "up")
	s, err := newTestStack(b, link, stackAddr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.Close()
		link.Close()
		link.Wait() // before s.Wait: see newStackSide
		s.Wait()
	})
	return s
}

// runTAPHelper is the peer process of tapStacks, already in the namespace:
// it opens the TAP device name, serves on it until killed.
func runTAPHelper(mode, name string) int {
	off, ok := tapModes[mode]
	if !ok {
		fmt.Fprintf(os.Stderr, "helper: unknown mode %q\n", mode)
		return 2
	}
	link, err := tap.Open(tap.Config{Name: name, Queues: 1, Offload: off})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	s, err := newTestStack(nil, link, peerAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	if _, err := serveEcho(s, peerAddr); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("ready")
	<-sig
	return 0
}
