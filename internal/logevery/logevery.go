// Package logevery keeps a repeated log line (a failure retried every
// second, a flood of refused requests) to at most one per interval, each
// saying how many were held back since the previous one.
package logevery

import (
	"sync"
	"time"
)

// Limiter lets one event through per Every and counts the others. Its zero
// value with Every set is ready; it is safe for concurrent use.
type Limiter struct {
	Every time.Duration

	mu   sync.Mutex
	last time.Time
	held int
}

// Allow reports whether to log the event at now, and if so how many events
// were held back since the last one logged.
func (l *Limiter) Allow(now time.Time) (held int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.Every {
		l.held++
		return 0, false
	}
	held, l.last, l.held = l.held, now, 0
	return held, true
}
