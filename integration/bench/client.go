//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/zcnet/zcnet/integration/contenders"
)

// The client subcommand: a load generator in a process of its own, on
// kernel sockets, started by the bench in the client namespace:
//
//	bench client udp -to ADDR:PORT -d DUR     64-byte datagrams, as fast as one socket sends
//	bench client rr  -to ADDR:PORT -d DUR [-cpu N]   1-byte TCP round trips
//
// Each connects, prints {"ready":true}, waits for a line on stdin (so that
// several start together), runs for -d and prints its result as a JSON
// line: {"sent":…,"errors":…,"seconds":…} or {"n":…,"seconds":…}. With
// -cpu the process first pins every thread to that CPU and sets
// GOMAXPROCS to -procs (1: what `taskset -c N` at start gives a Go
// program).

// clientResult is a client's JSON result line.
type clientResult struct {
	Sent    int64   `json:"sent,omitempty"`   // udp: datagrams sent
	Errors  int64   `json:"errors,omitempty"` // udp: sends refused (ENOBUFS…)
	N       int64   `json:"n,omitempty"`      // rr: round trips
	Seconds float64 `json:"seconds"`
}

// udpPayload is the UDP figure's datagram payload size.
const udpPayload = 64

// maxOps bounds the iterations of every load loop, on top of its time
// bound: no loop here turns faster than 10 ns an iteration, so the count
// never ends a loop before its time does.
func maxOps(d time.Duration) int64 { return int64(d/(10*time.Nanosecond)) + 1 }

func runClient(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "bench client: udp or rr")
		return exitUsage
	}
	kind := args[0]
	fs := flag.NewFlagSet("bench client "+kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "server ADDR:PORT")
	d := fs.Duration("d", time.Second, "how long to run")
	cpu := fs.Int("cpu", -1, "pin the process to this CPU (rr)")
	procs := fs.Int("procs", 1, "GOMAXPROCS with -cpu; 0 leaves it")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	out := json.NewEncoder(stdout)
	fail := func(err error) int {
		out.Encode(map[string]string{"error": err.Error()})
		return exitFailed
	}
	if *d <= 0 || *d > 10*time.Minute {
		return fail(fmt.Errorf("-d %v: want up to 10m", *d))
	}
	if *cpu >= 0 {
		if _, err := pinProcess(*cpu, *procs); err != nil {
			return fail(err)
		}
	}
	waitGo := func() error {
		out.Encode(map[string]bool{"ready": true})
		_, err := bufio.NewReader(stdin).ReadString('\n')
		return err
	}
	switch kind {
	case "udp":
		conn, err := net.Dial("udp", *to)
		if err != nil {
			return fail(err)
		}
		defer conn.Close()
		if err := waitGo(); err != nil {
			return fail(err)
		}
		r := udpSend(conn, *d)
		out.Encode(r)
	case "rr":
		conn, err := net.DialTimeout("tcp", *to, 10*time.Second)
		if err != nil {
			return fail(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(*d + time.Minute))
		buf := []byte{'x'}
		if err := contenders.RoundTrip(conn, buf); err != nil { // warm up: accepted, paths hot
			return fail(err)
		}
		if err := waitGo(); err != nil {
			return fail(err)
		}
		start := time.Now()
		until := start.Add(*d)
		var n int64
		for ; n < maxOps(*d) && time.Now().Before(until); n++ {
			if err := contenders.RoundTrip(conn, buf); err != nil {
				return fail(err)
			}
		}
		out.Encode(clientResult{N: n, Seconds: time.Since(start).Seconds()})
	default:
		return fail(fmt.Errorf("unknown client %q: want udp or rr", kind))
	}
	return exitOK
}

// udpSend sends udpPayload-byte datagrams on conn as fast as it can for d.
// Refused sends (ENOBUFS and the like: the sender outran a queue) are
// counted, not fatal.
func udpSend(conn net.Conn, d time.Duration) clientResult {
	payload := make([]byte, udpPayload)
	var r clientResult
	start := time.Now()
	until := start.Add(d)
	for i := int64(0); i < maxOps(d); i++ {
		if i%64 == 0 && !time.Now().Before(until) {
			break
		}
		if _, err := conn.Write(payload); err != nil {
			r.Errors++
			continue
		}
		r.Sent++
	}
	r.Seconds = time.Since(start).Seconds()
	return r
}
