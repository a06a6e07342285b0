package stack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Errors returned by this package; wrapped with context, test with errors.Is.
var (
	// ErrInvalidOptions reports an option, address or route that is out of
	// range or inconsistent.
	ErrInvalidOptions = errors.New("stack: invalid options")
	// ErrClosed reports use of a Stack after Close.
	ErrClosed = errors.New("stack: closed")
	// ErrNoNIC reports a NIC ID the stack does not have.
	ErrNoNIC = errors.New("stack: no such NIC")
)

// BufferSizes is a TCP buffer's size range in bytes: a new connection starts
// at Default, and auto-tuning (receive) or the application (SO_SNDBUF /
// SO_RCVBUF) may move it between Min and Max.
type BufferSizes struct {
	Min, Default, Max int
}

// Default buffer sizes. gVisor's own default (1 MiB, at most 4 MiB) caps
// the window of a single stream at a bandwidth-delay product a 10 Gbit/s
// link with a 1 ms round trip already exceeds; larger maxima cost nothing
// until a connection has that much in flight. BenchmarkTCPBuffer in this
// package compares the sizes (the README has its figures); over the
// in-process pair it has not told them apart, so these defaults rest on
// the bandwidth-delay argument until a TAP measurement does.
var (
	DefaultTCPSendBuffer    = BufferSizes{Min: 4 << 10, Default: 4 << 20, Max: 16 << 20}
	DefaultTCPReceiveBuffer = BufferSizes{Min: 4 << 10, Default: 4 << 20, Max: 16 << 20}
)

// Congestion control algorithms gVisor implements.
const (
	CongestionCubic = "cubic"
	CongestionReno  = "reno"
)

// Options configures New. The zero value gives the defaults documented on
// each field.
type Options struct {
	// TCPSendBuffer and TCPReceiveBuffer are the TCP buffer size ranges.
	// Zero fields take DefaultTCPSendBuffer / DefaultTCPReceiveBuffer.
	TCPSendBuffer, TCPReceiveBuffer BufferSizes
	// CongestionControl is "cubic" (default) or "reno".
	CongestionControl string
	// DisableSACK turns selective acknowledgements (RFC 2018) off; they are
	// on by default.
	DisableSACK bool
	// DisableReceiveAutoTuning turns receive-buffer moderation off; it is on
	// by default, growing a connection's window towards
	// TCPReceiveBuffer.Max as its bandwidth-delay product demands.
	DisableReceiveAutoTuning bool
	// RACK turns on RACK-TLP loss detection (RFC 8985), gVisor's default.
	// It is off by default here, leaving SACK recovery on the classic
	// three-duplicate-ACK threshold: over the TAP with 2 CPUs, where the
	// link's readers sometimes handle a burst of ACKs late, RACK judged
	// segments lost that had arrived — 330–850 retransmissions per 3 s
	// four-stream download, every one reported by the kernel receiver as
	// a duplicate (TcpExtTCPDSACKOldSent) — and with it off there were
	// none, at equal or better throughput and a third less CPU per byte:
	//
	//	sudo go run ./integration/bench -contenders zcnet,zcnet-mq -figures tcp_down_1,tcp_down_4 -json r.json
	RACK bool
	// Forwarding makes the stack route packets between its NICs. Off by
	// default: zcnet is a host, not a router.
	Forwarding bool
	// Logger receives the stack's log lines. Default: slog.Default().
	Logger *slog.Logger
	// TCPAckEvents makes the stack track what each TCP peer has
	// acknowledged, so a send can complete a second time when the peer has
	// its bytes (Stack.WatchAcks; api's Op.Ack). Off by default, because
	// it costs on every connection of the stack: gVisor then copies an
	// endpoint's whole state after every received segment (the TCP probe),
	// and watched connections copy written data into the send buffer with
	// the endpoint locked. BenchmarkTCPAckEvents measures the whole cost
	// over the in-process pair, most of it heap allocated by gVisor's state
	// copy; BenchmarkAckProbe measures zcnet's own share, which allocates
	// nothing. The README has the figures.
	TCPAckEvents bool
}

// NICID names a NIC within one Stack.
type NICID = tcpip.NICID

// Stack is one gVisor network stack and the NICs attached to it. Its methods
// are safe for concurrent use.
type Stack struct {
	s   *gstack.Stack
	log *slog.Logger
	zc  registry // zero-copy receive flows; see zerocopy.go
	// synFloods counts links refusing SYNs over their budget (admit.go).
	synFloods atomic.Int32

	acks   *ackRegistry // acknowledgement watches; see ackwatch.go
	acksOn bool         // immutable; Options.TCPAckEvents

	mu     sync.Mutex
	closed bool                          // +checklocks:mu
	nextID NICID                         // +checklocks:mu
	links  map[NICID]gstack.LinkEndpoint // +checklocks:mu
	names  map[NICID]string              // +checklocks:mu
	// closers are the layers to close before the stack (closers.go).
	closers []*closer // +checklocks:mu
}

// New builds a stack with IPv4, IPv6, ARP, ICMPv4/v6, TCP and UDP and applies
// opts. It starts gVisor's protocol goroutines; Close stops them.
func New(opts Options) (*Stack, error) {
	if err := fillDefaults(&opts); err != nil {
		return nil, err
	}
	acks := &ackRegistry{}
	newTCP := tcp.NewProtocol
	if opts.TCPAckEvents {
		// The probe is the only public view of SND.UNA (ackwatch.go).
		newTCP = tcp.NewProtocolProbe(acks.probe)
	}
	s := gstack.New(gstack.Options{
		NetworkProtocols:   []gstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gstack.TransportProtocolFactory{newTCP, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	st := &Stack{s: s, log: opts.Logger, acks: acks, acksOn: opts.TCPAckEvents, nextID: 1, links: map[NICID]gstack.LinkEndpoint{}, names: map[NICID]string{}}
	st.zc.connected = st.connected
	if err := st.apply(opts); err != nil {
		s.Destroy()
		return nil, err
	}
	return st, nil
}

func fillDefaults(o *Options) error {
	for _, b := range []struct {
		name string
		got  *BufferSizes
		def  BufferSizes
	}{{"TCPSendBuffer", &o.TCPSendBuffer, DefaultTCPSendBuffer}, {"TCPReceiveBuffer", &o.TCPReceiveBuffer, DefaultTCPReceiveBuffer}} {
		if b.got.Min == 0 {
			b.got.Min = b.def.Min
		}
		if b.got.Default == 0 {
			b.got.Default = max(b.def.Default, b.got.Min)
		}
		if b.got.Max == 0 {
			b.got.Max = max(b.def.Max, b.got.Default)
		}
		if b.got.Min < gstack.MinBufferSize || b.got.Default < b.got.Min || b.got.Max < b.got.Default {
			return fmt.Errorf("%w: %s %+v: want %d <= Min <= Default <= Max", ErrInvalidOptions, b.name, *b.got, gstack.MinBufferSize)
		}
	}
	switch o.CongestionControl {
	case "":
		o.CongestionControl = CongestionCubic
	case CongestionCubic, CongestionReno:
	default:
		return fmt.Errorf("%w: congestion control %q: want %q or %q", ErrInvalidOptions, o.CongestionControl, CongestionCubic, CongestionReno)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func (st *Stack) apply(o Options) error {
	sack := tcpip.TCPSACKEnabled(!o.DisableSACK)
	var recovery tcpip.TCPRecovery // 0: duplicate-ACK threshold only
	if o.RACK {
		recovery = tcpip.TCPRACKLossDetection
	}
	moderate := tcpip.TCPModerateReceiveBufferOption(!o.DisableReceiveAutoTuning)
	cc := tcpip.CongestionControlOption(o.CongestionControl)
	snd := tcpip.TCPSendBufferSizeRangeOption(o.TCPSendBuffer)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption(o.TCPReceiveBuffer)
	for _, opt := range []struct {
		name string
		v    tcpip.SettableTransportProtocolOption
	}{{"SACK", &sack}, {"receive auto-tuning", &moderate}, {"congestion control", &cc}, {"send buffer", &snd}, {"receive buffer", &rcv}, {"loss detection", &recovery}} {
		if err := st.s.SetTransportProtocolOption(tcp.ProtocolNumber, opt.v); err != nil {
			return fmt.Errorf("%w: TCP %s: %s", ErrInvalidOptions, opt.name, err)
		}
	}
	// The stack-wide socket buffer limits bound what SO_SNDBUF/SO_RCVBUF may
	// ask for, UDP's included; keep them at least as large as TCP's.
	if err := st.s.SetOption(tcpip.SendBufferSizeOption{Min: o.TCPSendBuffer.Min, Default: gstack.DefaultBufferSize, Max: max(o.TCPSendBuffer.Max, gstack.DefaultMaxBufferSize)}); err != nil {
		return fmt.Errorf("%w: send buffer limits: %s", ErrInvalidOptions, err)
	}
	if err := st.s.SetOption(tcpip.ReceiveBufferSizeOption{Min: o.TCPReceiveBuffer.Min, Default: gstack.DefaultBufferSize, Max: max(o.TCPReceiveBuffer.Max, gstack.DefaultMaxBufferSize)}); err != nil {
		return fmt.Errorf("%w: receive buffer limits: %s", ErrInvalidOptions, err)
	}
	for _, p := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
		if err := st.s.SetForwardingDefaultAndAllNICs(p, o.Forwarding); err != nil {
			return fmt.Errorf("%w: forwarding: %s", ErrInvalidOptions, err)
		}
	}
	return nil
}

// Netstack returns the underlying gVisor stack, for packages that build on
// gVisor directly (api) and users who need an option zcnet does not wrap.
// Changing NICs through it behind this Stack's back is unsupported.
func (st *Stack) Netstack() *gstack.Stack { return st.s }

// Logger returns the logger the stack was configured with.
func (st *Stack) Logger() *slog.Logger { return st.log }

// NICConfig configures AddNIC.
type NICConfig struct {
	// Name is the NIC's name in stats and logs. Default "nicN".
	Name string
	// Addrs are assigned to the NIC; each also installs an on-link route to
	// its subnet through the NIC. IPv4 and IPv6 may be mixed.
	Addrs []netip.Prefix
}

// AddNIC attaches link to the stack as a new NIC and enables it. The stack
// takes ownership of link: Close (or RemoveNIC) closes it.
func (st *Stack) AddNIC(link gstack.LinkEndpoint, cfg NICConfig) (NICID, error) {
	if link == nil {
		return 0, fmt.Errorf("%w: nil link endpoint", ErrInvalidOptions)
	}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return 0, ErrClosed
	}
	id := st.nextID
	st.nextID++
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("nic%d", id)
	}
	if err := st.s.CreateNICWithOptions(id, link, gstack.NICOptions{Name: cfg.Name}); err != nil {
		st.mu.Unlock()
		return 0, fmt.Errorf("%w: create NIC %q: %s", ErrInvalidOptions, cfg.Name, err)
	}
	st.links[id] = link
	st.names[id] = cfg.Name
	st.mu.Unlock()
	st.hookLink(id, link)
	for _, p := range cfg.Addrs {
		if err := st.AddAddress(id, p); err != nil {
			st.RemoveNIC(id)
			return 0, err
		}
	}
	st.log.Debug("NIC added", "nic", id, "name", cfg.Name, "mtu", link.MTU(), "addrs", cfg.Addrs)
	return id, nil
}

// RemoveNIC detaches and closes a NIC's link, dropping its addresses and
// routes.
func (st *Stack) RemoveNIC(id NICID) error {
	st.mu.Lock()
	link, ok := st.links[id]
	if !ok {
		st.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrNoNIC, id)
	}
	delete(st.links, id)
	delete(st.names, id)
	st.mu.Unlock()
	st.s.RemoveRoutes(func(r tcpip.Route) bool { return r.NIC == id })
	err := st.s.RemoveNIC(id) // closes the link
	link.Wait()
	if err != nil {
		return fmt.Errorf("stack: remove NIC %d: %s", id, err)
	}
	return nil
}

// AddAddress assigns p's address to a NIC and routes p's subnet through it.
// p's length is the on-link prefix, as with `ip addr add 192.0.2.2/24`.
func (st *Stack) AddAddress(id NICID, p netip.Prefix) error {
	if !p.IsValid() || p.Addr().Unmap().IsUnspecified() {
		return fmt.Errorf("%w: address %v", ErrInvalidOptions, p)
	}
	a := p.Addr().Unmap()
	bits := p.Bits()
	if p.Addr().Is4In6() {
		bits -= 96
	}
	p = netip.PrefixFrom(a, bits)
	pa := tcpip.ProtocolAddress{Protocol: NetworkProtocol(a), AddressWithPrefix: tcpip.AddressWithPrefix{Address: TCPIPAddr(a), PrefixLen: bits}}
	if err := st.s.AddProtocolAddress(id, pa, gstack.AddressProperties{}); err != nil {
		return fmt.Errorf("%w: add %v to NIC %d: %s", ErrInvalidOptions, p, id, err)
	}
	return st.AddRoute(Route{Dst: p.Masked(), NIC: id})
}

// Route is a routing table entry.
type Route struct {
	Dst     netip.Prefix // destination subnet; 0.0.0.0/0 or ::/0 for a default route
	Gateway netip.Addr   // next hop; zero for on-link destinations
	NIC     NICID        // outgoing NIC
}

func (r Route) String() string {
	if r.Gateway.IsValid() {
		return fmt.Sprintf("%v via %v nic %d", r.Dst, r.Gateway, r.NIC)
	}
	return fmt.Sprintf("%v nic %d", r.Dst, r.NIC)
}

// AddRoute adds r to the routing table. More specific routes win, as in
// Linux; among equals the earlier one does.
func (st *Stack) AddRoute(r Route) error {
	sn, err := subnet(r.Dst)
	if err != nil {
		return err
	}
	if r.Gateway.IsValid() && r.Gateway.Unmap().Is4() != isV4(r.Dst) {
		return fmt.Errorf("%w: route %v: gateway family differs from destination's", ErrInvalidOptions, r)
	}
	st.mu.Lock()
	_, ok := st.links[r.NIC]
	st.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: route %v: %w", ErrInvalidOptions, r, ErrNoNIC)
	}
	// gVisor matches the first viable route in table order, so keep the
	// table sorted from the longest prefix to the shortest.
	table := append(st.s.GetRouteTable(), tcpip.Route{Destination: sn, Gateway: TCPIPAddr(r.Gateway), NIC: r.NIC})
	sortRoutes(table)
	st.s.SetRouteTable(table)
	return nil
}

// Routes returns the routing table in lookup order.
func (st *Stack) Routes() []Route {
	var out []Route
	for _, r := range st.s.GetRouteTable() {
		out = append(out, Route{
			Dst:     netip.PrefixFrom(NetipAddr(r.Destination.ID()), r.Destination.Prefix()),
			Gateway: NetipAddr(r.Gateway),
			NIC:     r.NIC,
		})
	}
	return out
}

// NICs returns the IDs and names of the stack's NICs.
func (st *Stack) NICs() map[NICID]string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make(map[NICID]string, len(st.names))
	for id, n := range st.names {
		out[id] = n
	}
	return out
}

// Close closes the layers registered with OnClose (the socket API of
// package api, if still open), aborts every endpoint, stops gVisor's
// protocol goroutines, removes and closes every NIC's link and waits for
// the links' goroutines. After it returns the stack, and the socket API
// over it, have no goroutine left. It is safe to call more than once.
func (st *Stack) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	links := st.links
	st.links = map[NICID]gstack.LinkEndpoint{}
	closers := st.closers
	st.closers = nil
	st.mu.Unlock()
	// Layers on top first (the socket API: its sockets, its workers),
	// while the stack still runs, so their endpoints close cleanly.
	runClosers(closers)
	// Abort what is left (connections closing, listeners) while the NICs
	// still run, so each peer gets its RST now instead of retransmitting
	// into a stack that is gone until its own timeout, minutes later.
	for _, ep := range st.s.RegisteredEndpoints() {
		ep.Abort()
	}
	// gVisor's Destroy waits for each link's goroutines before it closes
	// the link, so remove (and so close) the NICs first, then wait.
	for id, l := range links {
		st.s.RemoveNIC(id)
		l.Wait()
	}
	st.s.Destroy()
	return nil
}
