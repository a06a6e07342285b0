//go:build linux

package tap

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/zcnet/zcnet/integration/nstest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// BenchmarkTAP measures single-stream TCP throughput between the kernel
// (a socket in the namespace) and a gonet socket on the stack over a TAP at
// MTU 1500, in both directions, for this link with and without offloads and,
// as the baseline beside it, gVisor's stock fdbased endpoint on a plain TAP.
// Each op moves 1 MiB; the reported MB/s and Gbit/s are of TCP payload.
// Needs root (skips otherwise):
//
//	go test -run '^$' -bench BenchmarkTAP -benchtime 5s ./tap/
func BenchmarkTAP(b *testing.B) {
	for _, impl := range []string{"zcnet-offload", "zcnet-nooffload", "fdbased"} {
		for _, dir := range []string{"kernel-to-stack", "stack-to-kernel"} {
			b.Run(impl+"/"+dir, func(b *testing.B) { benchTAP(b, impl, dir == "kernel-to-stack") })
		}
	}
}

func benchTAP(b *testing.B, impl string, toStack bool) {
	ns := nstest.New(b)
	name := nstest.UniqueName(b, "zb")
	var ep stack.LinkEndpoint
	var link *Link
	if err := ns.Do(func() error {
		switch impl {
		case "zcnet-offload", "zcnet-nooffload":
			mode := OffloadOn
			if impl == "zcnet-nooffload" {
				mode = OffloadOff
			}
			l, err := Open(Config{Name: name, Queues: 1, Offload: mode})
			link, ep = l, l
			return err
		default:
			r, err := (&Config{Name: name, Queues: 1, Offload: OffloadOff}).resolve(0)
			if err != nil {
				return err
			}
			dev, err := openDevice(r)
			if err != nil {
				return err
			}
			b.Cleanup(func() { unix.Close(dev.fds[0]) })
			e, err := fdbased.New(&fdbased.Options{FDs: dev.fds, MTU: 1500, EthernetHeader: true, Address: tcpip.LinkAddress(r.mac)})
			ep = e
			return err
		}
	}); err != nil {
		b.Fatal(err)
	}
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", name)
	ns.MustRun("ip", "link", "set", name, "up")
	s := newStack(b, ep, "192.0.2.2/24")

	var kc, sc net.Conn
	if toStack {
		conns, errs := stackListen(b, s, "192.0.2.2:5001")
		if err := ns.Do(func() (err error) {
			kc, err = net.DialTimeout("tcp", "192.0.2.2:5001", 10*time.Second)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		select {
		case sc = <-conns:
		case err := <-errs:
			b.Fatal(err)
		}
	} else {
		var l net.Listener
		if err := ns.Do(func() (err error) {
			l, err = net.Listen("tcp", "192.0.2.1:5001")
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		acc := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			acc <- c
		}()
		var err error
		sc, err = stackDial(s, "192.0.2.1:5001", 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		kc = <-acc
		if kc == nil {
			b.Fatal("accept failed")
		}
	}
	defer kc.Close()
	defer sc.Close()
	w, r := kc, sc
	if !toStack {
		w, r = sc, kc
	}
	const chunk = 1 << 20
	total := int64(b.N) * chunk
	_ = w.SetDeadline(time.Now().Add(5 * time.Minute))
	_ = r.SetDeadline(time.Now().Add(5 * time.Minute))
	var before Stats
	if link != nil {
		before = link.Stats()
	}
	b.SetBytes(chunk)
	b.ResetTimer()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		for i := 0; i < b.N; i++ {
			if _, err := w.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	n, err := io.CopyBuffer(io.Discard, io.LimitReader(r, total), make([]byte, 256<<10))
	elapsed := time.Since(start)
	b.StopTimer()
	if werr := <-errc; werr != nil {
		b.Fatalf("write: %v", werr)
	}
	if err != nil || n != total {
		b.Fatalf("read %d of %d: %v", n, total, err)
	}
	b.ReportMetric(float64(total)*8/elapsed.Seconds()/1e9, "Gbit/s")
	if link != nil {
		st := link.Stats()
		rx := st.RxFrames - before.RxFrames
		if wk := st.RxWakeups - before.RxWakeups; wk > 0 {
			b.ReportMetric(float64(rx)/float64(wk), "frames/wakeup")
		}
		if toStack && rx > 0 {
			b.ReportMetric(float64(st.RxBytes-before.RxBytes)/float64(rx), "B/rxframe")
		}
		if tx := st.TxFrames - before.TxFrames; !toStack && tx > 0 {
			b.ReportMetric(float64(st.TxBytes-before.TxBytes)/float64(tx), "B/txframe")
		}
	}
}
