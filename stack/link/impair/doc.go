// Package impair is a bad network in a box: a stack.LinkEndpoint that wraps
// any other link endpoint and loses, duplicates, reorders, corrupts, delays
// and rate-limits the packets that cross it, per direction, with every random
// decision drawn from a seeded generator so that a failing run can be replayed.
//
// The kernel on our test machines has no netem; this package is how tests get
// a hostile network between two stacks.
// Wrap the link a stack's NIC uses:
//
//	inner := channel.New(1024, 1500, "")
//	link, err := impair.New(inner, impair.Config{
//		Seed:     1,
//		Outbound: impair.Impairments{Loss: 0.02, Corrupt: 0.001},
//		Inbound:  impair.Impairments{Reorder: 0.05, Delay: time.Millisecond},
//	})
//	...
//	s.CreateNIC(1, link)
//
// Outbound means the packets the stack writes (WritePackets, on their way to
// the inner link); inbound means the packets the inner link delivers
// (DeliverNetworkPacket, on their way to the stack). A direction whose
// Impairments is the zero value passes packets straight through.
//
// The Endpoint is built on link.Nested, so the stack's hooks reach the
// inner link: zero-copy receive and admission work behind an impairment
// as without it (a packet corrupted on the way in is a copy, which the
// zero-copy socket copies and counts).
//
// The package owns the impairment pipeline, its queues and its one timer
// goroutine per impaired direction, and the references to the packets it
// holds in them. It does not own the inner link (Close closes it, as nested
// gVisor links do), does not parse or repair packets, and does not verify
// checksums: catching a corrupted packet is the stack's job, and the endpoint
// only makes sure the stack is not told to skip that job (see Impairments.Corrupt).
package impair
