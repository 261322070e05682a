package client

import "time"

// Hooks are called by the client as it works, so that a caller can count
// what it does with any metrics library (Prometheus counters,
// OpenTelemetry instruments) without this package depending on one. A nil
// func is not called. Hooks run on the lookup's goroutine: they must be
// cheap and safe for concurrent use, and Hit and Miss must not allocate if
// cache hits are to stay allocation-free.
type Hooks struct {
	// Hit: a lookup answered from the cache, fresh (negative answers
	// included).
	Hit func()
	// Miss: a lookup that had to ask a region (collapsed misses count once
	// each).
	Miss func()
	// StaleServe: every region failed and an expired cached answer no older
	// than max-stale was served instead.
	StaleServe func()
	// Hedge: region did not answer within the hedge delay, so the lookup
	// was also sent to the next region.
	Hedge func(region string)
	// Failover: a lookup moved past region because it failed or its circuit
	// breaker was open.
	Failover func(region string)
	// BreakerOpen: region failed too often in a row and is skipped for a
	// while.
	BreakerOpen func(region string)
	// RPC: one lookup RPC to region ended after d, with err (nil on
	// success, including NOT_FOUND answers).
	RPC func(region string, d time.Duration, err error)
	// WatchState: the invalidation stream on region came up (Resync
	// received) or went down; while it is down the cache's TTL is shortened.
	WatchState func(region string, up bool)
	// Invalidation: an invalidation arrived over Watch.
	Invalidation func()
	// Behind: region answered with an older version of a tenant than the
	// client had already returned, or than a LookupAtLeast asked for (its
	// replica is behind), so the answer was set aside and the next region
	// asked. For a BatchLookup, some of the answers.
	Behind func(region string)
	// Remembered: a lookup was answered with the newest version of its
	// tenant the client had returned before, because the regions that
	// answered were behind it (Meta.Remembered).
	Remembered func()
}

func (h *Hooks) fill() {
	if h.Hit == nil {
		h.Hit = func() {}
	}
	if h.Miss == nil {
		h.Miss = func() {}
	}
	if h.StaleServe == nil {
		h.StaleServe = func() {}
	}
	if h.Hedge == nil {
		h.Hedge = func(string) {}
	}
	if h.Failover == nil {
		h.Failover = func(string) {}
	}
	if h.BreakerOpen == nil {
		h.BreakerOpen = func(string) {}
	}
	if h.RPC == nil {
		h.RPC = func(string, time.Duration, error) {}
	}
	if h.WatchState == nil {
		h.WatchState = func(string, bool) {}
	}
	if h.Invalidation == nil {
		h.Invalidation = func() {}
	}
	if h.Behind == nil {
		h.Behind = func(string) {}
	}
	if h.Remembered == nil {
		h.Remembered = func() {}
	}
}
