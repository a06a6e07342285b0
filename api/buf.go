package api

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"

	"github.com/zcnet/zcnet/dmapool"
)

// ErrInvalidBuffer reports a Buf that is not (or no longer) valid: the zero
// Buf, one already released or sent, or one not made by this package.
var ErrInvalidBuffer = errors.New("api: invalid buffer")

// Buf is a buffer the application owns: received data handed over by a
// socket (Recv, RecvFrom, RecvMsg), or memory reserved for sending
// (Stack.Reserve). It is a small value; copies name the same buffer, and the
// first Release (or Send) ends every copy's validity.
//
// A received Buf is read-only: its bytes are the stack's own receive memory
// (zero copy) or, where that could not be referenced, a pool buffer the data
// was copied into (Copied reports which). It stays valid and unchanged until
// Release, however long the application keeps it; while held it counts
// against its socket's association, which is how a slow reader closes the
// TCP window.
type Buf struct {
	h   *bufHandle
	gen uint32
}

// bufKind says where a Buf's bytes live.
type bufKind uint8

const (
	kindView     bufKind = iota + 1 // received, zero copy: a clone of the stack's view
	kindCopied                      // received, copied into a pool buffer
	kindReserved                    // reserved for sending, writable
	kindEmpty                       // received, an empty datagram: holds nothing
)

// bufHandle is the shared state behind Buf values. Handles are recycled;
// gen tells a stale Buf from the current use.
type bufHandle struct {
	gen   atomic.Uint32
	kind  bufKind
	view  *buffer.View // kindView
	pb    dmapool.Buf  // kindCopied, kindReserved
	data  []byte
	owner *assoc         // credited on release; nil for kindReserved
	from  netip.AddrPort // sender, for a received Buf
}

var handles = sync.Pool{New: func() any { return new(bufHandle) }}

func newBuf(kind bufKind, data []byte, view *buffer.View, pb dmapool.Buf, owner *assoc) Buf {
	h := handles.Get().(*bufHandle)
	h.kind, h.data, h.view, h.pb, h.owner = kind, data, view, pb, owner
	return Buf{h: h, gen: h.gen.Load()}
}

// valid reports whether b still names a live buffer.
func (b Buf) valid() bool { return b.h != nil && b.h.gen.Load() == b.gen }

// Valid returns nil for a live Buf, else an error wrapping ErrInvalidBuffer.
func (b Buf) Valid() error {
	if b.h == nil {
		return fmt.Errorf("%w: zero Buf", ErrInvalidBuffer)
	}
	if !b.valid() {
		return fmt.Errorf("%w: released or sent", ErrInvalidBuffer)
	}
	return nil
}

// Bytes returns the buffer's bytes, or nil if b is not valid. The slice is
// valid until Release; a received Buf's bytes must not be written.
func (b Buf) Bytes() []byte {
	if !b.valid() {
		return nil
	}
	return b.h.data
}

// Len returns the number of bytes, or 0 if b is not valid.
func (b Buf) Len() int { return len(b.Bytes()) }

// From returns the sender of a received Buf, by any receive call,
// synchronous or asynchronous (for UDP, the datagram's source; for TCP,
// the peer); the zero AddrPort for a Buf not received.
func (b Buf) From() netip.AddrPort {
	if !b.valid() {
		return netip.AddrPort{}
	}
	return b.h.from
}

// Copied reports whether a received Buf holds a copy (the stack's memory
// could not be referenced) rather than the stack's own memory.
func (b Buf) Copied() bool { return b.valid() && b.h.kind == kindCopied }

// Release gives the buffer back: the stack's memory to the stack, pool
// memory to the pool, and the bytes to the socket's association. A second
// Release, or one of a Buf already sent, returns ErrInvalidBuffer; so does
// a concurrent Release of a copy of the same Buf, for all but one caller.
// Reading a Buf's bytes while another goroutine releases it is a race, as
// with any memory freed under a reader.
func (b Buf) Release() error {
	h, ok := b.claim()
	if !ok {
		return b.Valid()
	}
	h.release()
	return nil
}

// claim takes exclusive ownership of b's handle away from every copy of b.
func (b Buf) claim() (*bufHandle, bool) {
	if b.h == nil || !b.h.gen.CompareAndSwap(b.gen, b.gen+1) {
		return nil, false
	}
	return b.h, true
}

// release frees h and credits its bytes back to the association that
// counted them (received Bufs); h must have been claimed.
func (h *bufHandle) release() {
	owner, n := h.owner, len(h.data)
	h.free()
	if owner != nil {
		owner.credit(n)
	}
}

// free releases what h holds and recycles it; h must have been claimed.
func (h *bufHandle) free() {
	switch h.kind {
	case kindView:
		h.view.Release()
	case kindCopied, kindReserved:
		h.pb.Release()
	}
	h.kind, h.view, h.pb, h.data, h.owner, h.from = 0, nil, dmapool.Buf{}, nil, nil, netip.AddrPort{}
	handles.Put(h)
}
