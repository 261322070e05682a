package streamer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// ApplierConfig wires an Applier for one region.
type ApplierConfig struct {
	Region  string
	Stream  Stream
	Replica tcs.Replica
	// Broadcaster receives an invalidation after each apply that changed
	// something; nil broadcasts nothing (caches then rely on their TTL).
	Broadcaster tcs.Broadcaster
	Logger      *slog.Logger
	// Registerer receives the applier's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock for the lag metric; nil means time.Now.
	Now func() time.Time
}

// Applier consumes the stream as consumer group "apply-<region>" and applies
// each event to the region's replica. The stream checkpoints a batch only
// after the handler returned, i.e. after every apply in it was durable; a
// crash redelivers, and apply is idempotent.
type Applier struct {
	cfg      ApplierConfig
	log      *slog.Logger
	applied  *prometheus.CounterVec
	poison   prometheus.Counter
	lag      prometheus.Gauge
	lastTime prometheus.Gauge
}

// NewApplier returns an Applier for cfg.
func NewApplier(cfg ApplierConfig) *Applier {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Applier{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("region", cfg.Region)
	labels := prometheus.Labels{"region": cfg.Region}
	a.applied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_apply_events_total", Help: "Events consumed by the applier, by outcome (applied, noop).", ConstLabels: labels,
	}, []string{"outcome"})
	a.poison = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_apply_undecodable_total", Help: "Stream records that could not be decoded or were malformed, and were skipped.", ConstLabels: labels,
	})
	a.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_apply_lag_seconds", Help: "Replication lag: now - commit time of the last event applied.", ConstLabels: labels,
	})
	a.lastTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tcs_apply_last_commit_timestamp_seconds", Help: "Commit time of the last event applied (Unix seconds).", ConstLabels: labels,
	})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(a.applied, a.poison, a.lag, a.lastTime)
	}
	return a
}

// Group is the stream consumer group of the region's appliers.
func (a *Applier) Group() string { return "apply-" + a.cfg.Region }

// Run consumes until ctx ends (returns nil) or an apply fails (returns the
// error; the failed batch is not checkpointed and is redelivered on restart).
func (a *Applier) Run(ctx context.Context) error {
	return a.cfg.Stream.Consume(ctx, a.Group(), a.HandleBatch)
}

// HandleBatch applies a batch of stream messages in order. It is the
// Applier's streamer.Handler.
func (a *Applier) HandleBatch(ctx context.Context, batch []Message) error {
	for _, m := range batch {
		ev, err := DecodeEvent(m.Data)
		if err != nil {
			// A record no applier can ever decode would block its shard
			// forever; skip it loudly (metric + error log) instead.
			a.poison.Inc()
			a.log.Error("skipping undecodable stream record", "shard", m.Shard, "sequence", m.Sequence, "partition_key", m.PartitionKey, "err", err)
			continue
		}
		if err := a.apply(ctx, ev); err != nil {
			if tenant.ErrorCode(err) == tenant.Invalid {
				// Malformed: no retry can ever apply it (as above).
				a.poison.Inc()
				a.log.Error("skipping malformed event", "shard", m.Shard, "sequence", m.Sequence, "err", err)
				continue
			}
			return err
		}
	}
	return nil
}

func (a *Applier) apply(ctx context.Context, ev *tenant.ChangeEvent) error {
	res, err := a.cfg.Replica.Apply(ctx, ev)
	if err != nil {
		return fmt.Errorf("apply %s@%d to %s: %w", ev.TenantID, ev.Version, a.cfg.Region, err)
	}
	outcome := "noop"
	if res.Applied {
		outcome = "applied"
		a.lag.Set(a.cfg.Now().Sub(ev.CommittedAt).Seconds())
		a.lastTime.Set(float64(ev.CommittedAt.UnixNano()) / 1e9)
	}
	a.applied.WithLabelValues(outcome).Inc()
	if len(res.Hostnames) == 0 || a.cfg.Broadcaster == nil {
		return nil
	}
	inv := tcs.Invalidation{TenantID: ev.TenantID, Version: ev.Version, Hostnames: res.Hostnames, CommittedAt: ev.CommittedAt}
	if err := a.cfg.Broadcaster.Broadcast(ctx, inv); err != nil {
		// The apply is durable; a lost invalidation only delays freshness
		// up to the cache TTL (invariant 5). Do not redeliver for it.
		a.log.Warn("broadcast invalidation failed", "tenant", ev.TenantID, "version", ev.Version, "err", err)
	}
	return nil
}
