// Package zcnet (github.com/zcnet/zcnet/api/zcnet) embeds a zcnet network node in a program in one call: a
// pinned buffer pool (package dmapool), gVisor's TCP/IP stack (package
// stack), a link (a TAP device or an in-process wire, package tap) and the
// zero-copy socket API over them (package api), returned as one Node whose
// one Close tears them down in the order each needs.
//
//	n, err := zcnet.OpenTAP("zc0", zcnet.Config{Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")}})
//	if err != nil { … }
//	defer n.Close()
//	ln, err := n.Net().Listen("tcp", "192.0.2.2:80")
//	http.Serve(ln, handler)
//
// NewPair makes two nodes joined in-process, for tests and demos without
// privileges; New puts a node on any other link (a ring, an impairment
// wrapper). The parts stay reachable (API, Stack, Pool, TAP) for what the
// one call does not cover: event channels and asynchronous ops
// (Node.API().Submit), routes, counters.
//
// This package owns only the assembly and the teardown order. The parts'
// behaviour, options and counters are their packages' to document; the
// package doc of api walks through a program's life with the parts built by
// hand.
package zcnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/zcnet/zcnet/api"
	"github.com/zcnet/zcnet/dmapool"
	"github.com/zcnet/zcnet/stack"
	"github.com/zcnet/zcnet/tap"
)

// DefaultPoolSize is the buffer pool a Node makes when Config.PoolConfig.Size
// is 0: sixteen sockets' default association (api.DefaultAssoc) of received
// data held at once before pool memory runs short for copies and Reserve.
const DefaultPoolSize = 64 << 20

// ErrConfig reports a Config that cannot make a node; the wrapping message
// says which field.
var ErrConfig = errors.New("zcnet: invalid configuration")

// Config describes a node. Only Addrs is required; every other zero field
// takes the default of the package it configures.
type Config struct {
	// Addrs are the node's addresses, each with its on-link prefix
	// ("192.0.2.2/24", "2001:db8::2/64"). At least one.
	Addrs []netip.Prefix
	// Routes are added after the addresses; their NIC field is ignored
	// (the node has one NIC). A default route: Dst 0.0.0.0/0 and a
	// Gateway on one of Addrs' subnets.
	Routes []stack.Route
	// NICName names the NIC in stats and logs; default the TAP device's
	// name, "pair-a"/"pair-b" for a pair, "nic1" otherwise.
	NICName string

	// Stack configures the TCP/IP stack (buffer sizes, congestion control,
	// TCPAckEvents for acknowledgement completions).
	Stack stack.Options
	// API configures the socket API. Its Pool and FilesOnly fields are
	// the node's to set and must be left zero.
	API api.Options
	// Pool is an existing pool to use; the node does not close it. When
	// nil, the node makes one from PoolConfig and closes it on Close.
	Pool *dmapool.Pool
	// PoolConfig configures the pool the node makes. Size 0 means
	// DefaultPoolSize; the zero Pin pins memory where the memlock limit
	// allows and warns once where it does not (dmapool.PinPrefer).
	PoolConfig dmapool.Config
	// TAP configures the device OpenTAP opens; its Name is OpenTAP's
	// argument. The zero value attaches with as many queues as the device
	// allows, offloads on, MTU 1500 (see tap.Config).
	TAP tap.Config

	// Logger receives the stack's and the pool's log lines, unless
	// Stack.Logger or PoolConfig.Logger says otherwise. Default
	// slog.Default().
	Logger *slog.Logger
}

// Node is one zcnet network node: a buffer pool, a stack with one NIC on a
// link, and the zero-copy socket API. Its methods are safe for concurrent
// use.
type Node struct {
	api     *api.Stack
	st      *stack.Stack
	pool    *dmapool.Pool
	ownPool bool // the node made pool and closes it
	nic     stack.NICID
	tapLink *tap.Link // OpenTAP's link, or nil

	closeOnce sync.Once
	closeErr  error // set once by Close
}

// OpenTAP opens (or creates) the TAP device name with cfg.TAP and builds a
// node on it. As with tap.Open, the device is opened in the calling
// thread's network namespace, and its kernel side is left as it is: bring
// it up and address it with ip(8) (`ip link set zc0 up`, `ip addr add
// 192.0.2.1/24 dev zc0`). Node.TAP().Info() says how the link attached
// (how many queues, with or without IFF_MULTI_QUEUE, and why).
func OpenTAP(name string, cfg Config) (*Node, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	tc := cfg.TAP
	tc.Name = name
	link, err := tap.Open(tc)
	if err != nil {
		return nil, err
	}
	if cfg.NICName == "" {
		cfg.NICName = link.Name()
	}
	info := link.Info()
	n, err := New(link, cfg)
	if err != nil {
		return nil, err
	}
	n.tapLink = link
	if info.Reason != "" {
		// The device, not cfg, decided the queues: say so where the
		// operator looks.
		n.st.Logger().Info("zcnet: TAP attached", "device", info.String())
	}
	return n, nil
}

// New builds a node on link, which it takes ownership of: Close closes it,
// and so does a failed New.
func New(link gstack.LinkEndpoint, cfg Config) (n *Node, err error) {
	if link == nil {
		return nil, fmt.Errorf("%w: nil link", ErrConfig)
	}
	if err := cfg.check(); err != nil {
		link.Close()
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	n = &Node{}
	attached := false // the stack owns link once AddNIC succeeds
	defer func() {
		if err != nil {
			if !attached {
				link.Close()
			}
			n.Close()
			n = nil
		}
	}()
	so := cfg.Stack
	if so.Logger == nil {
		so.Logger = logger
	}
	if n.st, err = stack.New(so); err != nil {
		return n, err
	}
	if n.nic, err = n.st.AddNIC(link, stack.NICConfig{Name: cfg.NICName, Addrs: cfg.Addrs}); err != nil {
		return n, err
	}
	attached = true
	for _, r := range cfg.Routes {
		r.NIC = n.nic
		if err = n.st.AddRoute(r); err != nil {
			return n, err
		}
	}
	if n.pool = cfg.Pool; n.pool == nil {
		pc := cfg.PoolConfig
		if pc.Size == 0 {
			pc.Size = DefaultPoolSize
		}
		if pc.Logger == nil {
			pc.Logger = logger
		}
		if n.pool, err = dmapool.New(pc); err != nil {
			return n, fmt.Errorf("zcnet: buffer pool: %w", err)
		}
		n.ownPool = true
	}
	ao := cfg.API
	ao.Pool = n.pool
	if n.api, err = api.New(n.st, ao); err != nil {
		return n, err
	}
	return n, nil
}

// check validates what New cannot leave to the parts.
func (cfg *Config) check() error {
	if len(cfg.Addrs) == 0 {
		return fmt.Errorf("%w: no Addrs: a node needs at least one address (\"192.0.2.2/24\")", ErrConfig)
	}
	for _, p := range cfg.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("%w: address %v", ErrConfig, p)
		}
	}
	if cfg.API.Pool != nil || cfg.API.FilesOnly {
		return fmt.Errorf("%w: API.Pool and API.FilesOnly are the node's to set (use Config.Pool for a pool of your own)", ErrConfig)
	}
	return nil
}

// Net returns the package net shapes over the node's sockets (Dial,
// DialContext, Listen, ListenPacket), for code written against net:
// net/http, TLS, gRPC.
func (n *Node) Net() *api.Net { return n.api.Net() }

// API returns the zero-copy socket API: Bufs handed over on receive,
// SendFunc, event channels and asynchronous ops.
func (n *Node) API() *api.Stack { return n.api }

// Stack returns the TCP/IP stack: routes, NIC stats, gVisor's counters.
func (n *Node) Stack() *stack.Stack { return n.st }

// NIC returns the ID of the node's NIC in Stack.
func (n *Node) NIC() stack.NICID { return n.nic }

// Pool returns the buffer pool the sockets receive into and Reserve hands
// out.
func (n *Node) Pool() *dmapool.Pool { return n.pool }

// TAP returns the TAP link of a node made by OpenTAP, else nil.
func (n *Node) TAP() *tap.Link { return n.tapLink }

// Close tears the node down in the order each part needs: the socket API
// first (its sockets close, queued ops complete with EBADF, its workers
// stop), then the stack and with it the link (closing a TAP link first
// would leave the stack writing to a closed device; closing one end of a
// pair cuts the wire for both nodes), then the pool, if the node made it.
// The pool closes only when nothing it lent is still held: a Buf the
// program has not released makes Close return an error wrapping
// dmapool.ErrBusy, and the pool stays mapped. Close is idempotent; every
// call returns the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.api != nil {
			errs = append(errs, n.api.Close())
		}
		if n.st != nil {
			errs = append(errs, n.st.Close())
		}
		if n.pool != nil && n.ownPool {
			errs = append(errs, n.pool.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
