//go:build !linux

package evchan

// eventfd exists only on Linux; FD reports ErrUnsupported elsewhere.

func newEventFD() (int, error) { return -1, ErrUnsupported }
func eventFDRaise(int)         {}
func eventFDLower(int)         {}
func closeEventFD(int)         {}
