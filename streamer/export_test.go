package streamer

import "context"

// StartFeed starts a's broadcast senders and heartbeat as Run does, for
// tests that call HandleBatch themselves; stop drains and ends them.
func StartFeed(ctx context.Context, a *Applier) (stop func()) { return a.feed.start(ctx) }

// FeedIdle reports whether a's broadcast queue is empty, with nothing in
// flight.
func FeedIdle(a *Applier) bool { return a.feed.q.idle() }
