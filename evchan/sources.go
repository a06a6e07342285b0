package evchan

// Sources bound to a channel (timers, signal watches, fd watches) register
// here so that Close stops them: a source must not outlive its channel,
// and one that runs a goroutine must have ended it when Close returns.

// stopper is a source that Close stops.
type stopper interface {
	// stopForClose stops the source. It may block until the source's
	// goroutine has exited, and must not call back into Close.
	stopForClose()
}

// addSource binds s to the channel, or returns ErrClosed.
func (c *Channel) addSource(s stopper) error {
	c.srcMu.Lock()
	defer c.srcMu.Unlock()
	if c.sources == nil {
		return ErrClosed
	}
	c.sources[s] = struct{}{}
	return nil
}

// removeSource unbinds s (a source stopped by its owner).
func (c *Channel) removeSource(s stopper) {
	c.srcMu.Lock()
	delete(c.sources, s)
	c.srcMu.Unlock()
}

// stopSources stops every bound source; called once, by Close.
func (c *Channel) stopSources() {
	c.srcMu.Lock()
	srcs := c.sources
	c.sources = nil
	c.srcMu.Unlock()
	for s := range srcs {
		s.stopForClose()
	}
}
