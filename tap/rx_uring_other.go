//go:build !linux

package tap

import "errors"

// rxRing is the batched receive of rx_uring_linux.go, which needs Linux's
// io_uring; elsewhere every queue reads with readv.
type rxRing struct{ off bool }

var newRxRingFn = func() (*rxRing, error) { return nil, errors.New("io_uring needs Linux") }

func (rr *rxRing) close()        {}
func (rr *rxRing) releaseSlots() {}

func (q *queue) readRing(fd uintptr) bool { return q.readBatch(fd) }

// rxBatchMax is the batch bound of the Linux implementation, for Info.
const rxBatchMax = 64
