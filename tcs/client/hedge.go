package client

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the adaptive hedge delay.
const (
	minHedgeDelay = 2 * time.Millisecond
	maxHedgeDelay = 250 * time.Millisecond
	hedgeSamples  = 256
)

// hedger tracks the latency of successful lookups to the region asked
// first and, unless the delay was set with WithHedgeDelay, hedges after its
// p95 (between 2 ms and 250 ms; DefaultHedgeDelay until 64 lookups are
// measured). Hedging after the p95 sends about 5% more RPCs in exchange for
// cutting the slowest 5% short.
type hedger struct {
	fixed bool
	delay atomic.Int64 // nanoseconds

	mu      sync.Mutex
	samples []time.Duration // ring
	next    int
	count   int
}

func newHedger(delay time.Duration, fixed bool) *hedger {
	h := &hedger{fixed: fixed, samples: make([]time.Duration, 0, hedgeSamples)}
	h.delay.Store(int64(delay))
	return h
}

func (h *hedger) get() time.Duration { return time.Duration(h.delay.Load()) }

// observe records the latency of a successful lookup to the first region.
func (h *hedger) observe(d time.Duration) {
	if h.fixed {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < hedgeSamples {
		h.samples = append(h.samples, d)
	} else {
		h.samples[h.next] = d
		h.next = (h.next + 1) % hedgeSamples
	}
	h.count++
	if h.count%64 != 0 {
		return
	}
	s := slices.Clone(h.samples)
	slices.Sort(s)
	p95 := s[len(s)*95/100]
	h.delay.Store(int64(min(max(p95, minHedgeDelay), maxHedgeDelay)))
}
