package link

import "sync/atomic"

// PayloadHooker is a link that takes the stack's payload hook: it calls
// the hook for each received payload view it delivers, as PayloadHook
// says. Package stack installs the hook when the link becomes a NIC; nil
// removes it.
type PayloadHooker interface {
	SetPayloadHook(PayloadHook)
}

// HookSlot holds a link's payload hook: SetPayloadHook sets it from the
// stack's goroutine while the link's readers Load it for every frame, so it
// is an atomic pointer, nil while no hook is set.
type HookSlot struct {
	atomic.Pointer[PayloadHook]
}

// Set installs fn; nil removes it.
func (s *HookSlot) Set(fn PayloadHook) {
	if fn == nil {
		s.Store(nil)
		return
	}
	s.Store(&fn)
}

// Admitter is a link that budgets the TCP segments it hands to listening
// sockets (with an Admission; the TAP, ring and AF_XDP links do). Package stack
// installs a ConnLookup for the NIC and its SYNPressure when the link
// becomes a NIC; nil removes either.
type Admitter interface {
	SetConnLookup(ConnLookup)
	SetSYNPressure(SYNPressure)
}

// ConnKind is where the stack would deliver a TCP segment.
type ConnKind uint8

const (
	// ConnNone: no endpoint; the stack answers (a RST) during delivery.
	ConnNone ConnKind = iota
	// ConnListener: a listening socket, whose processor queues it.
	ConnListener
	// ConnEstablished: a connection's own endpoint.
	ConnEstablished
)

// ConnLookup tells the link where the stack would deliver the TCP segment
// in frame (an Ethernet frame whose IP and TCP headers are complete and
// checked). It is valid only during the call and must not be kept. It runs
// on the link's reader goroutines, concurrently when the link has several
// queues, once for each received TCP frame without payload.
type ConnLookup func(frame []byte) ConnKind

// SYNPressure is told when a link starts refusing SYNs for listeners over
// its budget (true) and when, after that, its unpaid SYNs fall below a
// quarter of the budget again (false). It runs on a reader goroutine, once
// per change.
type SYNPressure func(on bool)
