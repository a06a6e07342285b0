package link

import (
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Nested is the base of a link that wraps another link (the inner link)
// and sits between it and the stack, as a capture or an impairment does.
// A wrapper embeds Nested, calls Init once before use, and overrides only
// the methods it changes.
//
// Nested forwards:
//
//   - every stack.LinkEndpoint and stack.GSOEndpoint method to the inner
//     link, and every stack.NetworkDispatcher call from the inner link to
//     the stack's dispatcher (gVisor's nested.Endpoint does this part,
//     including its guard of the dispatcher while the NIC attaches and
//     detaches);
//   - every zcnet hook the stack installs (SetPayloadHook, SetConnLookup,
//     SetSYNPressure) to the inner link, when the inner link takes it.
//
// The second part is why it exists: gVisor's base knows nothing of the
// hooks, and a wrapper that forgot one would silently turn the inner
// link's zero-copy receive into copying, or leave its admission budget
// without the stack's lookup. Because the hooks are forwarded as the
// inner link receives frames, the payload views the hook sees are the
// ones the stack reads unless the wrapper replaces a packet's payload
// (an impairment's corruption does, in a copy): the stack then reads
// memory no hook saw, and the zero-copy socket copies it and counts the
// copy.
type Nested struct {
	gnested
	inner stack.LinkEndpoint
}

// gnested is embedded under an unexported name so a wrapper's users reach
// gVisor's Init only through Nested.Init.
type gnested = nested.Endpoint

var (
	_ stack.LinkEndpoint      = (*Nested)(nil)
	_ stack.GSOEndpoint       = (*Nested)(nil)
	_ stack.NetworkDispatcher = (*Nested)(nil)
	_ PayloadHooker           = (*Nested)(nil)
	_ Admitter                = (*Nested)(nil)
)

// Init makes inner the wrapped link and outer (the embedding wrapper) the
// dispatcher inner delivers to, so that received packets pass through the
// wrapper's DeliverNetworkPacket. Call it once, before the wrapper is
// added to a stack; a second call panics, since rewiring a link the stack
// holds would lose its packets and hooks.
func (n *Nested) Init(inner stack.LinkEndpoint, outer stack.NetworkDispatcher) {
	if n.inner != nil {
		panic("link: Nested.Init called twice")
	}
	n.inner = inner
	n.gnested.Init(inner, outer)
}

// Inner returns the wrapped link.
func (n *Nested) Inner() stack.LinkEndpoint { return n.inner }

// SetPayloadHook implements PayloadHooker by installing fn on the inner
// link; an inner link without a payload hook ignores it.
func (n *Nested) SetPayloadHook(fn PayloadHook) {
	if h, ok := n.inner.(PayloadHooker); ok {
		h.SetPayloadHook(fn)
	}
}

// SetConnLookup implements Admitter by installing fn on the inner link; an
// inner link without admission ignores it.
func (n *Nested) SetConnLookup(fn ConnLookup) {
	if h, ok := n.inner.(Admitter); ok {
		h.SetConnLookup(fn)
	}
}

// SetSYNPressure implements Admitter by installing fn on the inner link;
// an inner link without admission ignores it.
func (n *Nested) SetSYNPressure(fn SYNPressure) {
	if h, ok := n.inner.(Admitter); ok {
		h.SetSYNPressure(fn)
	}
}
