package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/iperf3"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

const perfHelp = `Usage: netstackd perf -s [flags] NETWORK
       netstackd perf -c HOST [flags] NETWORK
       netstackd perf -inproc [flags]

An iperf-like throughput test that speaks iperf3's protocol: a stock
"iperf3 -c" can test against "netstackd perf -s", and "netstackd perf -c"
against a stock "iperf3 -s" (TCP and UDP, both directions, parallel
streams). It prints a progress line each interval and a summary, or with
-json a report in iperf3's JSON layout.

NETWORK is where the sockets live: -kernel (the kernel's, to measure the
other side of a comparison), -tap NAME -addr PREFIX (a zcnet stack on a TAP
device; root), -ring PATH -addr PREFIX (a zcnet stack on the peer side of
the ring "netstackd serve -ring PATH" listens on; no root), or -inproc,
which runs a server and a client on two zcnet stacks in this process (no
root).

Examples:
  netstackd perf -inproc -t 3                      # TCP, client to server
  netstackd perf -inproc -u -b 100M -R -P 4        # UDP, 4 streams, server to client
  sudo netstackd perf -s -tap zc0 -addr 192.0.2.2/24       # then: iperf3 -c 192.0.2.2
  sudo netstackd perf -c 192.0.2.1 -tap zc0 -addr 192.0.2.2/24 -R   # against iperf3 -s
  netstackd perf -c 192.0.2.1 -kernel -json        # the same over kernel sockets
  netstackd serve -ring /tmp/zc.sock -addr 192.0.2.2/24 &   # no root: measure the ring
  netstackd perf -c 192.0.2.2 -ring /tmp/zc.sock -addr 192.0.2.1/24 -t 5
`

// perfFlags are perf's own flags.
type perfFlags struct {
	server, oneOff  bool
	host            string
	port            int
	udp, reverse    bool
	bidir           bool
	parallel        int
	duration        int
	length          byteSize
	bitrate         string
	bytes           byteSize
	interval        time.Duration
	json            bool
	counters64      bool
	getServerOutput bool
	timeout         time.Duration
	verbose         bool
}

func runPerf(args []string, stdout, stderr io.Writer) error {
	var f perfFlags
	net := newToolNet()
	fs := newFlagSet("perf", perfHelp, stdout, stderr)
	fs.BoolVar(&f.server, "s", false, "run a server")
	fs.BoolVar(&f.oneOff, "1", false, "server: exit after one test")
	fs.StringVar(&f.host, "c", "", "run a client against the server at this address")
	fs.IntVar(&f.port, "p", iperf3.Port, "server port")
	fs.BoolVar(&f.udp, "u", false, "UDP instead of TCP")
	fs.BoolVar(&f.reverse, "R", false, "reverse: the server sends, the client receives")
	fs.BoolVar(&f.bidir, "bidir", false, "both ways at once: -P streams each way (iperf3's --bidir)")
	fs.IntVar(&f.parallel, "P", 1, fmt.Sprintf("parallel streams (1 to %d)", iperf3.MaxStreams))
	fs.IntVar(&f.duration, "t", 10, fmt.Sprintf("seconds to run (1 to %d), unless -n", iperf3.MaxTime))
	fs.Var(&f.length, "l", "bytes per send: a TCP block (default 128K) or a UDP datagram (default 1460)")
	fs.StringVar(&f.bitrate, "b", "", "target bitrate per stream in bits/s, e.g. 100M (k, M, G are powers of 1000); UDP default 1M, TCP unlimited")
	fs.Var(&f.bytes, "n", "bytes to send instead of a duration, e.g. 1G")
	fs.DurationVar(&f.interval, "i", time.Second, "progress line interval (0: none)")
	fs.BoolVar(&f.json, "json", false, "print a JSON report (iperf3's layout) instead of text")
	fs.BoolVar(&f.counters64, "udp-counters-64bit", false, "64-bit sequence numbers in UDP datagrams")
	fs.BoolVar(&f.getServerOutput, "get-server-output", false, "include the server's own report (server_output_json with -json)")
	fs.DurationVar(&f.timeout, "timeout", iperf3.DefaultTimeout, "bound on connecting and on each control step")
	fs.BoolVar(&f.verbose, "v", false, "log the stack's and server's work to stderr")
	net.register(fs)
	var spec iperf3.Spec
	run, err := startTool("perf", fs, args, net, &f.host, &f.verbose, stderr, func(mode toolMode) (err error) {
		spec, err = f.spec(fs, mode)
		return err
	})
	if err != nil {
		return err
	}
	defer run.close()
	ctx, env, log, host := run.ctx, run.env, run.log, run.host
	port := uint16(f.port)
	if f.server {
		return perfServe(ctx, env.server, port, f, stdout, log)
	}
	if run.mode == modeInproc {
		host = env.serverAddr
		srv, err := iperf3.NewServer(env.server, iperf3.ServerConfig{Port: port, Log: log, OneOff: true, Timeout: f.timeout})
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		defer func() {
			srv.Close()
			<-done
		}()
	}
	return perfClient(ctx, env, netip.AddrPortFrom(host, port), spec, f, stdout)
}

// spec checks the client's flags against iperf3's limits.
func (f *perfFlags) spec(fs *flag.FlagSet, mode toolMode) (iperf3.Spec, error) {
	var s iperf3.Spec
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if err := checkRoles(f.server, f.host, mode); err != nil {
		return s, err
	}
	switch {
	case f.port < 1 || f.port > 65535:
		return s, fmt.Errorf("-p %d: want a port, 1 to 65535", f.port)
	case f.interval < 0 || (f.interval > 0 && f.interval < 100*time.Millisecond) || f.interval > 60*time.Second:
		return s, fmt.Errorf("-i %v: want 0 (no progress lines) or 100ms to 60s", f.interval)
	case f.timeout < time.Second || f.timeout > time.Hour:
		return s, fmt.Errorf("-timeout %v: want 1s to 1h", f.timeout)
	}
	if f.server {
		for _, name := range []string{"u", "R", "bidir", "P", "t", "l", "b", "n", "udp-counters-64bit", "get-server-output"} {
			if set[name] {
				return s, fmt.Errorf("-%s is a client flag; the client chooses the test (a server takes -p, -1, -json, -i)", name)
			}
		}
		return s, nil
	}
	if set["1"] {
		return s, errors.New("-1 is a server flag")
	}
	if f.parallel < 1 || f.parallel > iperf3.MaxStreams {
		return s, fmt.Errorf("-P %d: want 1 to %d streams", f.parallel, iperf3.MaxStreams)
	}
	if f.bidir && f.reverse {
		return s, errors.New("-R and -bidir exclude each other: -bidir already has the server send")
	}
	if set["n"] && set["t"] {
		return s, errors.New("-t and -n exclude each other: run for a duration or for a number of bytes")
	}
	if f.duration < 1 || f.duration > iperf3.MaxTime {
		return s, fmt.Errorf("-t %d: want 1 to %d seconds", f.duration, iperf3.MaxTime)
	}
	if set["n"] && f.bytes < 1 {
		return s, fmt.Errorf("-n %v: want at least one byte", &f.bytes)
	}
	s = iperf3.Spec{UDP: f.udp, Reverse: f.reverse, Bidir: f.bidir, Streams: f.parallel, Duration: f.duration, Counters64: f.counters64, ServerOutput: f.getServerOutput}
	if set["n"] {
		s.Duration, s.Bytes = 0, uint64(f.bytes)
	}
	s.BlockSize = int(f.length)
	switch {
	case !set["l"] && f.udp:
		s.BlockSize = iperf3.DefaultUDPBlock
	case !set["l"]:
		s.BlockSize = iperf3.DefaultTCPBlock
	case f.udp && (s.BlockSize < iperf3.UDPHeader64 || s.BlockSize > iperf3.MaxUDPBlock):
		return s, fmt.Errorf("-l %v: want %d to %d bytes for a UDP datagram", &f.length, iperf3.UDPHeader64, iperf3.MaxUDPBlock)
	case !f.udp && (s.BlockSize < 1 || s.BlockSize > iperf3.MaxTCPBlock):
		return s, fmt.Errorf("-l %v: want 1 to %d bytes (1M) for a TCP block", &f.length, iperf3.MaxTCPBlock)
	}
	if f.bitrate != "" {
		r, err := parseSize(f.bitrate, 1000)
		if err != nil || r < 1 {
			return s, fmt.Errorf("-b %q: want a bitrate in bits/s such as 100M or 2.5G (k, M, G are powers of 1000)", f.bitrate)
		}
		s.Rate = uint64(r)
	} else if f.udp {
		s.Rate = iperf3.DefaultUDPRate
	}
	return s, nil
}

// perfServe runs a standalone server until ctx ends (or after one test,
// with -1).
func perfServe(ctx context.Context, tr transport.Transport, port uint16, f perfFlags, stdout io.Writer, log *slog.Logger) error {
	srv, err := iperf3.NewServer(tr, iperf3.ServerConfig{Port: port, Log: log, Out: stdout, JSON: f.json,
		Interval: f.interval, OneOff: f.oneOff, Timeout: f.timeout})
	if err != nil {
		return err
	}
	defer srv.Close()
	if !f.json {
		fmt.Fprintf(stdout, "Server listening on %s over %s sockets\n", transport.AddrString(srv.Addr()), tr.Name())
	}
	return srv.Serve(ctx)
}

// perfClient runs the client and prints its report.
func perfClient(ctx context.Context, env *toolEnv, server netip.AddrPort, spec iperf3.Spec, f perfFlags, stdout io.Writer) error {
	cfg := iperf3.ClientConfig{Server: server, Spec: spec, Interval: f.interval, Timeout: f.timeout}
	if !f.json {
		cfg.Out = stdout
	}
	o, err := iperf3.RunClient(ctx, env.client, cfg)
	iperf3.WriteClientReport(stdout, o, err, f.json, f.getServerOutput)
	if o != nil && !f.json && err == nil {
		fmt.Fprintln(stdout, "\nperf done.")
	}
	return err
}
