package dmapool

import (
	"context"
	"errors"
	"fmt"
)

// ReserveContext is Reserve that waits, when the pool is exhausted, for a
// Release or a Grow, until ctx is done. It then fails with an error that
// wraps both ErrExhausted and the context's error.
//
// Waiting costs releasers nothing until someone waits: Release reads one
// counter, and only when it is non-zero wakes the waiters (all of them; each
// retries).
func (p *Pool) ReserveContext(ctx context.Context, n int) (Buf, error) {
	b, err := p.reserve(n)
	if err == nil || !errors.Is(err, ErrExhausted) {
		return b, err
	}
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	for {
		// Take the channel before retrying: a release after the retry
		// closes this channel, so its wake-up cannot be lost.
		p.wakeMu.Lock()
		ch := p.wakeCh
		p.wakeMu.Unlock()
		b, err = p.reserve(n)
		if err == nil || !errors.Is(err, ErrExhausted) {
			return b, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			p.failed.Add(1)
			return Buf{}, fmt.Errorf("dmapool: reserve %d bytes: %w, gave up waiting: %w", n, ErrExhausted, context.Cause(ctx))
		}
	}
}
