package streamer

import (
	"container/list"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/tcs"
)

// FeedConfig says how an Applier hands its invalidations and heartbeats to
// its tcs.Broadcaster. The zero value means every default; a zero or
// negative field means its default, except HeartbeatInterval.
type FeedConfig struct {
	// Timeout bounds each Broadcast call. Default DefaultFeedTimeout.
	Timeout time.Duration
	// MaxAge is how long an invalidation is retried: one that fails goes
	// back into the queue (merging with a newer one of its tenant) until it
	// is sent or the newest change it carries was queued MaxAge ago; then
	// it is given up (counted as expired). Every cache entry it would have
	// dropped was filled before that change was applied, so once the
	// caches' TTL has passed none is left: MaxAge should be at least the
	// lookup servers' --cache-ttl. Default DefaultFeedMaxAge.
	MaxAge time.Duration
	// Backoff is how long a sender waits after a failed Broadcast before
	// it takes the next invalidation; it doubles with each further failure
	// in a row, up to 1 s, each wait jittered down by up to half, and a
	// success resets it. The cap is low so that once the endpoint heals
	// what is pending goes out within about a second. Default
	// DefaultFeedBackoff.
	Backoff time.Duration
	// MaxPending bounds the queue: how many invalidations (one per tenant,
	// and at most one heartbeat) may wait to be broadcast. When it is full,
	// a new tenant's invalidation evicts the oldest pending one, and a
	// heartbeat is not queued. Default DefaultFeedMaxPending.
	MaxPending int
	// Senders is how many goroutines call Broadcast at once. Default
	// DefaultFeedSenders.
	Senders int
	// HeartbeatInterval is how often a heartbeat (tcs.Invalidation's
	// Heartbeat) is queued while the applier runs; the first goes out when
	// Run starts. Zero means DefaultHeartbeatInterval; negative sends none.
	HeartbeatInterval time.Duration
	// DrainTimeout is how long Run keeps sending what is queued after the
	// stream consumer stopped; what is still queued or in flight then is
	// abandoned (counted as unsent). Default Timeout.
	DrainTimeout time.Duration
}

// FeedConfig defaults.
const (
	// DefaultFeedTimeout is long enough for an SNS Publish with the SDK's
	// retries, short enough that a frozen endpoint costs a sender seconds.
	DefaultFeedTimeout = 2 * time.Second
	// DefaultFeedMaxAge is the lookup servers' default cache TTL (tcs
	// --cache-ttl): after it, every cache has let go of what an
	// invalidation would drop.
	DefaultFeedMaxAge  = 30 * time.Second
	DefaultFeedBackoff = 100 * time.Millisecond
	// DefaultFeedMaxPending holds every tenant of a large region twice
	// over in about 20 MB (an invalidation is a tenant id and its
	// hostnames); more is only memory spent on what the TTL fixes anyway.
	DefaultFeedMaxPending = 100_000
	// DefaultFeedSenders keeps up with the embedded hub (which never
	// blocks) with one sender, and with SNS (tens of ms per Publish) at a
	// few hundred invalidations per second.
	DefaultFeedSenders = 4
	// DefaultHeartbeatInterval: lookup servers treat a feed silent for a
	// few intervals as down, so this bounds how soon they notice.
	DefaultHeartbeatInterval = 5 * time.Second

	maxFeedBackoff = time.Second
	// feedLogEvery is the least time between two warnings of one kind
	// (failed, expired, dropped): an outage is a few lines, not one per
	// event.
	feedLogEvery = 10 * time.Second
)

func (c FeedConfig) withDefaults() FeedConfig {
	if c.Timeout <= 0 {
		c.Timeout = DefaultFeedTimeout
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultFeedMaxAge
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultFeedBackoff
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultFeedMaxPending
	}
	if c.Senders <= 0 {
		c.Senders = DefaultFeedSenders
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = c.Timeout
	}
	return c
}

// feed is the Applier's side of the invalidation feed: a bounded queue,
// coalesced per tenant, drained by sender goroutines, so that applying and
// checkpointing never wait on the Broadcaster (a frozen SNS endpoint once
// stalled replication in every region this way). A failed broadcast goes
// back into the queue and is retried until it is MaxAge old. Delivery is
// still best effort, as tcs.Broadcaster says: whatever expires, is evicted
// or is abandoned leaves caches converging by their TTL (invariant 5).
type feed struct {
	cfg FeedConfig
	bc  tcs.Broadcaster
	now func() time.Time
	log *slog.Logger
	q   queue

	outcomes struct{ sent, expired, dropped, coalesced, unsent prometheus.Counter }
	errors   prometheus.Counter
	lastOK   prometheus.Gauge

	failedLog, expiredLog, droppedLog logevery.Limiter
	mu                                sync.Mutex
	failing                           bool // a failure since the last success, for the "recovered" log
}

func newFeed(cfg FeedConfig, bc tcs.Broadcaster, now func() time.Time, log *slog.Logger, labels prometheus.Labels) (*feed, []prometheus.Collector) {
	f := &feed{cfg: cfg.withDefaults(), bc: bc, now: now, log: log}
	f.q.init(f.cfg.MaxPending)
	f.failedLog.Every, f.expiredLog.Every, f.droppedLog.Every = feedLogEvery, feedLogEvery, feedLogEvery
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "tcs_apply_broadcasts_total",
		Help:        "Invalidations (heartbeats included) handed to the applier's broadcast queue, by outcome: sent; expired (given up: retried until the newest change it carries was --feed-max-age old); dropped (evicted from, or a heartbeat not let into, a full queue); coalesced (merged into a pending invalidation of the same tenant, or a heartbeat while one is pending); unsent (still queued or in flight when the applier stopped).",
		ConstLabels: labels,
	}, []string{"outcome"})
	f.outcomes.sent = outcomes.WithLabelValues("sent")
	f.outcomes.expired = outcomes.WithLabelValues("expired")
	f.outcomes.dropped = outcomes.WithLabelValues("dropped")
	f.outcomes.coalesced = outcomes.WithLabelValues("coalesced")
	f.outcomes.unsent = outcomes.WithLabelValues("unsent")
	f.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_apply_broadcast_errors_total", Help: "Broadcast calls that failed or timed out (each attempt counts; a failed invalidation is queued again).", ConstLabels: labels,
	})
	f.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_apply_broadcast_last_success_timestamp_seconds", Help: "When a broadcast (an invalidation or a heartbeat) last succeeded (Unix seconds); 0 if none has yet.", ConstLabels: labels,
	})
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_apply_broadcast_pending", Help: "Invalidations (one per tenant, and at most one heartbeat) waiting in the applier's broadcast queue, not counting those in flight.", ConstLabels: labels,
	}, func() float64 { return float64(f.q.len()) })
	oldest := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tcs_apply_broadcast_oldest_pending_seconds", Help: "How long the oldest invalidation in the applier's broadcast queue has waited (since it was first queued, retries included); 0 when it is empty.", ConstLabels: labels,
	}, func() float64 {
		since, ok := f.q.oldest()
		if !ok {
			return 0
		}
		return f.now().Sub(since).Seconds()
	})
	return f, []prometheus.Collector{outcomes, f.errors, f.lastOK, pending, oldest}
}

// enqueue queues inv for the senders without waiting for anything.
func (f *feed) enqueue(inv tcs.Invalidation) {
	res, evicted := f.q.push(inv, f.now())
	switch res {
	case pushCoalesced:
		f.outcomes.coalesced.Inc()
	case pushEvicted, pushRefused:
		f.outcomes.dropped.Inc()
		if res == pushRefused {
			evicted = inv
		}
		if n, ok := f.droppedLog.Allow(f.now()); ok {
			f.log.Warn("invalidation broadcast queue full: dropping the oldest pending invalidations (and heartbeats); caches converge by their TTL",
				"max_pending", f.cfg.MaxPending, "tenant", evicted.TenantID, "version", evicted.Version, "heartbeat", evicted.Heartbeat(), "dropped_since_last_warning", n)
		}
	}
}

// start starts the senders and the heartbeat. stop ends the heartbeat,
// lets the senders send what is queued for up to DrainTimeout, then cancels
// what is in flight, waits for the senders (a Broadcaster returns when its
// context ends) and counts what is left as unsent.
func (f *feed) start(ctx context.Context) (stop func()) {
	f.q.open()
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	var senders sync.WaitGroup
	for range f.cfg.Senders {
		senders.Go(func() { f.send(sendCtx) })
	}
	hbCtx, cancelHB := context.WithCancel(sendCtx)
	var hb sync.WaitGroup
	if f.cfg.HeartbeatInterval > 0 {
		hb.Go(func() { f.heartbeats(hbCtx) })
	}
	return func() {
		cancelHB()
		hb.Wait()
		f.q.close()
		drained := make(chan struct{})
		go func() {
			senders.Wait()
			close(drained)
		}()
		timer := time.NewTimer(f.cfg.DrainTimeout)
		select {
		case <-drained:
		case <-timer.C:
			cancelSend()
			<-drained
		}
		timer.Stop()
		cancelSend()
		if n := f.q.clear(); n > 0 {
			f.outcomes.unsent.Add(float64(n))
			f.log.Warn("applier stopped with invalidations still queued, not broadcast; caches converge by their TTL", "queued", n)
		}
	}
}

// heartbeats queues a heartbeat now and every HeartbeatInterval. A
// heartbeat already pending stays as it is (its CommittedAt older than
// now): senders take it only after every invalidation queued before it, so
// when it arrives it tells the lookup servers both that the feed works and,
// by its age, how far behind it is.
func (f *feed) heartbeats(ctx context.Context) {
	t := time.NewTicker(f.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		f.enqueue(tcs.Invalidation{CommittedAt: f.now()})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// send is one sender: it broadcasts what it takes from the queue until the
// queue is closed and empty, or ctx ends. After a failed Broadcast it waits
// out its backoff before it takes the next invalidation, so that a sender
// tries about once a second (or once per Timeout, if the endpoint hangs)
// while the endpoint is down.
func (f *feed) send(ctx context.Context) {
	wait := backoff.New(f.cfg.Backoff, maxFeedBackoff, backoff.UpTo)
	for {
		p, ok := f.take(ctx)
		if !ok {
			return
		}
		err := f.broadcast(ctx, p)
		f.q.done()
		if err == nil {
			wait.Reset()
			continue
		}
		if wait.Wait(ctx) != nil {
			return
		}
	}
}

// take is q.take, giving up (as expired) what it takes that is MaxAge old.
func (f *feed) take(ctx context.Context) (queued, bool) {
	for {
		p, ok := f.q.take(ctx)
		if !ok || !f.expired(p) {
			return p, ok
		}
		f.giveUp(p, nil)
		f.q.done()
	}
}

// expired reports whether p is too old to be worth sending: the newest
// change it carries was queued MaxAge ago.
func (f *feed) expired(p queued) bool { return f.now().Sub(p.latest) >= f.cfg.MaxAge }

// giveUp counts p as expired and logs it, rate-limited; err is its last
// broadcast's error, if any.
func (f *feed) giveUp(p queued, err error) {
	f.outcomes.expired.Inc()
	if n, ok := f.expiredLog.Allow(f.now()); ok {
		f.log.Warn("giving up an invalidation not broadcast within --feed-max-age; caches converge by their TTL", "tenant", p.inv.TenantID, "version", p.inv.Version,
			"heartbeat", p.inv.Heartbeat(), "queued_for", f.now().Sub(p.since), "max_age", f.cfg.MaxAge, "last_err", err, "expired_since_last_warning", n)
	}
}

// broadcast tries p once, under Timeout. If that fails, p goes back into
// the queue, unless it has expired or the feed is stopping.
func (f *feed) broadcast(ctx context.Context, p queued) error {
	actx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	err := f.bc.Broadcast(actx, p.inv)
	cancel()
	if err == nil {
		f.outcomes.sent.Inc()
		f.lastOK.Set(float64(f.now().UnixNano()) / 1e9)
		f.recovered()
		return nil
	}
	f.errors.Inc()
	if ctx.Err() != nil {
		f.outcomes.unsent.Inc()
		return err
	}
	f.mu.Lock()
	f.failing = true
	f.mu.Unlock()
	if f.expired(p) {
		f.giveUp(p, err)
		return err
	}
	if n, ok := f.failedLog.Allow(f.now()); ok {
		f.log.Warn("broadcast invalidation failed; queued again, retrying", "tenant", p.inv.TenantID, "version", p.inv.Version,
			"heartbeat", p.inv.Heartbeat(), "queued_for", f.now().Sub(p.since), "err", err, "failed_since_last_warning", n)
	}
	switch f.q.requeue(p) {
	case pushCoalesced:
		f.outcomes.coalesced.Inc()
	case pushRefused:
		f.outcomes.dropped.Inc()
	}
	return err
}

func (f *feed) recovered() {
	f.mu.Lock()
	was := f.failing
	f.failing = false
	f.mu.Unlock()
	if was {
		f.log.Info("broadcasts succeed again")
	}
}

// coalesce merges a newer invalidation of a tenant into one still pending.
// The result carries the higher version, the union of the hostnames and
// the newer CommittedAt. That is safe because a receiver applies an
// invalidation by version (the Invalidation comment in tcs.proto): for each
// hostname named, drop its entry unless it is the tenant at that version or
// newer; drop the tenant's other entries below that version. The merged
// invalidation drops everything either one would have: the hostnames of
// either, and the tenant's entries below the higher version, which includes
// those below the lower. What it drops beyond that (a hostname only the
// older one named, held by the tenant at a version between the two) is an
// entry that is out of date anyway, since the replica already holds the
// higher version, and dropping more than needed only costs a cache miss.
// A receiver remembering the merged invalidation (against stale fills,
// invariant 4) likewise refuses at least what it would have refused for
// either. CommittedAt only feeds the lookup servers' lag figure, and the
// merged invalidation announces the newer change; it carries the trace
// context of the higher version's change (if that one was traced).
//
// Heartbeats do not merge: the one pending stays, with its older
// CommittedAt (see feed.heartbeats).
func coalesce(pending, newer tcs.Invalidation) tcs.Invalidation {
	if pending.Heartbeat() {
		return pending
	}
	out := pending
	out.Version = max(pending.Version, newer.Version)
	if !newer.Trace.IsZero() && newer.Version >= pending.Version {
		out.Trace = newer.Trace // the invalidate span joins the newest change's trace
	}
	if newer.CommittedAt.After(pending.CommittedAt) {
		out.CommittedAt = newer.CommittedAt
	}
	if !slices.ContainsFunc(newer.Hostnames, func(h string) bool { return !slices.Contains(pending.Hostnames, h) }) {
		return out // the usual case: a tenant's hostnames did not change
	}
	hs := make([]string, 0, len(pending.Hostnames)+len(newer.Hostnames))
	hs = append(append(hs, pending.Hostnames...), newer.Hostnames...)
	slices.Sort(hs)
	out.Hostnames = slices.Compact(hs)
	return out
}

type pushResult int

const (
	pushQueued    pushResult = iota
	pushCoalesced            // merged into the tenant's pending invalidation
	pushEvicted              // queued; the oldest pending one was dropped
	pushRefused              // a heartbeat, not queued: the queue is full
)

type queued struct {
	inv    tcs.Invalidation
	since  time.Time // first queued: coalescing keeps a tenant's place
	latest time.Time // the newest change merged in was queued: its age is the entry's for MaxAge
}

// queue is the feed's FIFO of pending invalidations, at most one per tenant
// (the heartbeat's key is its empty TenantID, which no tenant id is).
type queue struct {
	max   int
	ready chan struct{} // holds a token when work may be waiting, or the queue closed

	mu       sync.Mutex
	items    list.List // of *queued, oldest first
	byTenant map[string]*list.Element
	inFlight int
	closed   bool
}

func (q *queue) init(max int) {
	q.max = max
	q.ready = make(chan struct{}, 1)
	q.byTenant = make(map[string]*list.Element)
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// push queues inv, merging it into its tenant's pending invalidation if
// there is one. A full queue evicts its head to make room, and returns it:
// of all pending invalidations, the head (the oldest, or the longest since
// a failed try) has let its entries
// be out of date longest, so its TTL is the nearest to ending it anyway,
// while dropping the newest would leave the freshest change to wait out a
// whole TTL. A heartbeat is refused by a full queue instead: a feed that
// far behind should look silent to the lookup servers.
func (q *queue) push(inv tcs.Invalidation, now time.Time) (res pushResult, evicted tcs.Invalidation) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.byTenant[inv.TenantID]; ok {
		p := e.Value.(*queued)
		p.inv = coalesce(p.inv, inv)
		if !inv.Heartbeat() {
			p.latest = now
		}
		return pushCoalesced, tcs.Invalidation{}
	}
	res = pushQueued
	if q.items.Len() >= q.max {
		if inv.Heartbeat() {
			return pushRefused, tcs.Invalidation{}
		}
		evicted = q.items.Remove(q.items.Front()).(*queued).inv
		delete(q.byTenant, evicted.TenantID)
		res = pushEvicted
	}
	q.byTenant[inv.TenantID] = q.items.PushBack(&queued{inv: inv, since: now, latest: now})
	q.signal()
	return res, evicted
}

// requeue puts back p, taken and failed, at the tail of the queue, so that
// one invalidation that keeps failing (a message the endpoint rejects)
// does not hold up the others. If its tenant has an invalidation pending
// meanwhile, p merges into that one instead (as the older of the two), in
// that one's place. A full queue refuses p: it has waited longest of all,
// and a full queue drops its oldest first anyway.
func (q *queue) requeue(p queued) pushResult {
	q.mu.Lock()
	defer q.mu.Unlock()
	if e, ok := q.byTenant[p.inv.TenantID]; ok {
		n := e.Value.(*queued)
		n.inv = coalesce(p.inv, n.inv)
		n.since = p.since
		n.latest = maxTime(n.latest, p.latest)
		return pushCoalesced
	}
	if q.items.Len() >= q.max {
		return pushRefused
	}
	q.byTenant[p.inv.TenantID] = q.items.PushBack(&p)
	q.signal()
	return pushQueued
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// take returns the oldest pending invalidation, waiting for one; it
// reports false once the queue is closed and empty, or ctx ended. The
// caller calls done when it has dealt with it.
func (q *queue) take(ctx context.Context) (queued, bool) {
	for {
		if ctx.Err() != nil {
			return queued{}, false
		}
		q.mu.Lock()
		if e := q.items.Front(); e != nil {
			p := q.items.Remove(e).(*queued)
			delete(q.byTenant, p.inv.TenantID)
			q.inFlight++
			more := q.items.Len() > 0
			q.mu.Unlock()
			if more {
				q.signal() // for the next idle sender
			}
			return *p, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			q.signal() // every sender must see it
			return queued{}, false
		}
		select {
		case <-ctx.Done():
		case <-q.ready:
		}
	}
}

func (q *queue) done() {
	q.mu.Lock()
	q.inFlight--
	q.mu.Unlock()
}

func (q *queue) open() {
	q.mu.Lock()
	q.closed = false
	q.mu.Unlock()
	// A stale token from the last close only makes a sender look once.
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// clear empties the queue and returns how many it held.
func (q *queue) clear() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.items.Len()
	q.items.Init()
	clear(q.byTenant)
	return n
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items.Len()
}

// idle reports whether nothing is pending or in flight.
func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items.Len() == 0 && q.inFlight == 0
}

// oldest returns when the longest-waiting pending invalidation was first
// queued. Retried ones go back to the tail, so it looks at them all (a
// scrape of a full default queue costs about a millisecond).
func (q *queue) oldest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var since time.Time
	for e := q.items.Front(); e != nil; e = e.Next() {
		if p := e.Value.(*queued); since.IsZero() || p.since.Before(since) {
			since = p.since
		}
	}
	return since, !since.IsZero()
}
