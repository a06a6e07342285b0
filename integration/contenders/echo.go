package contenders

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// EchoTCP accepts connections on ln until it fails (it is closed) and
// sends back what each one sends, on a goroutine per connection.
func EchoTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// EchoUDP sends every datagram back to its sender until pc is closed.
func EchoUDP(pc net.PacketConn) {
	b := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(b)
		if err != nil {
			return
		}
		pc.WriteTo(b[:n], from)
	}
}

// RoundTrip writes buf on conn and reads as many bytes back into it.
func RoundTrip(conn net.Conn, buf []byte) error {
	if _, err := conn.Write(buf); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	return nil
}

// EchoOnce sends data on a fresh TCP connection to addr and checks that
// every byte comes back, within timeout. It writes while it reads, so data
// may be larger than what the server buffers.
func EchoOnce(addr string, data []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return errors.New("echo differs")
	}
	return nil
}
