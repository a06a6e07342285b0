// Package stack builds and runs gVisor's TCP/IP stack (netstack) for zcnet:
// the protocols, NICs, addresses, routes and tuning options, with defaults
// chosen by measurement.
//
// It owns the lifecycle of one in-process stack: New configures IPv4, IPv6,
// ARP, ICMPv4/v6, TCP (SACK and receive-buffer auto-tuning on, large buffers)
// and UDP; AddNIC attaches any gVisor link endpoint (a TAP link, the
// in-process pair, a ring); Close stops every goroutine the stack and its
// links started, after closing the layers built on it that registered with
// OnClose (package api's socket API does). A link that takes the stack's
// hooks (link.PayloadHooker for zero-copy receive, link.Admitter for the
// admission of segments at listeners) is given them by AddNIC. A UDP
// socket's receive queue can be one of this package's (UDPReceiver, which
// takes a gVisor UDP endpoint's place in the transport demuxer). It does
// not own sockets: package api builds the socket interfaces on top of a
// Stack.
// Nor does it own links: their contract is package stack/link, the only
// link package this one imports, and the links are its subpackages and
// package tap.
//
// Addresses cross this package's API as net/netip values; the gVisor types
// stay behind Netstack, the escape hatch for packages (and users) that need
// gVisor directly.
package stack
