package lookup

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/tcs-dev/tcs/tcs/cache"
)

// metrics are the server's Prometheus metrics. Counters used on every
// lookup are resolved once, so that counting costs no label lookup.
type metrics struct {
	// lookups counts answered hostnames (one per Lookup, one per
	// BatchLookup entry) by status code.
	lookups       [codes.Unauthenticated + 1]prometheus.Counter
	lookupLatency prometheus.Observer
	batchLatency  prometheus.Observer
	lag           prometheus.Gauge
	propagation   prometheus.Observer
	watchStreams  prometheus.Gauge
	invalidations prometheus.Counter
	resyncs       prometheus.Counter
	heartbeats    prometheus.Counter
	feedUp        prometheus.Gauge
	feedLast      prometheus.Gauge
	// shed counts what the caps and limits refused, by reason (a fixed
	// set: shedReasons).
	shed map[string]prometheus.Counter
	// atLeast counts Lookups with min_version by outcome (a fixed set:
	// atLeastOutcomes).
	atLeast map[string]prometheus.Counter
	// acks counts acks received on AckStreams; ackStreams counts
	// AckStreams by outcome (a fixed set: ackStreamOutcomes);
	// tenantStatus counts TenantStatus calls by outcome
	// (tenantStatusOutcomes).
	acks         prometheus.Counter
	ackRequests  prometheus.Counter
	ackStreams   map[string]prometheus.Counter
	tenantStatus map[string]prometheus.Counter
}

// Outcomes of AckStreams (tcs_lookup_ack_streams_total).
const (
	ackStreamOpened    = "opened"
	ackStreamUnknown   = "unknown_session"
	ackStreamDuplicate = "duplicate"
)

var ackStreamOutcomes = []string{ackStreamOpened, ackStreamUnknown, ackStreamDuplicate}

// Outcomes of TenantStatus calls (tcs_lookup_tenant_status_calls_total).
const (
	tenantStatusOK      = "ok"
	tenantStatusInvalid = "invalid"
	tenantStatusError   = "error"
)

var tenantStatusOutcomes = []string{tenantStatusOK, tenantStatusInvalid, tenantStatusError}

// counters resolves a counter per label value of vec.
func counters(vec *prometheus.CounterVec, values []string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(values))
	for _, v := range values {
		m[v] = vec.WithLabelValues(v)
	}
	return m
}

func newMetrics(reg prometheus.Registerer, c *cache.Cache) *metrics {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_lookup_lookups_total",
		Help: "Hostnames looked up (one per Lookup, one per BatchLookup entry), by gRPC status code.",
	}, []string{"code"})
	// The latency SLO (infra/prometheus/rules/tcs-slo.yml) reads the
	// le="0.025" bucket: keep it.
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tcs_lookup_request_duration_seconds",
		Help:    "Time to answer a Lookup or BatchLookup call, by method.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"method"})
	m := &metrics{
		lookupLatency: latency.WithLabelValues("Lookup"),
		batchLatency:  latency.WithLabelValues("BatchLookup"),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_replication_lag_seconds",
			Help: "When the last invalidation was received, how long after its change was committed in the source of truth.",
		}),
		// The propagation SLO (infra/prometheus/rules/tcs-slo.yml) reads
		// its le="1" bucket: keep the name and that bucket.
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tcs_lookup_propagation_seconds",
			Help:    "For each invalidation received, how long after its change was committed in the source of truth (the time a change takes to reach this node's cache; heartbeats excluded).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		watchStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_watch_streams",
			Help: "Open Watch streams.",
		}),
		invalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcs_lookup_invalidations_total",
			Help: "Invalidations received from the region's feed.",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcs_lookup_resyncs_total",
			Help: "Times the whole cache was expired because invalidations may have been missed (feed (re)subscribed, fell behind, or came back after being down).",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcs_lookup_feed_heartbeats_total",
			Help: "Heartbeats received from the region's feed.",
		}),
		// Alert rules read these two: keep their names.
		feedUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_feed_up",
			Help: "1 while the invalidation feed delivers (a message within the feed timeout, subscription running), 0 while it is down (cache TTL limited, Watch streams refused). Always 1 when detection is off.",
		}),
		feedLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_feed_last_message_timestamp_seconds",
			Help: "Unix time of the last message (invalidation or heartbeat) from the invalidation feed; 0 before the first.",
		}),
	}
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_lookup_shed_total",
		Help: "Requests refused by a cap or a limit (RESOURCE_EXHAUSTED), by reason: caller_rate (hostnames over a caller's lookup rate), miss_budget_node and miss_budget_caller (lookups of hostnames without a cached tenant over the replica-read budget; some answered stale instead, see tcs_lookup_cache_refused_stale_total), watch_node_cap and watch_caller_cap (Watch streams), batch_response_size (BatchLookup results past the response size cap).",
	}, []string{"reason"})
	m.shed = make(map[string]prometheus.Counter, len(shedReasons))
	for _, r := range shedReasons {
		m.shed[r] = shed.WithLabelValues(r)
	}
	atLeast := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_lookup_min_version_lookups_total",
		Help: "Lookups with min_version (read-your-writes), by outcome: cache (a fresh cache entry was new enough), read (answered after a replica read, new enough, or another tenant or NOT_FOUND as it is), too_old (the region is behind the version: UNAVAILABLE naming the version it has), failed (invalid, refused, or the replica unreadable with nothing to compare).",
	}, []string{"outcome"})
	m.atLeast = make(map[string]prometheus.Counter, len(atLeastOutcomes))
	for _, o := range atLeastOutcomes {
		m.atLeast[o] = atLeast.WithLabelValues(o)
	}
	m.acks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_lookup_acks_total",
		Help: "Acknowledgements received from Watch clients on AckStreams (each reports the seq a client has applied; the propagation status counts clients by them).",
	})
	m.ackRequests = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tcs_lookup_ack_requests_total",
		Help: "Heartbeats with ack_now sent to Watch clients that lagged a change someone waits for (TenantStatus found them behind), asking them to ack at once.",
	})
	ackStreams := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_lookup_ack_streams_total",
		Help: "AckStreams by outcome: opened (its session is a Watch stream of this node), unknown_session (NOT_FOUND: its Watch stream ended or is another node's; a client balancing over a region's nodes retries on the next), duplicate (ALREADY_EXISTS: the session had one open).",
	}, []string{"outcome"})
	m.ackStreams = counters(ackStreams, ackStreamOutcomes)
	tenantStatus := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tcs_lookup_tenant_status_calls_total",
		Help: "TenantStatus calls (the catalog's propagation status asking this node how far a tenant's change has reached), by outcome: ok, invalid (bad tenant id or version), error (the replica unreadable).",
	}, []string{"outcome"})
	m.tenantStatus = counters(tenantStatus, tenantStatusOutcomes)
	m.feedUp.Set(1)
	for code := range m.lookups {
		m.lookups[code] = lookups.WithLabelValues(codes.Code(code).String())
	}
	reg.MustRegister(lookups, latency, shed, atLeast, m.acks, m.ackRequests, ackStreams, tenantStatus, m.lag, m.propagation.(prometheus.Histogram), m.watchStreams, m.invalidations, m.resyncs, m.heartbeats, m.feedUp, m.feedLast, cacheCollector{c})
	return m
}

// done records a finished Lookup.
func (m *metrics) done(h prometheus.Observer, start time.Time, code codes.Code) {
	h.Observe(time.Since(start).Seconds())
	m.lookups[code].Inc()
}

// cacheCollector exports the cache's counters, read once per scrape.
type cacheCollector struct{ c *cache.Cache }

var (
	descHits = prometheus.NewDesc("tcs_lookup_cache_hits_total",
		"Lookups answered from a fresh cache entry, by result (tenant or not_found).", []string{"result"}, nil)
	descMisses = prometheus.NewDesc("tcs_lookup_cache_misses_total",
		"Lookups that waited for a replica read.", nil, nil)
	descStale = prometheus.NewDesc("tcs_lookup_cache_stale_serves_total",
		"Cached answers (tenant or not found, expired or invalidated) served stale because the replica could not be read (stale-if-error).", nil, nil)
	descStaleAtOnce = prometheus.NewDesc("tcs_lookup_cache_stale_at_once_total",
		"Stale answers served without waiting for a replica read, because the replica was failing.", nil, nil)
	descFallback = prometheus.NewDesc("tcs_lookup_cache_fallback_reads_total",
		"Reads of the fallback replica after the replica failed, by outcome: served, discarded (older than what the cache knew), error.", []string{"result"}, nil)
	descFailing = prometheus.NewDesc("tcs_lookup_cache_replica_failing",
		"1 while the replica counts as failing (its last reads all failed): kept answers are served stale at once.", nil, nil)
	descReads = prometheus.NewDesc("tcs_lookup_cache_replica_reads_total",
		"Replica reads made by the cache.", nil, nil)
	descReadErrors = prometheus.NewDesc("tcs_lookup_cache_replica_read_errors_total",
		"Replica reads that failed or timed out (NotFound is not a failure).", nil, nil)
	descRejected = prometheus.NewDesc("tcs_lookup_cache_fills_rejected_total",
		"Replica reads not cached fresh because they raced with an invalidation or a resync (kept out of date, for stale-if-error only).", nil, nil)
	descSibling = prometheus.NewDesc("tcs_lookup_cache_sibling_serves_total",
		"Stale answers for a hostname with nothing cached, taken from its tenant's document cached under another of its hostnames (which lists it, at the version that claimed it or newer).", nil, nil)
	descRefresh = prometheus.NewDesc("tcs_lookup_cache_refreshes_total",
		"Background reads of hostnames named by an invalidation (--refresh-invalidated), by result: started, or skipped (8 already running, or the replica failing).", []string{"result"}, nil)
	descRetries = prometheus.NewDesc("tcs_lookup_cache_read_retries_total",
		"Second replica reads of misses whose first read failed and that had no cached answer to serve stale.", nil, nil)
	descEntries = prometheus.NewDesc("tcs_lookup_cache_entries",
		"Entries in the cache, fresh, expired or invalidated (kept for stale-if-error), negative ones included.", nil, nil)
	descNegEntries = prometheus.NewDesc("tcs_lookup_cache_negative_entries",
		"Negative entries (hostnames without a tenant) in the cache, kept in LRUs of their own (--negative-cache-size).", nil, nil)
	descRefusedStale = prometheus.NewDesc("tcs_lookup_cache_refused_stale_total",
		"Lookups over the miss budget answered with the entry the cache kept for them, marked stale, instead of RESOURCE_EXHAUSTED.", nil, nil)
)

func (cc cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descStale, descStaleAtOnce, descFallback, descFailing, descReads, descReadErrors, descRejected, descRetries, descSibling, descRefresh, descEntries, descNegEntries, descRefusedStale} {
		ch <- d
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descHits, s.PositiveHits, "tenant")
	counter(descHits, s.NegativeHits, "not_found")
	counter(descMisses, s.Misses)
	counter(descStale, s.StaleServes)
	counter(descStaleAtOnce, s.StaleAtOnce)
	counter(descFallback, s.FallbackServes, "served")
	counter(descFallback, s.FallbackDiscarded, "discarded")
	counter(descFallback, s.FallbackErrors, "error")
	counter(descReads, s.Reads)
	counter(descReadErrors, s.ReadErrors)
	counter(descRejected, s.Rejected)
	counter(descRetries, s.Retries)
	counter(descSibling, s.SiblingServes)
	counter(descRefresh, s.Refreshes, "started")
	counter(descRefresh, s.RefreshSkipped, "skipped")
	counter(descRefusedStale, s.RefusedStale)
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(descNegEntries, prometheus.GaugeValue, float64(s.NegativeEntries))
	failing := 0.0
	if s.ReplicaFailing {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, failing)
}
