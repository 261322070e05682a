// Package backoff is capped exponential backoff with jitter, and a sleep
// that ends with its context: what every retry loop of TCS waits with.
//
// A Backoff starts at its minimum delay and doubles it after each wait, up
// to its maximum. Each wait is drawn at random around the current delay
// (see Spread), so that clients that failed together do not retry in lock
// step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Spread is how a wait is drawn from the current delay d.
type Spread int

const (
	// Around draws from [d/2, 3d/2): on average d.
	Around Spread = iota
	// UpTo draws from [d/2, d]: never longer than d.
	UpTo
)

// Backoff is one retry loop's delays. Its zero value is not usable; it is
// not safe for concurrent use.
type Backoff struct {
	min, max, next time.Duration
	spread         Spread
}

// New returns a Backoff from min to max (max below min counts as min).
// A min of 0 or less is one millisecond.
func New(min, max time.Duration, spread Spread) *Backoff {
	if min <= 0 {
		min = time.Millisecond
	}
	return &Backoff{min: min, max: max, next: min, spread: spread}
}

// Next returns the next wait and doubles the delay, up to the maximum.
func (b *Backoff) Next() time.Duration {
	d := b.next
	var w time.Duration
	switch b.spread {
	case UpTo:
		w = d/2 + rand.N(d/2+1)
	default:
		w = d/2 + rand.N(d)
	}
	b.next = max(min(2*d, b.max), b.min)
	return w
}

// Current returns the delay the next wait is drawn around.
func (b *Backoff) Current() time.Duration { return b.next }

// Reset starts the delays again from the minimum (after a success).
func (b *Backoff) Reset() { b.next = b.min }

// Wait sleeps for Next, or until ctx ends (then it returns ctx.Err()).
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep sleeps for d, or until ctx ends (then it returns ctx.Err()). A d of
// 0 or less returns at once, with ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
