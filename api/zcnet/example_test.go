package zcnet_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/zcnet/zcnet/api/zcnet"
)

// Two nodes joined in-process, no privileges needed: an HTTP server on B
// (net/http, unchanged, over zcnet's sockets) and a client on A.
func Example() {
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	defer b.Close()

	ln, err := b.Net().Listen("tcp", "192.0.2.2:80")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from zcnet, %s", r.URL.Path[1:])
	})}
	go srv.Serve(ln)
	defer srv.Close()

	tr := &http.Transport{DialContext: a.Net().DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := client.Get("http://192.0.2.2/world")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))
	// Output: hello from zcnet, world
}

// Serving on a TAP device (needs CAP_NET_ADMIN): make the device and its
// kernel side with ip(8), then one call builds the node on it. The link
// takes as many queues as the device allows.
//
//	ip tuntap add dev zc0 mode tap
//	ip addr add 192.0.2.1/24 dev zc0
//	ip link set zc0 up
func ExampleOpenTAP() {
	n, err := zcnet.OpenTAP("zc0", zcnet.Config{
		Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	log.Printf("attached: %v", n.TAP().Info())

	ln, err := n.Net().Listen("tcp", "192.0.2.2:7")
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			defer c.Close()
			io.Copy(c, c) // echo
		}(c)
	}
}

// The zero-copy socket API of a node: Recv hands over the buffer the data
// arrived in, which the program releases; SendFunc fills the stack's send
// buffer in place.
func ExampleNode_API() {
	a, b, err := zcnet.NewPair(zcnet.PairConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ln, _ := b.API().ListenTCP(netip.MustParseAddrPort("192.0.2.2:9"))
	go func() {
		c, err := a.API().DialTCP(ctx, netip.MustParseAddrPort("192.0.2.2:9"))
		if err != nil {
			return
		}
		msg := "written in place"
		c.SendFunc(ctx, len(msg), func(p []byte) int { return copy(p, msg) })
		c.Close()
	}()
	conn, err := ln.Accept(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	buf, err := conn.Recv(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (copied: %v)\n", buf.Bytes(), buf.Copied())
	buf.Release()
	// Output: written in place (copied: false)
}
