package ring

import "errors"

// Errors, checkable with errors.Is.
var (
	ErrInvalidConfig = errors.New("ring: invalid configuration")
	ErrMismatch      = errors.New("ring: peer refused: version or sizes differ")
	ErrHandshake     = errors.New("ring: malformed handshake")
	ErrClosed        = errors.New("ring: closed")
	ErrPeerGone      = errors.New("ring: peer gone")
	ErrTooBig        = errors.New("ring: frame larger than a ring frame")
	ErrNoFrame       = errors.New("ring: no free frame (other side is slow)")
)
