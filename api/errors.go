package api

import (
	"errors"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Errors returned by this package, wrapped with context; test with errors.Is.
// Errors of the net.Conn adapters follow package net instead: a *net.OpError
// whose cause is a syscall.Errno (ECONNREFUSED, ECONNRESET, …), net.ErrClosed
// or os.ErrDeadlineExceeded, so code written against net keeps working.
var (
	// ErrWouldBlock reports that a non-blocking operation found nothing to do.
	ErrWouldBlock = errors.New("api: operation would block")
	// ErrAddress reports an address the API cannot use (a host name, a
	// missing port, a family the network does not take).
	ErrAddress = errors.New("api: bad address")
	// ErrNetwork reports a network name other than tcp, tcp4, tcp6, udp,
	// udp4 or udp6.
	ErrNetwork = errors.New("api: unknown network")
)

// Errno translates a gVisor error into the errno Linux would report for the
// same condition, so callers can test errors.Is(err, syscall.ECONNREFUSED)
// as they would with package net. gVisor's own gonet adapter formats these
// as strings, which loses them.
func Errno(err tcpip.Error) syscall.Errno {
	switch err.(type) {
	case nil:
		return 0
	case *tcpip.ErrWouldBlock:
		return syscall.EWOULDBLOCK
	case *tcpip.ErrConnectionRefused:
		return syscall.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted, *tcpip.ErrAborted:
		return syscall.ECONNABORTED
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	case *tcpip.ErrHostUnreachable:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrHostDown:
		return syscall.EHOSTDOWN
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		return syscall.ENETUNREACH
	case *tcpip.ErrPortInUse, *tcpip.ErrAlreadyBound:
		return syscall.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return syscall.EADDRNOTAVAIL
	case *tcpip.ErrNoPortAvailable:
		return syscall.EAGAIN // Linux: connect(2) with no ephemeral port left
	case *tcpip.ErrClosedForSend:
		return syscall.EPIPE
	case *tcpip.ErrClosedForReceive:
		return syscall.ESHUTDOWN
	case *tcpip.ErrNotConnected:
		return syscall.ENOTCONN
	case *tcpip.ErrAlreadyConnected:
		return syscall.EISCONN
	case *tcpip.ErrAlreadyConnecting:
		return syscall.EALREADY
	case *tcpip.ErrConnectStarted:
		return syscall.EINPROGRESS
	case *tcpip.ErrDestinationRequired:
		return syscall.EDESTADDRREQ
	case *tcpip.ErrMessageTooLong:
		return syscall.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return syscall.ENOBUFS
	case *tcpip.ErrAddressFamilyNotSupported:
		return syscall.EAFNOSUPPORT
	case *tcpip.ErrBroadcastDisabled, *tcpip.ErrNotPermitted:
		return syscall.EACCES
	case *tcpip.ErrNotSupported, *tcpip.ErrQueueSizeNotSupported:
		return syscall.EOPNOTSUPP
	case *tcpip.ErrUnknownProtocol:
		return syscall.EPROTONOSUPPORT
	case *tcpip.ErrUnknownProtocolOption:
		return syscall.ENOPROTOOPT
	case *tcpip.ErrBadAddress:
		return syscall.EFAULT
	case *tcpip.ErrUnknownDevice, *tcpip.ErrUnknownNICID, *tcpip.ErrInvalidNICID:
		return syscall.ENODEV
	case *tcpip.ErrDuplicateAddress:
		return syscall.EEXIST
	case *tcpip.ErrEndpointBusy:
		return syscall.EBUSY
	default:
		// ErrInvalidEndpointState, ErrInvalidOptionValue, ErrBadBuffer,
		// ErrMalformedHeader, ErrInvalidPortRange and anything newer.
		return syscall.EINVAL
	}
}
