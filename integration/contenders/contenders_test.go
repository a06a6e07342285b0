//go:build linux

package contenders

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/zcnet/zcnet/integration/nstest"
)

// TestStockEcho builds the stock contender on a TAP device in a namespace,
// serves the echo on it, and drives it from the kernel side with EchoOnce
// (TCP), RoundTrip and a UDP datagram; the stack's counters move.
func TestStockEcho(t *testing.T) {
	ns := nstest.New(t)
	dev := nstest.UniqueName(t, "zst")
	stackAddr := netip.MustParsePrefix("192.0.2.2/24")
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = OpenPlainTAP(dev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ns.MustRun("ip", "addr", "add", "192.0.2.1/24", "dev", dev)
	ns.MustRun("ip", "link", "set", dev, "up")
	st, err := NewStock(fd, stackAddr, 1500, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ap := netip.AddrPortFrom(stackAddr.Addr(), 7)
	ln, err := st.ListenTCP(ap)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := st.ListenUDP(ap)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go EchoTCP(ln)
	go EchoUDP(pc)

	data := bytes.Repeat([]byte("zcnet"), 100000) // more than a socket buffer
	if err := ns.Do(func() error {
		if err := EchoOnce(ap.String(), data, 20*time.Second); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", ap.String(), 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := []byte{'x'}
		for i := 0; i < 10; i++ {
			if err := RoundTrip(c, buf); err != nil {
				return err
			}
		}
		u, err := net.DialTimeout("udp", ap.String(), 10*time.Second)
		if err != nil {
			return err
		}
		defer u.Close()
		u.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := u.Write([]byte("ping")); err != nil {
			return err
		}
		got := make([]byte, 16)
		n, err := u.Read(got)
		if err != nil || string(got[:n]) != "ping" {
			t.Errorf("udp echo %q, %v", got[:n], err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if c := st.Counters(); c["link_rx_frames"] == 0 || c["link_tx_bytes"] < uint64(len(data)) || c["udp_received"] != 1 {
		t.Errorf("counters %v", c)
	}
}
