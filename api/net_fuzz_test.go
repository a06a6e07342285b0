package api

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/stack/link/pair"
)

// Fuzz targets for the address strings the net-shaped adapters take from
// their callers (and, through configuration and command lines, from
// outside): parseNetwork and parseAddr directly, then Net.DialContext,
// Listen and ListenPacket end to end on a stack.

func addAddrSeeds(f *testing.F) {
	for _, s := range [][2]string{
		{"tcp", "192.0.2.2:80"}, {"tcp4", "192.0.2.2:80"}, {"tcp6", "[2001:db8::2]:443"},
		{"udp", "[2001:db8::2%eth0]:53"}, {"udp4", "[::ffff:192.0.2.2]:53"}, {"udp6", "192.0.2.2:53"},
		{"tcp", ":0"}, {"tcp", ":http"}, {"tcp", "zcnet.invalid:80"}, {"tcp", "192.0.2.2:65536"},
		{"tcp", "192.0.2.2"}, {"tcp", "[2001:db8::2"}, {"ip", "192.0.2.2:1"}, {"", ""},
		{"udp", "0.0.0.0:9"}, {"tcp", "[::]:9"}, {"tcp", "192.0.2.2:+80"}, {"tcp", "192.0.2.2:0x50"},
	} {
		f.Add(s[0], s[1])
	}
}

// FuzzParseAddr checks the address parser against package net and netip:
// it never panics; an error wraps ErrNetwork or ErrAddress; an accepted
// address is exactly what net.SplitHostPort, a decimal port and
// netip.ParseAddr (unmapped, without a zone) make of the string, of the
// family the network names; and it parses back from its own String.
func FuzzParseAddr(f *testing.F) {
	addAddrSeeds(f)
	f.Fuzz(func(t *testing.T, network, address string) {
		proto, fam, err := parseNetwork(network)
		if err != nil {
			if !errors.Is(err, ErrNetwork) {
				t.Fatalf("parseNetwork(%q): %v does not wrap ErrNetwork", network, err)
			}
			return
		}
		if proto != "tcp" && proto != "udp" {
			t.Fatalf("parseNetwork(%q) = %q", network, proto)
		}
		ap, err := parseAddr(fam, address)
		host, port, splitErr := net.SplitHostPort(address)
		if err != nil {
			if !errors.Is(err, ErrAddress) {
				t.Fatalf("parseAddr(%q): %v does not wrap ErrAddress", address, err)
			}
			if splitErr == nil {
				p, perr := strconv.ParseUint(port, 10, 16)
				a, aerr := netip.ParseAddr(host)
				famOK := !a.IsValid() || (fam != fam4 || a.Unmap().Is4()) && (fam != fam6 || !a.Unmap().Is4())
				if perr == nil && (host == "" || aerr == nil && a.Zone() == "" && famOK) {
					t.Fatalf("parseAddr(%v, %q) refused host %q port %d: %v", fam, address, host, p, err)
				}
			}
			return
		}
		if splitErr != nil {
			t.Fatalf("parseAddr(%q) = %v, but SplitHostPort fails: %v", address, ap, splitErr)
		}
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || uint16(p) != ap.Port() {
			t.Fatalf("parseAddr(%q) port %d, string says %q", address, ap.Port(), port)
		}
		if host == "" {
			if ap.Addr().IsValid() {
				t.Fatalf("parseAddr(%q): empty host gave %v", address, ap.Addr())
			}
			return
		}
		want, err := netip.ParseAddr(host)
		if err != nil || want.Zone() != "" || want.Unmap() != ap.Addr() {
			t.Fatalf("parseAddr(%q) = %v, netip says %v, %v", address, ap, want, err)
		}
		if fam == fam4 && !ap.Addr().Is4() || fam == fam6 && ap.Addr().Is4() {
			t.Fatalf("parseAddr(%v, %q) = %v: wrong family", fam, address, ap)
		}
		if again, err := parseAddr(fam, ap.String()); err != nil || again != ap {
			t.Fatalf("parseAddr(%q) = %v, but its String parses to %v, %v", address, ap, again, err)
		}
	})
}

// FuzzNetDial feeds any network and address to DialContext, Listen and
// ListenPacket on a stack with one NIC (192.0.2.2/24, 2001:db8::2/64) and
// no peer: each must return promptly, never panic, return a *net.OpError
// on failure (wrapping ErrNetwork or ErrAddress when the strings are at
// fault), and whatever it opens must close cleanly.
func FuzzNetDial(f *testing.F) {
	addAddrSeeds(f)
	st, err := stack.New(stack.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	// The other end of the pair is never attached: what the stack sends
	// waits in its bounded queue, and nothing ever answers.
	link, _, err := pair.New(pair.Config{QueueLen: 64})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.AddNIC(link, stack.NICConfig{Addrs: []netip.Prefix{
		netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64"),
	}}); err != nil {
		f.Fatal(err)
	}
	pool, err := dmapool.New(dmapool.Config{Size: 4 << 20, Pin: dmapool.PinOff})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(st, Options{Pool: pool})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		s.Close()
		if err := pool.Close(); err != nil {
			f.Errorf("pool not empty at the end: %v", err)
		}
	})
	n := s.Net()
	f.Fuzz(func(t *testing.T, network, address string) {
		check := func(op string, err error) {
			t.Helper()
			if err == nil {
				return
			}
			var oe *net.OpError
			if !errors.As(err, &oe) {
				t.Fatalf("%s(%q, %q): %T %v, want a *net.OpError", op, network, address, err, err)
			}
			_, _, nerr := parseNetwork(network)
			if nerr != nil && !errors.Is(err, ErrNetwork) {
				t.Fatalf("%s(%q, %q): %v does not wrap ErrNetwork", op, network, address, err)
			}
		}
		// No peer answers: a dial to an on-link address waits for
		// neighbour resolution, so bound it.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		// A failed call must return a nil interface, as package net does:
		// a non-nil interface holding a nil pointer passes `conn != nil`
		// checks and panics on first use.
		typedNil := func(op string, v any, err error) bool {
			t.Helper()
			if err != nil && v != nil {
				t.Errorf("%s(%q, %q) failed (%v) but returned a non-nil %T", op, network, address, err, v)
				return true
			}
			return false
		}
		start := time.Now()
		c, err := n.DialContext(ctx, network, address)
		check("DialContext", err)
		if !typedNil("DialContext", c, err) && c != nil {
			if err := c.Close(); err != nil {
				t.Fatalf("closing a dialled conn: %v", err)
			}
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("DialContext(%q, %q) took %v with a 20 ms context", network, address, el)
		}
		ln, err := n.Listen(network, address)
		check("Listen", err)
		if !typedNil("Listen", ln, err) && ln != nil {
			if err := ln.Close(); err != nil {
				t.Fatalf("closing a listener: %v", err)
			}
		}
		pc, err := n.ListenPacket(network, address)
		check("ListenPacket", err)
		if !typedNil("ListenPacket", pc, err) && pc != nil {
			if err := pc.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				t.Fatalf("closing a packet conn: %v", err)
			}
		}
	})
}
