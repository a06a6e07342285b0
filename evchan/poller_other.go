//go:build !linux

package evchan

// Outside Linux there is no epoll poller: WatchFD and PosixMQ.Notify
// report ErrUnsupported.

type pollWatch struct{}

type poller struct{}

var procPoller poller

func (*poller) add(int, FDEvents, bool, func(FDEvents)) (*pollWatch, error) {
	return nil, ErrUnsupported
}

func (*poller) rearm(*pollWatch, FDEvents, bool) error { return ErrUnsupported }

func (*poller) remove(*pollWatch) {}
