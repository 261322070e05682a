// Package clientprom counts what a tcs/client Client does in Prometheus
// metrics (client_golang): make a Metrics, register it, and give its Hooks
// to client.WithMetrics.
//
//	m := clientprom.New()
//	prometheus.MustRegister(m)
//	c, err := client.New(ctx, client.WithRegions(...), client.WithMetrics(m.Hooks()))
//
// The metrics (one Hooks field each; see client.Hooks for when each is
// called):
//
//	tcs_client_cache_hits_total                     Hit
//	tcs_client_cache_misses_total                   Miss
//	tcs_client_stale_serves_total                   StaleServe
//	tcs_client_remembered_total                     Remembered
//	tcs_client_invalidations_total                  Invalidation
//	tcs_client_hedges_total{region}                 Hedge
//	tcs_client_failovers_total{region}              Failover
//	tcs_client_breaker_opens_total{region}          BreakerOpen
//	tcs_client_behind_total{region}                 Behind
//	tcs_client_rpc_duration_seconds{region,code}    RPC (histogram; code: the gRPC status code name, "OK" on success)
//	tcs_client_watch_up{region}                     WatchState (1 while the Watch stream is up on region, 0 once it is down;
//	                                                one series: the region of the last stream)
//
// region is the region's label as the client knows it (its name once it has
// answered, its address before). To tell several Clients of one process
// apart, register each Metrics with prometheus.WrapRegistererWith and a
// label of your own (a Metrics shared by Clients adds their counts up, and
// its tcs_client_watch_up follows the last stream to change). The hit and
// miss hooks allocate nothing, so cache hits stay allocation-free.
package clientprom

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/tcs/client"
)

// RPCBuckets are the histogram buckets of tcs_client_rpc_duration_seconds:
// 0.5 ms to about 1 s, doubling (a lookup is bounded by the client's lookup
// timeout, 1 s by default).
var RPCBuckets = prometheus.ExponentialBuckets(0.0005, 2, 12)

// Metrics are a Client's Prometheus metrics. It is a prometheus.Collector:
// register it once. One Metrics may serve several Clients (their counts
// add up).
type Metrics struct {
	hits, misses, stale, remembered, invalidations prometheus.Counter
	hedges, failovers, breakerOpens, behind        *prometheus.CounterVec
	rpc                                            *prometheus.HistogramVec
	watchUp                                        *prometheus.GaugeVec
}

var _ prometheus.Collector = (*Metrics)(nil)

// New returns the metrics, not yet registered.
func New() *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	perRegion := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"region"})
	}
	return &Metrics{
		hits:          counter("tcs_client_cache_hits_total", "Lookups answered from the client's cache, fresh (negative answers included)."),
		misses:        counter("tcs_client_cache_misses_total", "Lookups that asked a region."),
		stale:         counter("tcs_client_stale_serves_total", "Lookups that every region failed, answered with an expired cached answer within max-stale."),
		remembered:    counter("tcs_client_remembered_total", "Lookups answered with the newest version of the tenant returned before, the regions that answered being behind it."),
		invalidations: counter("tcs_client_invalidations_total", "Invalidations received over the Watch stream."),
		hedges:        perRegion("tcs_client_hedges_total", "Lookups also sent to the next region because region had not answered within the hedge delay."),
		failovers:     perRegion("tcs_client_failovers_total", "Lookups that moved past region because it failed or its circuit breaker was open."),
		breakerOpens:  perRegion("tcs_client_breaker_opens_total", "Times region's circuit breaker opened."),
		behind:        perRegion("tcs_client_behind_total", "Answers of region set aside because they were older than a version the client had returned or was asked for."),
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tcs_client_rpc_duration_seconds",
			Help:    "Lookup RPCs to region, by gRPC status code.",
			Buckets: RPCBuckets,
		}, []string{"region", "code"}),
		watchUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcs_client_watch_up",
			Help: "1 while the client's Watch stream on region is up, else 0.",
		}, []string{"region"}),
	}
}

// Hooks returns the client.Hooks that count into m.
func (m *Metrics) Hooks() client.Hooks {
	return client.Hooks{
		Hit:          m.hits.Inc,
		Miss:         m.misses.Inc,
		StaleServe:   m.stale.Inc,
		Remembered:   m.remembered.Inc,
		Invalidation: m.invalidations.Inc,
		Hedge:        func(region string) { m.hedges.WithLabelValues(region).Inc() },
		Failover:     func(region string) { m.failovers.WithLabelValues(region).Inc() },
		BreakerOpen:  func(region string) { m.breakerOpens.WithLabelValues(region).Inc() },
		Behind:       func(region string) { m.behind.WithLabelValues(region).Inc() },
		RPC: func(region string, d time.Duration, err error) {
			m.rpc.WithLabelValues(region, status.Code(err).String()).Observe(d.Seconds())
		},
		WatchState: func(region string, up bool) {
			// A Client has one stream at a time, and a region's
			// label changes when it first names itself: one series.
			v := 0.0
			if up {
				v = 1
			}
			m.watchUp.Reset()
			m.watchUp.WithLabelValues(region).Set(v)
		},
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.hits, m.misses, m.stale, m.remembered, m.invalidations,
		m.hedges, m.failovers, m.breakerOpens, m.behind, m.rpc, m.watchUp}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}
