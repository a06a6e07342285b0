//go:build linux

package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/zcnet/zcnet/integration/procstat"
)

// rssEvery is how often an rssSampler reads the server's resident memory.
const rssEvery = 50 * time.Millisecond

// rssSampler samples a process's resident memory (VmRSS in
// /proc/PID/status) from start to stop, and keeps the first sample and
// the peak. The kernel's own high-water mark (VmHWM) covers the process's
// whole life, not one measurement, so the bench samples.
type rssSampler struct {
	pid   int
	stopc chan struct{}
	done  chan struct{}
	once  sync.Once

	// Written by the sampling goroutine, read after done closes.
	first, peak uint64
	samples     int
	err         error // the last failed read
}

// startRSSSampler takes a first sample now and then one every interval.
func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stopc: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.sample()
			case <-s.stopc:
				s.sample()
				return
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	rss, err := procstat.RSS(s.pid)
	if err != nil {
		s.err = err
		return
	}
	v := uint64(rss)
	if s.samples == 0 {
		s.first = v
	}
	s.samples++
	s.peak = max(s.peak, v)
}

// stop takes a last sample and returns the first sample and the peak, in
// bytes; an error if no sample could be read. It may be called again.
func (s *rssSampler) stop() (first, peak uint64, err error) {
	s.once.Do(func() { close(s.stopc) })
	<-s.done
	if s.samples == 0 {
		return 0, 0, fmt.Errorf("%w: resident memory of PID %d: %v", errMeasure, s.pid, s.err)
	}
	return s.first, s.peak, nil
}
