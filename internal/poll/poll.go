// Package poll is the one way rcluster waits: exponential backoff between
// polls, bounded by a context. No fixed sleeps.
package poll

import (
	"context"
	"time"
)

// Backoff doubles its delay from Min up to Max between waits. The zero
// value waits 5ms, 10ms, ... up to 100ms.
type Backoff struct {
	Min, Max time.Duration
	d        time.Duration
}

// Wait sleeps for the next delay, or returns ctx.Err() when ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error {
	if b.d == 0 {
		b.d = b.Min
		if b.d <= 0 {
			b.d = 5 * time.Millisecond
		}
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	maxD := b.Max
	if maxD <= 0 {
		maxD = 100 * time.Millisecond
	}
	b.d = min(2*b.d, maxD)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
