package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/echo"
)

const echoHelp = `Usage: netstackd echo -s [flags] NETWORK
       netstackd echo -c HOST [flags] NETWORK
       netstackd echo -inproc [flags]

An echo (RFC 862) client and server, TCP or UDP. The client sends -n
messages of -size bytes one at a time, checks that every byte comes back
unchanged, and prints the round trips' latency (min, p50, p90, p99, max and
a histogram) and the round trips per second. The server answers TCP and
UDP on the port, on zero-copy sockets when it runs on zcnet.

NETWORK is where the sockets live: -kernel, -tap NAME -addr PREFIX (a zcnet
stack on a TAP device; root), -ring PATH -addr PREFIX (a zcnet stack on the
peer side of the ring "netstackd serve -ring PATH" listens on; no root), or
-inproc, which runs the server and the client on two zcnet stacks in this
process (no root).

Examples:
  netstackd echo -inproc -n 10000 -size 100
  netstackd echo -inproc -u -n 1000
  sudo netstackd echo -s -tap zc0 -addr 192.0.2.2/24          # then: socat - TCP:192.0.2.2:7
  sudo netstackd echo -c 192.0.2.1 -tap zc0 -addr 192.0.2.2/24   # against socat ... PIPE
  netstackd echo -c 192.0.2.2 -kernel -json
  netstackd serve -ring /tmp/zc.sock -addr 192.0.2.2/24 &   # no root: echo over the ring
  netstackd echo -c 192.0.2.2 -ring /tmp/zc.sock -addr 192.0.2.1/24 -n 10000
`

type echoFlags struct {
	server   bool
	host     string
	port     int
	udp      bool
	count    int
	size     int
	duration time.Duration
	timeout  time.Duration
	json     bool
	verbose  bool
}

func runEcho(args []string, stdout, stderr io.Writer) error {
	var f echoFlags
	net := newToolNet()
	fs := newFlagSet("echo", echoHelp, stdout, stderr)
	fs.BoolVar(&f.server, "s", false, "run a server (TCP and UDP)")
	fs.StringVar(&f.host, "c", "", "run a client against the server at this address")
	fs.IntVar(&f.port, "p", 7, "port")
	fs.BoolVar(&f.udp, "u", false, "client: UDP instead of TCP")
	fs.IntVar(&f.count, "n", 1000, "client: round trips (1 to 100000000)")
	fs.IntVar(&f.size, "size", 64, "client: bytes per message (TCP: 1 to 1048576; UDP: 8 to 65507)")
	fs.DurationVar(&f.duration, "t", 0, "client: stop after this long even if -n round trips are not done (0: no limit)")
	fs.DurationVar(&f.timeout, "timeout", time.Second, "client: how long to wait for each reply before a UDP datagram counts as lost (TCP: 10 times this)")
	fs.BoolVar(&f.json, "json", false, "client: print a JSON summary")
	fs.BoolVar(&f.verbose, "v", false, "log the stack's and server's work to stderr")
	net.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usage := func(err error) error {
		fmt.Fprintf(stderr, "netstackd echo: %v\nRun 'netstackd echo -help' for usage.\n", err)
		return errUsage
	}
	mode, setup, err := net.resolve()
	if err != nil {
		return usage(err)
	}
	if err := f.check(fs, mode); err != nil {
		return usage(err)
	}
	var host netip.Addr
	if f.host != "" {
		if host, err = parseHost("c", f.host); err != nil {
			return usage(err)
		}
	}
	log := toolLogger(f.verbose, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := openToolEnv(mode, setup, net.ring, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Close(); err != nil {
			log.Error("teardown", "err", err)
		}
	}()
	port := uint16(f.port)
	if f.server || mode == modeInproc {
		srv, err := echo.StartServer(ctx, env.server, port, log)
		if err != nil {
			return err
		}
		defer srv.Close()
		if f.server {
			fmt.Fprintf(stdout, "echo server listening on TCP and UDP port %d over %s sockets\n", port, env.server.Name())
			<-ctx.Done()
			return nil
		}
		host = env.serverAddr
	}
	res, err := echo.Run(ctx, env.client, netip.AddrPortFrom(host, port), f.config())
	if res != nil {
		if f.json {
			res.WriteJSON(stdout, err)
		} else {
			res.Print(stdout)
		}
	}
	return err
}

func (f *echoFlags) check(fs interface{ Visit(func(*flag.Flag)) }, mode toolMode) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case f.server && f.host != "":
		return errors.New("-s and -c exclude each other: a server (-s) or a client (-c HOST)")
	case mode == modeInproc && (f.server || f.host != ""):
		return errors.New("-inproc runs both the server and the client; leave out -s and -c")
	case mode != modeInproc && !f.server && f.host == "":
		return errors.New("run a server (-s) or a client (-c HOST)")
	case f.port < 1 || f.port > 65535:
		return fmt.Errorf("-p %d: want a port, 1 to 65535", f.port)
	}
	if f.server {
		for _, name := range []string{"u", "n", "size", "t", "timeout", "json"} {
			if set[name] {
				return fmt.Errorf("-%s is a client flag (a server takes -p and answers TCP and UDP)", name)
			}
		}
		return nil
	}
	switch {
	case f.count < 1 || f.count > 100_000_000:
		return fmt.Errorf("-n %d: want 1 to 100000000 round trips", f.count)
	case f.udp && (f.size < echo.HeaderLen || f.size > iperf3.MaxUDPBlock):
		return fmt.Errorf("-size %d: want %d to %d bytes for a UDP message", f.size, echo.HeaderLen, iperf3.MaxUDPBlock)
	case !f.udp && (f.size < 1 || f.size > 1<<20):
		return fmt.Errorf("-size %d: want 1 to 1048576 bytes", f.size)
	case f.duration < 0 || f.duration > 24*time.Hour:
		return fmt.Errorf("-t %v: want 0 (no limit) to 24h", f.duration)
	case f.timeout < time.Millisecond || f.timeout > time.Minute:
		return fmt.Errorf("-timeout %v: want 1ms to 1m", f.timeout)
	}
	return nil
}

// config is the client's part of the flags.
func (f *echoFlags) config() echo.Config {
	return echo.Config{UDP: f.udp, Count: f.count, Size: f.size, Duration: f.duration, Timeout: f.timeout}
}
