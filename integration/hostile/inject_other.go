//go:build !linux

package hostile

import "errors"

// ErrUnsupported: injecting frames needs Linux's AF_PACKET sockets.
var ErrUnsupported = errors.New("hostile: frame injection needs Linux")

// Injector is unavailable on this platform.
type Injector struct{}

// VnetHdr mirrors the Linux type so callers compile.
type VnetHdr struct {
	Flags, GSOType                         uint8
	HdrLen, GSOSize, CsumStart, CsumOffset uint16
}

// NewInjector returns ErrUnsupported.
func NewInjector(string, bool) (*Injector, error) { return nil, ErrUnsupported }

// Send returns ErrUnsupported.
func (*Injector) Send(...[]byte) (int, error) { return 0, ErrUnsupported }

// SendVnet returns ErrUnsupported.
func (*Injector) SendVnet(VnetHdr, []byte) error { return ErrUnsupported }

// Close does nothing.
func (*Injector) Close() error { return nil }
