//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// The measurements, run by the bench process against a contender's
// server process; every load comes from other processes in the client
// namespace: the bench's own client subcommand (UDP senders, the
// round-trip client), wrk and stock iperf3.

// measure runs figure f once on contender c.
func measure(ctx context.Context, e *env, c *contender, f figure) Run {
	before, err := c.stats()
	if err != nil {
		return Run{Err: err.Error()}
	}
	var run Run
	switch f.kind {
	case kindUDP:
		run, err = measureUDP(ctx, e, c)
	case kindRR:
		run, err = measureRR(ctx, e, c, f.pinned)
	case kindHTTP:
		run, err = measureHTTP(ctx, e, c)
	default:
		run, err = measureTCP(ctx, e, c, f)
	}
	if err != nil {
		return Run{Err: err.Error()}
	}
	after, err := c.stats()
	if err != nil {
		return Run{Err: err.Error()}
	}
	addCounterExtras(&run, f, before.Counters, after.Counters)
	if f.kind == kindTCP {
		addRetransShare(&run)
	}
	return run
}

// startClients starts n client subcommands in the client namespace and
// waits until each is ready; stop ends them all.
func startClients(e *env, n int, args ...string) (ps []*proc, stop func(), err error) {
	stop = func() {
		for _, p := range ps {
			p.stop(5 * time.Second)
		}
	}
	for i := range n {
		p, err := startProc(e.cli, fmt.Sprintf("client %s #%d", args[0], i+1), append([]string{e.exe, "client"}, args...)...)
		if err != nil {
			stop()
			return nil, nil, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		var ready struct {
			Ready bool `json:"ready"`
		}
		if err := p.readJSON(30*time.Second, &ready); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return ps, stop, nil
}

// clientWindow starts n client processes with args, reads c's counters,
// lets the clients run for d, and reads the counters again: the server's
// work over the clients' window, and what each client reports.
func clientWindow(e *env, c *contender, n int, d time.Duration, args ...string) (s0, s1 serverStats, res []clientResult, err error) {
	ps, stop, err := startClients(e, n, args...)
	if err != nil {
		return s0, s1, nil, err
	}
	defer stop()
	if s0, err = c.stats(); err != nil {
		return s0, s1, nil, err
	}
	if res, err = goClients(ps, d); err != nil {
		return s0, s1, nil, err
	}
	s1, err = c.stats()
	return s0, s1, res, err
}

// goClients lets ready clients go and collects their results.
func goClients(ps []*proc, d time.Duration) ([]clientResult, error) {
	for _, p := range ps {
		if _, err := p.stdin.Write([]byte("go\n")); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errMeasure, p.name, err)
		}
	}
	var out []clientResult
	for _, p := range ps {
		var r clientResult
		if err := p.readJSON(d+time.Minute, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// measureUDP floods the server's UDP sink with 64-byte datagrams from
// cfg.udpSenders sender processes at once, each as fast as its socket
// sends, and counts what the server received while they sent. Datagrams
// still queued when the senders stop are let through before the next
// measurement (the queue drains), but not counted.
func measureUDP(ctx context.Context, e *env, c *contender) (Run, error) {
	d := time.Duration(e.cfg.seconds()) * time.Second
	to := fmt.Sprintf("%s:%d", c.addr, portUDP)
	s0, s1, res, err := clientWindow(e, c, e.cfg.udpSenders, d, "udp", "-to", to, "-d", d.String())
	if err != nil {
		return Run{}, err
	}
	var sent, sendErrs int64
	var secs float64
	for _, r := range res {
		sent += r.Sent
		sendErrs += r.Errors
		secs = max(secs, r.Seconds)
	}
	recv := s1.UDPReceived - s0.UDPReceived
	if err := settleUDP(ctx, c); err != nil {
		return Run{}, err
	}
	if recv == 0 || secs <= 0 {
		return Run{}, fmt.Errorf("%w: udp: none of %d datagrams received", errMeasure, sent)
	}
	return Run{
		Value:     float64(recv) / secs / 1e3,
		Offered:   float64(sent) / secs / 1e3,
		ServerCPU: float64(s1.CPUNanos-s0.CPUNanos) / 1e3 / float64(recv),
		Seconds:   secs,
		Extra: map[string]float64{
			"received_ratio": float64(recv) / float64(max(sent, 1)),
			"send_errors":    float64(sendErrs),
		},
	}, nil
}

// udpQuiet is how long a server must go without receiving a datagram for
// a flood's backlog to count as drained.
const udpQuiet = 100 * time.Millisecond

// settleUDP waits, at most 20 s, until the server's UDP count stops
// growing: the backlog of a flood (in the TAP's queue, the stack, the
// socket) reaches it before the next measurement starts.
func settleUDP(ctx context.Context, c *contender) error {
	tick := time.NewTicker(udpQuiet)
	defer tick.Stop()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	return settle(ctx, func() (uint64, error) {
		st, err := c.stats()
		return st.UDPReceived, err
	}, tick.C, timeout.C)
}

// settle waits for count to stop growing: it reads count once, then at
// every tick, and returns nil as soon as a read equals the one before. It
// returns an error if timeout fires first, ctx's if ctx ends first.
func settle(ctx context.Context, count func() (uint64, error), tick, timeout <-chan time.Time) error {
	last, err := count()
	if err != nil {
		return err
	}
	for {
		select {
		case <-tick:
		case <-timeout:
			return fmt.Errorf("%w: udp: server still receiving after the window (%d so far)", errMeasure, last)
		case <-ctx.Done():
			return ctx.Err()
		}
		n, err := count()
		if err != nil {
			return err
		}
		if n == last {
			return nil
		}
		last = n
	}
}

// measureRR makes 1-byte round trips over one TCP connection from a
// client process to the server's echo. Pinned, the server's threads and
// the client's are all on cfg.pinCPU, each process with GOMAXPROCS 1.
func measureRR(ctx context.Context, e *env, c *contender, pinned bool) (Run, error) {
	d := time.Duration(e.cfg.seconds()) * time.Second
	args := []string{"rr", "-to", fmt.Sprintf("%s:%d", c.addr, portEcho), "-d", d.String()}
	if pinned {
		var ok struct{}
		if err := c.ctl.request(fmt.Sprintf("pin %d %d", e.cfg.pinCPU, e.cfg.pinProcs), &ok); err != nil {
			return Run{}, err
		}
		defer c.ctl.request("unpin", &ok)
		args = append(args, "-cpu", strconv.Itoa(e.cfg.pinCPU), "-procs", strconv.Itoa(e.cfg.pinProcs))
	}
	s0, s1, res, err := clientWindow(e, c, 1, d, args...)
	if err != nil {
		return Run{}, err
	}
	r := res[0]
	if r.N == 0 || r.Seconds <= 0 {
		return Run{}, fmt.Errorf("%w: no round trip completed", errMeasure)
	}
	return Run{
		Value:     float64(r.N) / r.Seconds / 1e3,
		ServerCPU: float64(s1.CPUNanos-s0.CPUNanos) / 1e3 / float64(r.N),
		Seconds:   r.Seconds,
	}, nil
}

var (
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`([0-9]+) requests in ([0-9.]+)(m?s|m)\b`)
	wrkSockErrs = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
)

// measureHTTP runs wrk -t2 -c64 against the server's net/http service.
func measureHTTP(ctx context.Context, e *env, c *contender) (Run, error) {
	secs := e.cfg.seconds()
	s0, err := c.stats()
	if err != nil {
		return Run{}, err
	}
	out, err := runCmd(ctx, e.cli, time.Duration(secs)*time.Second+time.Minute,
		"wrk", "-t2", "-c64", "-d", fmt.Sprintf("%ds", secs), fmt.Sprintf("http://%s:%d/", c.addr, portHTTP))
	if err != nil {
		return Run{}, err
	}
	s1, err := c.stats()
	if err != nil {
		return Run{}, err
	}
	return parseWrk(string(out), s1.CPUNanos-s0.CPUNanos, s1.HTTPRequests-s0.HTTPRequests)
}

// parseWrk reads wrk's report; cpuNanos is the server's CPU over the run,
// served the requests the server counted.
func parseWrk(out string, cpuNanos int64, served uint64) (Run, error) {
	m := wrkRate.FindStringSubmatch(out)
	if m == nil {
		return Run{}, fmt.Errorf("%w: wrk: no Requests/sec in %q", errMeasure, out)
	}
	rate, err := strconv.ParseFloat(m[1], 64)
	if err != nil || rate <= 0 {
		return Run{}, fmt.Errorf("%w: wrk: Requests/sec %q", errMeasure, m[1])
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		return Run{}, fmt.Errorf("%w: wrk: %s responses were not 2xx", errMeasure, m[1])
	}
	run := Run{Value: rate / 1e3, Extra: map[string]float64{"server_requests": float64(served)}}
	if m := wrkTotal.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "ms":
			v /= 1e3
		case "m":
			v *= 60
		}
		run.Seconds = v
	}
	if m := wrkSockErrs.FindStringSubmatch(out); m != nil {
		var n float64
		for _, s := range m[1:] {
			v, _ := strconv.ParseFloat(s, 64)
			n += v
		}
		run.Extra["socket_errors"] = n
	}
	if served > 0 {
		run.ServerCPU = float64(cpuNanos) / 1e3 / float64(served)
	}
	return run, nil
}

// iperfReport is the part of iperf3 -J's report the bench reads.
type iperfReport struct {
	End struct {
		SumSent struct {
			Bytes       float64 `json:"bytes"`
			Retransmits float64 `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// measureTCP runs stock iperf3 -c (-P streams, -R for downloads) against
// the contender's iperf3 server; the figure is iperf3's receiver rate.
func measureTCP(ctx context.Context, e *env, c *contender, f figure) (Run, error) {
	secs := e.cfg.seconds()
	args := []string{"iperf3", "-c", c.addr.String(), "-p", strconv.Itoa(portIperf), "-t", strconv.Itoa(secs),
		"-P", strconv.Itoa(f.streams), "-J"}
	if f.reverse {
		args = append(args, "-R")
	}
	if c.releaseMem != nil {
		if err := c.releaseMem(); err != nil {
			return Run{}, err
		}
	}
	cpu0, err := c.iperfCPU()
	if err != nil {
		return Run{}, err
	}
	rss := startRSSSampler(c.iperfPID(), rssEvery)
	out, err := runCmd(ctx, e.cli, time.Duration(secs)*time.Second+time.Minute, args...)
	rss0, rssPeak, rssErr := rss.stop()
	cpu1, cerr := c.iperfCPU()
	var rep iperfReport
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		if err == nil {
			err = fmt.Errorf("%w: iperf3 -J: %v", errMeasure, jerr)
		}
		return Run{}, err
	}
	if rep.Error != "" {
		return Run{}, fmt.Errorf("%w: iperf3: %s", errMeasure, rep.Error)
	}
	if err != nil {
		return Run{}, err
	}
	if cerr != nil {
		return Run{}, cerr
	}
	r := rep.End.SumReceived
	if r.Bytes <= 0 || r.BitsPerSecond <= 0 {
		return Run{}, fmt.Errorf("%w: iperf3 moved nothing", errMeasure)
	}
	run := Run{
		Value:     r.BitsPerSecond / 1e9,
		ServerCPU: (cpu1 - cpu0).Seconds() / (r.Bytes / 1e9),
		Seconds:   r.Seconds,
		Extra:     map[string]float64{"bytes": r.Bytes, "sent_bytes": rep.End.SumSent.Bytes},
	}
	if rssErr != nil {
		return Run{}, rssErr
	}
	run.Extra[extraStartRSS] = float64(rss0) / (1 << 20)
	run.Extra[extraPeakRSS] = float64(rssPeak) / (1 << 20)
	if !f.reverse || c.def.key == keyKernel {
		// iperf3 knows the retransmissions of a kernel sender: its own
		// client's on uploads, iperf3 -s's on the kernel's downloads. The
		// gVisor stacks' are their tcp_retransmits counter.
		run.Extra["iperf3_retransmits"] = rep.End.SumSent.Retransmits
	}
	return run, nil
}

// tcpMSS is a full TCP segment's payload at the bench's MTU: 1500 less the
// IPv4 and TCP headers and the timestamp option both stacks use.
const tcpMSS = mtu - 20 - 20 - 12

// addRetransShare adds to a TCP run the sender's retransmissions
// (iperf3's count where a kernel sent, else the gVisor server's counter)
// and their share of the segments sent, in percent. The segments are
// counted as the bytes the sender sent over tcpMSS: no fewer were sent, so
// the share is never understated. A run with neither count, or with no
// bytes sent, gets neither.
func addRetransShare(run *Run) {
	retrans, ok := run.Extra["iperf3_retransmits"]
	if !ok {
		retrans, ok = run.Extra["tcp_retransmits"]
	}
	sent := run.Extra["sent_bytes"]
	if !ok || sent <= 0 {
		return
	}
	segs := sent / tcpMSS
	run.Extra["retransmits"] = retrans
	run.Extra["segments"] = segs
	run.Extra[extraRetransPct] = 100 * retrans / segs
}

// addCounterExtras adds what the server's counters say about a run.
func addCounterExtras(run *Run, f figure, before, after map[string]uint64) {
	if before == nil || after == nil {
		return
	}
	if run.Extra == nil {
		run.Extra = map[string]float64{}
	}
	d := func(k string) float64 { return float64(after[k] - before[k]) }
	for _, x := range []struct {
		name     string
		num, den float64
	}{
		{"link_rx_bytes_per_frame", d("link_rx_bytes"), d("link_rx_frames")},
		{"link_rx_frames_per_wakeup", d("link_rx_frames"), d("link_rx_wakeups")},
		{"link_tx_bytes_per_frame", d("link_tx_bytes"), d("link_tx_frames")},
		{"api_rx_zero_copy_share", d("api_rx_handed_over"), d("api_rx_handed_over") + d("api_rx_copied")},
	} {
		if x.den > 0 {
			run.Extra[x.name] = x.num / x.den
		}
	}
	// The AF_XDP link copies every received frame out of the UMEM (and
	// the split headers once more): counted, per byte received.
	if _, ok := after["link_rx_copied_bytes"]; ok && d("link_rx_bytes") > 0 {
		run.Extra["link_rx_copied_bytes_per_byte"] = d("link_rx_copied_bytes") / d("link_rx_bytes")
	}
	switch f.kind {
	case kindTCP:
		for _, k := range []string{"tcp_retransmits", "tcp_timeouts", "link_tx_errors"} {
			if _, ok := after[k]; ok {
				run.Extra[k] = d(k)
			}
		}
	case kindUDP:
		// Where datagrams were lost: before the stack (the TAP's queue),
		// or at the socket's receive buffer.
		// For the AF_XDP link also its own drops, and the kernel's for
		// its socket (a fill ring found empty: the stack fell behind).
		for _, k := range []string{"link_rx_frames", "udp_received", "udp_rcvbuf_drops",
			"link_rx_drops", "xdp_kernel_fill_ring_empty", "xdp_kernel_rx_ring_full"} {
			if _, ok := after[k]; ok && run.Seconds > 0 {
				run.Extra[k+"_per_s"] = d(k) / run.Seconds
			}
		}
	}
}
