package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/internal/spanctx"
	"github.com/tcs-dev/tcs/tcs"
)

// ApplierConfig wires an Applier for one region.
type ApplierConfig struct {
	Region  string
	Stream  Stream
	Replica tcs.Replica
	// Broadcaster receives an invalidation after each apply that changed
	// something, and a heartbeat every Feed.HeartbeatInterval, from the
	// Applier's sender goroutines (see Feed); nil broadcasts nothing
	// (caches then rely on their TTL). Its Broadcast must return when its
	// context ends.
	Broadcaster tcs.Broadcaster
	// Feed configures the queue and senders between the applies and the
	// Broadcaster. The zero value means the defaults.
	Feed   FeedConfig
	Logger *slog.Logger
	// Registerer receives the applier's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of the lag metric, the heartbeats' CommittedAt and
	// the broadcast queue's age; nil means time.Now.
	Now func() time.Time
	// Concurrency is how many tenants' events of one batch are applied at
	// once to a replica that is not a tcs.BatchApplier (each tenant's
	// events stay in order; different tenants' events are independent, as
	// they are across shards). Zero means DefaultApplyConcurrency; 1
	// applies one event at a time.
	Concurrency int
	// TracerProvider makes the "apply" span of each traced event (one that
	// carries a trace context): the child of the publisher's span, from the
	// decoding of its batch until the batch is applied, with the region,
	// tenant, version and whether it changed the replica. Its invalidation
	// carries the apply span's context, so that each lookup server's
	// "invalidate" span is its child. nil means no spans.
	TracerProvider trace.TracerProvider
}

// DefaultApplyConcurrency is ApplierConfig.Concurrency's default. A
// DynamoDB replica spends most of an apply waiting for two round trips, so
// a batch (up to a Kinesis GetRecords page) goes through about this many
// times faster than one event at a time.
const DefaultApplyConcurrency = 16

// Retries of a batch whose apply failed: the first waits about
// applyRetryBackoff, each further one twice as long up to
// maxApplyRetryBackoff, every wait jittered down by up to half, so that
// appliers that failed together do not retry together.
const (
	applyRetryBackoff    = 100 * time.Millisecond
	maxApplyRetryBackoff = 5 * time.Second
	// applyLogEvery is the least time between two "apply failed" warnings.
	applyLogEvery = 10 * time.Second
)

// Applier consumes the stream as consumer group "apply-<region>" and applies
// each event to the region's replica. The stream checkpoints a batch only
// after the handler returned, i.e. after every apply in it was durable; a
// crash redelivers, and apply is idempotent.
//
// A batch whose apply fails (a replica that times out, throttles or is
// unreachable) is retried, whole, with jittered backoff from 100 ms up to
// 5 s, until it is applied or the Applier stops: the handler never returns
// an apply error to the stream, so a store outage holds the region's
// replication at that batch instead of ending the process, and the batch is
// checkpointed only once applied. Retries are counted
// (tcs_apply_retries_total) and logged at most every 10 s.
//
// A replica that is a tcs.BatchApplier gets each stream batch in one
// ApplyBatch (one transaction, one fsync), which is what lets a resync of
// every tenant go through at stream speed; others get one Apply per run of a
// tenant's consecutive ordinary events in the batch, merged into one event
// (tcs.CoalesceEvents), several tenants at once (ApplierConfig.Concurrency).
// Events meant for other regions (ChangeEvent.Regions) are acknowledged
// without being applied.
//
// Invalidations never hold up applying and checkpointing: an apply queues
// its invalidation and moves on. The queue keeps one invalidation per tenant
// (a newer one merges into the one pending), is bounded (FeedConfig
// MaxPending; when full, the oldest is dropped), and is drained by
// FeedConfig.Senders goroutines that Run starts, each Broadcast under its
// own deadline; a failed one goes back into the queue, retried until
// FeedConfig.MaxAge. Run also queues a heartbeat every
// FeedConfig.HeartbeatInterval, so that lookup servers can tell a quiet feed
// from a broken one. Whatever is lost leaves caches converging by their TTL
// (invariant 5).
type Applier struct {
	cfg      ApplierConfig
	log      *slog.Logger
	tracer   trace.Tracer // nil without a TracerProvider
	feed     *feed        // nil without a Broadcaster
	running  atomic.Bool
	applied  *prometheus.CounterVec
	outcomes struct{ applied, noop, coalesced, otherRegion prometheus.Counter }
	poison   prometheus.Counter
	retries  prometheus.Counter
	lag      prometheus.Gauge
	lastTime prometheus.Gauge

	failedLog logevery.Limiter
	mu        sync.Mutex
	failing   bool // a retry since the last applied batch, for the "recovered" log
}

// NewApplier returns an Applier for cfg.
func NewApplier(cfg ApplierConfig) *Applier {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultApplyConcurrency
	}
	a := &Applier{cfg: cfg, log: cfg.Logger}
	if cfg.TracerProvider != nil {
		a.tracer = spanctx.Tracer(cfg.TracerProvider)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("region", cfg.Region)
	labels := prometheus.Labels{"region": cfg.Region}
	a.applied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_apply_events_total", Help: "Events consumed by the applier, by outcome (applied, noop; coalesced: folded into a newer event of its tenant in the same batch and applied with it, which counts once as applied or noop; other_region: a resync meant for other regions, skipped).", ConstLabels: labels,
	}, []string{"outcome"})
	a.outcomes.applied = a.applied.WithLabelValues("applied")
	a.outcomes.noop = a.applied.WithLabelValues("noop")
	a.outcomes.coalesced = a.applied.WithLabelValues("coalesced")
	a.outcomes.otherRegion = a.applied.WithLabelValues("other_region")
	a.poison = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_apply_undecodable_total", Help: "Stream records that could not be decoded or were malformed, and were skipped.", ConstLabels: labels,
	})
	a.retries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_apply_retries_total", Help: "Stream batches whose apply failed and was tried again (each retry counts); the batch is not checkpointed until applied.", ConstLabels: labels,
	})
	a.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_apply_lag_seconds", Help: "Replication lag: now - commit time of the last event applied.", ConstLabels: labels,
	})
	a.lastTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_apply_last_commit_timestamp_seconds", Help: "Commit time of the last event applied (Unix seconds).", ConstLabels: labels,
	})
	a.failedLog.Every = applyLogEvery
	collectors := []prometheus.Collector{a.applied, a.poison, a.retries, a.lag, a.lastTime}
	if cfg.Broadcaster != nil {
		var fc []prometheus.Collector
		a.feed, fc = newFeed(cfg.Feed, cfg.Broadcaster, cfg.Now, a.log, labels)
		collectors = append(collectors, fc...)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(collectors...)
	}
	return a
}

// Group is the stream consumer group of the region's appliers.
func (a *Applier) Group() string { return "apply-" + a.cfg.Region }

// Run consumes until ctx ends (returns nil) or the stream fails (returns
// the error; a batch not yet applied is not checkpointed and is delivered
// again on restart). A failed apply is retried, not returned.
// Meanwhile it broadcasts the invalidations the applies queue, and the
// heartbeats. Once consuming stopped it goes on broadcasting what is queued
// for up to FeedConfig.DrainTimeout, then abandons the rest and returns,
// with every goroutine it started ended. An Applier runs once at a time.
func (a *Applier) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return fmt.Errorf("applier of %s is already running", a.cfg.Region)
	}
	defer a.running.Store(false)
	if a.feed != nil {
		defer a.feed.start(ctx)()
	}
	return a.cfg.Stream.Consume(ctx, a.Group(), a.HandleBatch)
}

// HandleBatch applies a batch of stream messages in order. It is the
// Applier's streamer.Handler. Records that cannot be decoded and malformed
// events are skipped one by one (counted and logged), never the batch
// around them; events for other regions are skipped too (counted).
//
// A failed apply is retried with backoff until it succeeds, so HandleBatch
// returns nil once the batch is applied, or, if ctx ends first, an error
// that wraps ctx's (the stream then stops without checkpointing the batch).
func (a *Applier) HandleBatch(ctx context.Context, batch []Message) error {
	evs := make([]*tenant.ChangeEvent, 0, len(batch))
	for _, m := range batch {
		ev, err := DecodeEvent(m.Data)
		if err == nil {
			err = tcs.CheckEvent(ev)
		}
		if err != nil {
			// A record no applier can ever apply would block its shard
			// forever; skip it loudly (metric + error log) instead.
			a.poison.Inc()
			a.log.Error("skipping undecodable or malformed stream record", "shard", m.Shard, "sequence", m.Sequence, "partition_key", m.PartitionKey, "err", err)
			continue
		}
		if !ev.ForRegion(a.cfg.Region) {
			a.outcomes.otherRegion.Inc()
			continue
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil
	}
	spans := a.startSpans(ctx, evs)
	retry := backoff.New(applyRetryBackoff, maxApplyRetryBackoff, backoff.UpTo)
	for attempt := 1; ; attempt++ {
		err := a.applyEvents(ctx, evs)
		if err == nil {
			a.recovered(attempt)
			endSpans(spans, nil)
			return nil
		}
		if ctx.Err() != nil {
			// Stopping: the batch is delivered again (apply is idempotent).
			err = fmt.Errorf("apply to %s stopped (%w) after: %w", a.cfg.Region, ctx.Err(), err)
			endSpans(spans, err)
			return err
		}
		for _, sp := range spans {
			sp.AddEvent("apply failed; retrying", trace.WithAttributes(attribute.String("error", err.Error()), attribute.Int("attempt", attempt)))
		}
		wait := retry.Next()
		a.retries.Inc()
		a.mu.Lock()
		a.failing = true
		a.mu.Unlock()
		if n, ok := a.failedLog.Allow(a.cfg.Now()); ok {
			first := batch[0]
			a.log.Warn("apply failed; retrying the batch (it is not checkpointed until applied)", "err", err, "attempt", attempt, "in", wait,
				"events", len(evs), "shard", first.Shard, "sequence", first.Sequence, "retries_since_last_warning", n)
		}
		if backoff.Sleep(ctx, wait) != nil {
			err = fmt.Errorf("apply to %s stopped (%w) after: %w", a.cfg.Region, ctx.Err(), err)
			endSpans(spans, err)
			return err
		}
	}
}

// startSpans starts the "apply" span of each event of evs that carries a
// trace context, as its child, and gives the event the span's context in
// its place (the events are the Applier's own, decoded from the batch), so
// that the invalidation of the apply carries it on.
func (a *Applier) startSpans(ctx context.Context, evs []*tenant.ChangeEvent) []trace.Span {
	if a.tracer == nil {
		return nil
	}
	var spans []trace.Span
	for _, ev := range evs {
		if ev.Trace.IsZero() {
			continue
		}
		_, sp := spanctx.Start(ctx, a.tracer, ev.Trace, "apply", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("tcs.region", a.cfg.Region), attribute.String("tcs.tenant.id", ev.TenantID), attribute.Int64("tcs.tenant.version", ev.Version)))
		if sc := sp.SpanContext(); sc.IsValid() {
			ev.Trace = spanctx.Of(sc)
		}
		spans = append(spans, sp)
	}
	return spans
}

// endSpans ends spans, as failed if err is not nil.
func endSpans(spans []trace.Span, err error) {
	for _, sp := range spans {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
}

// recovered logs that applies succeed again after a retry.
func (a *Applier) recovered(attempt int) {
	a.mu.Lock()
	was := a.failing
	a.failing = false
	a.mu.Unlock()
	if was {
		a.log.Info("apply succeeds again", "attempts", attempt)
	}
}

// applyEvents applies evs once: in one ApplyBatch if the replica is a
// tcs.BatchApplier, else with applyEach.
func (a *Applier) applyEvents(ctx context.Context, evs []*tenant.ChangeEvent) error {
	if b, ok := a.cfg.Replica.(tcs.BatchApplier); ok {
		results, err := b.ApplyBatch(ctx, evs)
		switch {
		case err == nil && len(results) == len(evs):
			for i, ev := range evs {
				a.applied1(ev, results[i])
			}
			return nil
		case err == nil:
			return fmt.Errorf("apply batch to %s: %d results for %d events", a.cfg.Region, len(results), len(evs))
		case tenant.ErrorCode(err) != tenant.Invalid:
			return fmt.Errorf("apply batch of %d events to %s: %w", len(evs), a.cfg.Region, err)
		}
		// The replica rejected an event that tcs.CheckEvent let through:
		// apply one by one, so that only that event is skipped.
	}
	return a.applyEach(ctx, evs)
}

// applyEach applies evs with one Apply per run of a tenant's events, in
// order, and up to cfg.Concurrency tenants at once. A run is a tenant's
// ordinary events at consecutive versions (tcs.Coalescible), merged into one
// event by tcs.CoalesceEvents, which leaves the replica as applying them one
// by one would: a backlog of one tenant's updates costs one apply per batch,
// not one per event. Resync events are applied as they are. The first
// failure cancels the rest and is returned (the batch is redelivered; apply
// is idempotent).
func (a *Applier) applyEach(ctx context.Context, evs []*tenant.ChangeEvent) error {
	if a.cfg.Concurrency == 1 || len(evs) == 1 {
		for _, run := range tcs.Runs(evs) {
			if err := a.applyRun(ctx, run); err != nil {
				return err
			}
		}
		return nil
	}
	var order []string
	byTenant := map[string][]*tenant.ChangeEvent{}
	for _, ev := range evs {
		if _, ok := byTenant[ev.TenantID]; !ok {
			order = append(order, ev.TenantID)
		}
		byTenant[ev.TenantID] = append(byTenant[ev.TenantID], ev)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.cfg.Concurrency)
	for _, id := range order {
		g.Go(func() error {
			for _, run := range tcs.Runs(byTenant[id]) {
				if err := a.applyRun(gctx, run); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// applyRun applies a run (see tcs.Runs) with one Apply of the merged event. Its
// invalidation covers every hostname the run's events would have reported
// one by one; the events folded into the newest are counted as outcome
// "coalesced". If the replica rejects the merged event as malformed, the
// run's events are applied one by one, so that only the bad one is skipped.
func (a *Applier) applyRun(ctx context.Context, run []*tenant.ChangeEvent) error {
	if len(run) == 1 {
		return a.apply1(ctx, run[0])
	}
	merged, err := tcs.CoalesceEvents(run)
	if err == nil {
		var res tcs.ApplyResult
		res, err = a.cfg.Replica.Apply(ctx, merged)
		if err == nil {
			if res.Applied || len(res.Hostnames) > 0 {
				res.Hostnames = unionSorted(res.Hostnames, tcs.CoalescedHostnames(run))
			}
			a.outcomes.coalesced.Add(float64(len(run) - 1))
			a.applied1(merged, res)
			return nil
		}
		if tenant.ErrorCode(err) != tenant.Invalid {
			return fmt.Errorf("apply %s@%d..%d to %s: %w", merged.TenantID, run[0].Version, merged.Version, a.cfg.Region, err)
		}
	}
	for _, ev := range run {
		if err := a.apply1(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// unionSorted returns the sorted union of two sorted lists.
func unionSorted(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// apply1 applies one event with Apply. A malformed event is skipped (no
// retry can ever apply it); any other failure is returned.
func (a *Applier) apply1(ctx context.Context, ev *tenant.ChangeEvent) error {
	res, err := a.cfg.Replica.Apply(ctx, ev)
	if err != nil {
		if tenant.ErrorCode(err) == tenant.Invalid {
			a.poison.Inc()
			a.log.Error("skipping malformed event", "tenant", ev.TenantID, "version", ev.Version, "err", err)
			return nil
		}
		return fmt.Errorf("apply %s@%d to %s: %w", ev.TenantID, ev.Version, a.cfg.Region, err)
	}
	a.applied1(ev, res)
	return nil
}

// applied1 records one applied event: metrics, and the invalidation of the
// hostnames it changed, queued for the senders.
func (a *Applier) applied1(ev *tenant.ChangeEvent, res tcs.ApplyResult) {
	if res.Applied {
		a.outcomes.applied.Inc()
		a.lag.Set(a.cfg.Now().Sub(ev.CommittedAt).Seconds())
		a.lastTime.Set(float64(ev.CommittedAt.UnixNano()) / 1e9)
	} else {
		a.outcomes.noop.Inc()
	}
	if len(res.Hostnames) == 0 || a.feed == nil {
		return
	}
	// The apply is durable, and the batch is checkpointed without waiting
	// for the broadcast: a lost invalidation only delays freshness up to
	// the cache TTL (invariant 5).
	a.feed.enqueue(tcs.Invalidation{TenantID: ev.TenantID, Version: ev.Version, Hostnames: res.Hostnames, CommittedAt: ev.CommittedAt, Trace: ev.Trace})
}
