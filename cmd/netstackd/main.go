// Command netstackd runs zcnet: gVisor's network stack in-process, attached
// to a TAP device or a shared-memory ring (serve) or, with no arguments, a
// self-contained demo of two stacks in two processes joined by a ring that
// needs no privileges. Its tools measure it:
// perf, an iperf-like test that speaks iperf3's protocol (so stock iperf3 is
// either end), and echo, a verifying echo client and server with a latency
// histogram; both run over zcnet or kernel sockets.
//
// It owns the daemon's configuration (flags and a TOML file), its services,
// observability (Prometheus metrics, pprof, status page, pcap) and the
// tools; it holds no logic a library user would need: the stack, the links
// and the sockets are packages stack, tap and api.
//
// Files, in the order a reader meets them: main.go (dispatch), serve.go and
// config.go (the daemon and its settings), netflags.go (the link and stack
// flags serve and the tools share), zcstack.go (building a stack), services.go,
// metrics.go (observability), transport.go (the socket interfaces the
// tools run over), iperf3.go, perf_run.go, perf_server.go, perf_client.go,
// perf_report.go, perf_cmd.go (perf), echo.go and hist.go (echo), demo.go.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `netstackd runs zcnet, an asynchronous zero-copy network stack built on
gVisor's netstack, in this process.

Usage:
  netstackd                  run the demo (same as "netstackd demo")
  netstackd demo [flags]     two stacks in two processes joined by a
                             shared-memory ring: echo and throughput
  netstackd serve [flags]    attach a stack to a TAP device (or, -ring, to a
                             shared-memory ring) and serve echo, discard, an
                             iperf3 server and an HTTP status page, with
                             Prometheus metrics and pcap capture
  netstackd perf [flags]     iperf-like throughput test that speaks iperf3
  netstackd echo [flags]     echo client and server with a latency histogram
  netstackd help [command]   show help for a command

Examples:
  go run ./cmd/netstackd
  netstackd demo -duration 5s -mtu 9000
  sudo ip tuntap add dev zc0 mode tap && sudo ip addr add 192.0.2.1/24 dev zc0 && sudo ip link set zc0 up
  sudo netstackd serve -tap zc0 -addr 192.0.2.2/24
  iperf3 -c 192.0.2.2          # from the kernel side, against serve's perf service
  netstackd serve -ring /tmp/zc.sock -addr 192.0.2.2/24   # no root: a stack on a ring
  netstackd perf -inproc -t 3  # no root: client and server on two in-process stacks
  netstackd echo -inproc -n 10000
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status: 0 success, 1
// failure at run time, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "demo"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "demo":
		err = runDemo(args, stdout, stderr)
	case "serve":
		err = runServe(args, stdout, stderr)
	case "ring-peer": // hidden: the demo's child, or a second stack on a ring
		err = runRingPeer(args, stdout, stderr)
	case "perf":
		err = runPerf(args, stdout, stderr)
	case "echo":
		err = runEcho(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			return run([]string{args[0], "-help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "netstackd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "netstackd %s: %v\n", cmd, err)
		return 1
	}
}

// errUsage marks an error already reported with the command's usage.
var errUsage = errors.New("usage error")

// newFlagSet returns a flag set for a subcommand whose -help prints help,
// a description and examples to stdout, and whose errors go to stderr.
func newFlagSet(name, help string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("netstackd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, help)
		fmt.Fprintln(stdout, "\nFlags:")
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	return fs
}

// parseFlags parses args and turns flag errors into errUsage. The flag
// package prints a bad flag's error; below it goes one line that says
// where the help is, not the help itself, which would bury the error under
// every flag's description (-help prints that, to stdout).
func parseFlags(fs *flag.FlagSet, args []string) error {
	full := fs.Usage
	fs.Usage = func() {} // the flag package calls it on -help and on every error
	err := fs.Parse(args)
	fs.Usage = full
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			full()
			return err
		}
		fmt.Fprintf(fs.Output(), "Run '%s -help' for usage.\n", fs.Name())
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
