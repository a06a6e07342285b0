//go:build !linux

package tap

import (
	"syscall"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The link reads and writes only on Linux; these keep the package building
// elsewhere (Open and OpenFD fail there with ErrUnsupported).

func readv(fd int, iov []unix.Iovec) (int, syscall.Errno)  { return 0, syscall.ENOSYS }
func writev(fd int, iov []unix.Iovec) (int, syscall.Errno) { return 0, syscall.ENOSYS }

func setIovec(iov *unix.Iovec, b []byte) {
	iov.Base = &b[0]
	iov.SetLen(len(b))
}

const iovMax = 1024

func translateErrno(e syscall.Errno) tcpip.Error { return &tcpip.ErrNotSupported{} }
