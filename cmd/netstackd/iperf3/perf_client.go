package iperf3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/zcnet/zcnet/cmd/netstackd/transport"
)

// ClientConfig configures a perf client.
type ClientConfig struct {
	Server   netip.AddrPort
	Spec     Spec
	Interval time.Duration // progress lines; 0: none
	// Timeout bounds connecting and each control step.
	Timeout time.Duration
	// Out receives the progress lines and the summary, unless it is nil.
	Out io.Writer
}

// RunClient runs one test against an iperf3 server (ours or stock),
// following iperf3's client (iperf_run_client): steps 1 to 7 of the
// protocol in iperf3.go. It returns the outcome once data has flowed, even
// if a later step failed, and the error. Cancelling ctx ends the test with
// CLIENT_TERMINATE.
func RunClient(ctx context.Context, tr transport.Transport, cfg ClientConfig) (*Outcome, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	spec := cfg.Spec
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	tctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, cfg.Timeout)
	ctrl, err := tr.DialTCP(dctx, cfg.Server)
	dcancel()
	if err != nil {
		return nil, fmt.Errorf("connecting to %v: %w", cfg.Server, err)
	}
	defer ctrl.Close()
	cc := newCtrlConn(tctx, ctrl)
	timed := func() func() {
		c, cancel := context.WithTimeout(tctx, cfg.Timeout)
		cc.rctx, cc.wctx = c, c
		return cancel
	}
	untime := timed()
	defer func() { untime() }()
	fmt.Fprintf(out, "Connecting to host %s, port %d over %s sockets\n", cfg.Server.Addr(), cfg.Server.Port(), tr.Name())

	// 1. Cookie and parameters.
	cookie := newCookie()
	if err := cc.write(cookie[:]); err != nil {
		return nil, fmt.Errorf("sending the cookie: %w", err)
	}
	if err := expectState(cc, stParamExchange); err != nil {
		return nil, err
	}
	if err := cc.writeJSON(spec.params()); err != nil {
		return nil, fmt.Errorf("sending the parameters: %w", err)
	}
	if err := expectState(cc, stCreateStreams); err != nil {
		return nil, err
	}

	// 2. Streams.
	run := newPerfRun(spec, tr, !spec.Reverse, cfg.Interval)
	defer run.finish()
	for i := 0; i < spec.total(); i++ {
		if spec.UDP {
			pc, err := udpConnect(tctx, tr, cfg.Server, cfg.Timeout, spec.Reverse || (spec.Bidir && i >= spec.Streams))
			if err != nil {
				return nil, fmt.Errorf("stream %d: %w", streamID(i), err)
			}
			run.addUDP(pc, netip.AddrPort{}, cfg.Server, true)
			continue
		}
		dctx, dcancel := context.WithTimeout(tctx, cfg.Timeout)
		c, err := tr.DialTCP(dctx, cfg.Server)
		dcancel()
		if err != nil {
			return nil, fmt.Errorf("stream %d: connecting: %w", streamID(i), err)
		}
		st := run.addTCP(c)
		if _, err := transport.SendBytes(cc.wctx, c, cookie[:]); err != nil {
			return nil, fmt.Errorf("stream %d: sending the cookie: %w", st.id, err)
		}
	}
	for _, st := range run.streams {
		fmt.Fprintf(out, "[%3d] local %s port %d connected to %s port %d\n", st.id, st.local.Addr(), st.local.Port(), st.remote.Addr(), st.remote.Port())
	}

	// 3. TEST_START, TEST_RUNNING: run for the duration, or until a byte
	// or block limit.
	if err := expectState(cc, stTestStart); err != nil {
		return nil, err
	}
	if err := expectState(cc, stTestRunning); err != nil {
		return nil, err
	}
	untime()
	cc.rctx, cc.wctx = tctx, tctx
	ar := asyncReader{cc: cc, msgs: make(chan stateOrErr, 1)}
	defer ar.wait()
	defer cancel()
	ar.next()
	o := &Outcome{spec: spec, role: "client", transport: tr.Name(), sender: run.sender, cookie: string(cookie[:cookieLen-1]), peerAddr: hostPort(cfg.Server)}
	multi := len(run.streams) > 1
	if cfg.Interval > 0 {
		fmt.Fprintln(out, o.headerLine())
		run.onSample = func(s intervalSample) {
			if !multi {
				fmt.Fprintln(out, intervalLine(spec, run.sender, "1", s))
				return
			}
			fmt.Fprintln(out, intervalLine(spec, run.sender, "SUM", s))
		}
	}
	run.begin(false)
	o.start = run.start
	var timer <-chan time.Time
	if spec.Duration > 0 {
		t := time.NewTimer(time.Duration(spec.Duration+spec.Omit) * time.Second)
		defer t.Stop()
		timer = t.C
	}
	var early *stateOrErr
	select {
	case <-timer:
	case <-run.limit:
	case m := <-ar.msgs:
		early = &m
	case <-ctx.Done():
	}
	run.stop()
	o.local, o.cpu, o.samples, o.connected, o.copy = run.results(), run.cpu, run.samplesCopy(), run.connected(), run.copyDelta
	if err := run.err(); err != nil {
		return o, fmt.Errorf("a stream failed: %w", err)
	}
	if early != nil {
		switch {
		case early.err != nil:
			return o, fmt.Errorf("the server closed the control connection during the test: %w", early.err)
		case early.st == stServerTerminate:
			return o, errors.New("the server ended the test (SERVER_TERMINATE)")
		case early.st == stServerError:
			return o, cc.readServerError()
		}
		return o, fmt.Errorf("%w: unexpected %v during the test", errIperfProtocol, early.st)
	}
	if err := ctx.Err(); err != nil {
		cc.writeState(stClientTerminate)
		return o, fmt.Errorf("interrupted: %w", err)
	}

	// 4. TEST_END; results.
	if err := cc.writeState(stTestEnd); err != nil {
		return o, err
	}
	wait := time.NewTimer(cfg.Timeout)
	defer wait.Stop()
	var m stateOrErr
	select {
	case m = <-ar.msgs:
	case <-wait.C:
		return o, fmt.Errorf("the server did not answer TEST_END within %v", cfg.Timeout)
	}
	if m.err != nil {
		return o, fmt.Errorf("waiting for EXCHANGE_RESULTS: %w", m.err)
	}
	if m.st == stServerError {
		return o, cc.readServerError()
	}
	if m.st != stExchangeResults {
		return o, fmt.Errorf("%w: got %v, want EXCHANGE_RESULTS", errIperfProtocol, m.st)
	}
	untime = timed()
	if err := cc.writeJSON(run.Results()); err != nil {
		return o, fmt.Errorf("sending the results: %w", err)
	}
	if err := cc.readJSON(&o.peer, maxResultsJSON); err != nil {
		return o, fmt.Errorf("reading the server's results: %w", err)
	}
	if err := expectState(cc, stDisplayResults); err != nil {
		return o, err
	}
	// 5. Close the streams, say IPERF_DONE.
	run.finish()
	if err := cc.writeState(stIperfDone); err != nil {
		return o, err
	}
	return o, nil
}

// expectState reads a state byte and checks it is want; the server's
// refusals become errors that say why.
func expectState(cc *ctrlConn, want iperfState) error {
	st, err := cc.readState()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the server closed the control connection waiting for %v", want)
		}
		return fmt.Errorf("waiting for %v: %w", want, err)
	}
	switch st {
	case want:
		return nil
	case stAccessDenied:
		return errBusy
	case stServerError:
		return cc.readServerError()
	case stServerTerminate:
		return errors.New("the server ended the test (SERVER_TERMINATE)")
	}
	return fmt.Errorf("%w: got %v, want %v", errIperfProtocol, st, want)
}

// udpConnect opens a UDP stream's socket and makes it known to the server:
// it sends udpConnectMsg and waits for the reply, sending again each second
// (a datagram may be lost while neighbours resolve). In reverse mode data
// may overtake the reply; it is skipped.
func udpConnect(ctx context.Context, tr transport.Transport, server netip.AddrPort, timeout time.Duration, reverse bool) (transport.PacketConn, error) {
	pc, err := tr.DialUDP(server)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := pc.SendTo(ctx, len(udpConnectMsg), func(p []byte) int { return copy(p, udpConnectMsg[:]) }, netip.AddrPort{}); err != nil {
			pc.Close()
			return nil, fmt.Errorf("sending the UDP connect datagram: %w", err)
		}
		wait := time.Now().Add(time.Second)
		if deadline.Before(wait) {
			wait = deadline
		}
		rctx, cancel := context.WithDeadline(ctx, wait)
		for {
			ch, _, err := pc.RecvFrom(rctx)
			if err != nil {
				break
			}
			p := ch.Bytes()
			ok := len(p) == 4 && ([4]byte(p) == udpConnectReply || [4]byte(p) == udpLegacyReply)
			ch.Release()
			if ok {
				cancel()
				return pc, nil
			}
			if !reverse {
				break // not data, not the reply: send again
			}
		}
		cancel()
		if ctx.Err() != nil {
			break
		}
	}
	pc.Close()
	return nil, fmt.Errorf("no answer to the UDP connect datagram within %v", timeout)
}
