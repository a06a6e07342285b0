//go:build linux

package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// pipeListener hands out the server ends of net.Pipes.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (iperfStream, error) {
	select {
	case c := <-l.conns:
		return &netStream{Conn: c}, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

// dial returns the client end of a new connection.
func (l *pipeListener) dial() net.Conn {
	c, s := net.Pipe()
	l.conns <- s
	return c
}

// iperfClient plays a stock iperf3 client's part against the server.
type iperfClient struct {
	t    *testing.T
	ctrl net.Conn
}

func (c *iperfClient) expect(want int8) {
	c.t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c.ctrl, b[:]); err != nil {
		c.t.Fatalf("waiting for state %d: %v", want, err)
	}
	if int8(b[0]) != want {
		c.t.Fatalf("state %d, want %d", int8(b[0]), want)
	}
}

func (c *iperfClient) send(st int8) {
	c.t.Helper()
	if _, err := c.ctrl.Write([]byte{stateByte(st)}); err != nil {
		c.t.Fatal(err)
	}
}

func TestIperfServerUpload(t *testing.T) {
	for _, reverse := range []bool{false, true} {
		ln := newPipeListener()
		s := &iperfServer{ln: ln, log: io.Discard}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); s.serve(&wg) }()

		cookie := bytes.Repeat([]byte("a"), iperfCookieLen-1)
		cookie = append(cookie, 0)
		c := &iperfClient{t: t, ctrl: ln.dial()}
		c.ctrl.SetDeadline(time.Now().Add(30 * time.Second))
		c.ctrl.Write(cookie)
		c.expect(ipParamExchange)
		if err := writeIperfJSON(c.ctrl, map[string]any{"tcp": true, "parallel": 2, "time": 1, "len": 1000, "reverse": reverse}); err != nil {
			t.Fatal(err)
		}
		c.expect(ipCreateStreams)
		var streams []net.Conn
		for range 2 {
			sc := ln.dial()
			sc.SetDeadline(time.Now().Add(30 * time.Second))
			sc.Write(cookie)
			streams = append(streams, sc)
		}
		// A stranger while the test runs is turned away.
		stranger := ln.dial()
		stranger.Write(bytes.Repeat([]byte("b"), iperfCookieLen))
		var b [1]byte
		if _, err := io.ReadFull(stranger, b[:]); err != nil || int8(b[0]) != ipAccessDenied {
			t.Errorf("stranger: state %d, %v; want ACCESS_DENIED", int8(b[0]), err)
		}
		stranger.Close()

		c.expect(ipTestStart)
		c.expect(ipTestRunning)
		moved := []int{3000, 5000}
		for i, sc := range streams {
			buf := make([]byte, moved[i])
			if reverse {
				if _, err := io.ReadFull(sc, buf); err != nil {
					t.Fatal(err)
				}
			} else if _, err := sc.Write(buf); err != nil {
				t.Fatal(err)
			}
		}
		c.send(ipTestEnd)
		c.expect(ipExchangeResults)
		if err := writeIperfJSON(c.ctrl, map[string]any{"cpu_util_total": 1, "streams": []any{}}); err != nil {
			t.Fatal(err)
		}
		var res iperfResults
		if err := readIperfJSON(c.ctrl, &res, 1<<20); err != nil {
			t.Fatal(err)
		}
		c.expect(ipDisplayResults)
		c.send(ipIperfDone)
		if len(res.Streams) != 2 || res.Streams[0].ID != 1 || res.Streams[1].ID != 3 {
			t.Fatalf("results %+v", res)
		}
		// The server numbers streams in the order their cookies reached
		// it, which two connections sending at once may swap: compare
		// the counts in order of size. Uploads: exactly what the client
		// wrote. Downloads: at least what it read (the server wrote on
		// until TEST_END).
		got := slices.SortedFunc(slices.Values(res.Streams), func(a, b iperfStreamResult) int { return cmp.Compare(a.Bytes, b.Bytes) })
		if !reverse && (got[0].Bytes != 3000 || got[1].Bytes != 5000) || reverse && (got[0].Bytes < 3000 || got[1].Bytes < 5000) {
			t.Errorf("reverse %v: streams %+v, want %v bytes", reverse, res.Streams, moved)
		}
		for i, st := range res.Streams {
			if st.EndTime <= 0 {
				t.Errorf("reverse %v stream %d: %+v, no end time", reverse, i, st)
			}
		}
		for _, sc := range streams {
			sc.Close()
		}
		c.ctrl.Close()
		ln.Close()
		wg.Wait()
	}
}

func TestIperfServerRefusesUDP(t *testing.T) {
	ln := newPipeListener()
	s := &iperfServer{ln: ln, log: io.Discard}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.serve(&wg) }()
	c := &iperfClient{t: t, ctrl: ln.dial()}
	c.ctrl.SetDeadline(time.Now().Add(30 * time.Second))
	c.ctrl.Write(make([]byte, iperfCookieLen))
	c.expect(ipParamExchange)
	b, _ := json.Marshal(map[string]any{"udp": true, "parallel": 1, "time": 1})
	writeIperfJSON(c.ctrl, json.RawMessage(b))
	c.expect(ipServerError)
	c.ctrl.Close()
	ln.Close()
	wg.Wait()
}
