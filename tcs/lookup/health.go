package lookup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// Health defaults.
const (
	// DefaultWarmTimeout is Config.WarmTimeout's default.
	DefaultWarmTimeout = 30 * time.Second
	// DefaultHotKeys is Config.HotKeys's default.
	DefaultHotKeys = 10_000
	// DefaultHotKeysInterval is Config.HotKeysInterval's default.
	DefaultHotKeysInterval = time.Minute
	// DefaultHealthInterval is Config.HealthInterval's default.
	DefaultHealthInterval = time.Second
	// DefaultLiveTimeout is Config.LiveTimeout's default.
	DefaultLiveTimeout = 30 * time.Second
)

// ProbeHostname is the hostname a node reads to learn whether a replica it
// counts as unreadable is back, while no lookups read it (.invalid: no
// tenant can own it, so a working replica answers NotFound).
const ProbeHostname = "tcs-health-probe.invalid"

// healthConfig is the part of Config about readiness and liveness.
type healthConfig struct {
	hotKeysFile     string
	hotKeys         int
	hotKeysInterval time.Duration
	warmTimeout     time.Duration // < 0: no warm-up
	warmConcurrency int
	interval        time.Duration
	liveTimeout     time.Duration
}

// healthState is what the server knows of its own readiness and liveness.
type healthState struct {
	healthConfig

	// subscribedCh is closed when the feed has proved subscribed (see
	// Ready); subscribeOnce closes it.
	subscribedCh  chan struct{}
	subscribeOnce sync.Once
	warmed        atomic.Bool
	probing       atomic.Bool
	// beat is when the health loop last ran, delivering when the feed
	// goroutine began the message it is applying (0: none); both wall-clock
	// unix nanoseconds, whatever Config.Now says.
	beat, delivering atomic.Int64
	// serveEnded is set when Serve's gRPC loop returned before shutdown.
	serveEnded, shuttingDown atomic.Bool

	hsMu      sync.Mutex
	hs        *health.Server // set by Serve; nil: statuses not published
	published healthpb.HealthCheckResponse_ServingStatus
	ready     prometheus.Gauge
	warmKeys  prometheus.Gauge
	warmTime  prometheus.Gauge
}

func (h *healthState) init(cfg Config) {
	*h = healthState{
		healthConfig: healthConfig{
			hotKeysFile:     cfg.HotKeysFile,
			hotKeys:         cfg.HotKeys,
			hotKeysInterval: cfg.HotKeysInterval,
			warmTimeout:     cfg.WarmTimeout,
			warmConcurrency: cfg.WarmConcurrency,
			interval:        cfg.HealthInterval,
			liveTimeout:     cfg.LiveTimeout,
		},
		subscribedCh: make(chan struct{}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_ready",
			Help: "1 while the node reports SERVING (gRPC health, /readyz): feed subscribed, cache warmed, replica readable within max-stale; 0 otherwise.",
		}),
		warmKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_warmup_entries_loaded",
			Help: "Tenant answers the start-up warm-up loaded into the cache from the replica (hostnames of the --hot-keys-file).",
		}),
		warmTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcs_lookup_warmup_duration_seconds",
			Help: "How long the start-up warm-up took (bounded by --warm-timeout); 0 until it ends.",
		}),
	}
	if h.hotKeys <= 0 {
		h.hotKeys = DefaultHotKeys
	}
	if h.hotKeysInterval <= 0 {
		h.hotKeysInterval = DefaultHotKeysInterval
	}
	if h.warmTimeout == 0 {
		h.warmTimeout = DefaultWarmTimeout
	}
	if h.interval <= 0 {
		h.interval = DefaultHealthInterval
	}
	if h.liveTimeout <= 0 {
		h.liveTimeout = DefaultLiveTimeout
	}
	h.published = healthpb.HealthCheckResponse_UNKNOWN
}

func (h *healthState) collectors() []prometheus.Collector {
	return []prometheus.Collector{h.ready, h.warmKeys, h.warmTime}
}

// markSubscribed records that the feed is subscribed.
func (s *Server) markSubscribed() {
	s.subscribeOnce.Do(func() {
		close(s.subscribedCh)
		s.updateHealth()
	})
}

// feedDown reports whether the feed counts as down.
func (s *Server) feedDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// Ready returns nil while the server should receive lookups, and else why
// not. It is not ready:
//
//   - until Run (or Serve) has subscribed to the feed: a message has come
//     through it (appliers send a heartbeat every few seconds; with the
//     feed's liveness detection off, the gap a feed signals when a
//     subscription starts counts too), or Run has started, with no feed;
//     or the feed counts as down (silent for Config.FeedTimeout since Run
//     started, or its subscription failed): then the server answers with
//     shortened TTLs, as when its feed goes down later, rather than not at
//     all (an applier outage must not keep restarted nodes out of service);
//   - then until the warm-up has ended: the hostnames of
//     Config.HotKeysFile read from the replica, or Config.WarmTimeout
//     passed (a missing or unreadable file, or a failed read, is logged and
//     does not hold the server back);
//   - while the replica has been unreadable (cache.Cache.UnreadableSince)
//     for longer than the cache's MaxStale: no answer it still serves
//     stale can be that old, so the node has nothing to offer a miss;
//     meanwhile the server probes it every Config.HealthInterval, so that
//     it learns when it is back without any lookup;
//   - once shutting down.
//
// A feed that goes down later does not make the server unready: it answers
// with shortened TTLs (see the package comment).
func (s *Server) Ready() error {
	if s.shuttingDown.Load() {
		return errors.New("shutting down")
	}
	select {
	case <-s.subscribedCh:
	default:
		return errors.New("starting: the invalidation feed is not subscribed yet (no message from it)")
	}
	if !s.warmed.Load() {
		return errors.New("starting: warming the cache")
	}
	return s.replicaUnready()
}

// replicaUnready returns why the replica makes the server unready: it has
// been unreadable for longer than max-stale; else nil.
func (s *Server) replicaUnready() error {
	if since, ok := s.cache.UnreadableSince(); ok {
		maxStale := max(s.cache.MaxStale(), 0)
		if d := s.now().Sub(since); d > maxStale {
			return fmt.Errorf("the replica has been unreadable for %v, past max-stale (%v)", d.Round(time.Millisecond), maxStale)
		}
	}
	return nil
}

// Live returns nil unless the server is wedged: its health loop (which
// takes the locks the feed goroutine takes) has not run for
// Config.LiveTimeout, the feed goroutine has been applying one message for
// that long, or Serve's gRPC loop stopped while Serve still runs. A
// dependency that is down (replica, feed) never makes it fail: restarting
// the process would not mend it.
func (s *Server) Live() error {
	now := time.Now().UnixNano()
	if s.serveEnded.Load() && !s.shuttingDown.Load() {
		return errors.New("the gRPC serve loop stopped")
	}
	if b := s.beat.Load(); b != 0 {
		if d := time.Duration(now - b); d > s.liveTimeout {
			return fmt.Errorf("the health loop has not run for %v (wedged)", d.Round(time.Millisecond))
		}
	}
	if b := s.delivering.Load(); b != 0 {
		if d := time.Duration(now - b); d > s.liveTimeout {
			return fmt.Errorf("the feed goroutine has been applying one message for %v (wedged)", d.Round(time.Millisecond))
		}
	}
	return nil
}

// healthServices are the services whose gRPC health follows Ready: the
// whole server ("") and each service it serves.
func (s *Server) healthServices() []string {
	out := []string{"", tcsv1.TenantContextService_ServiceDesc.ServiceName}
	if s.admin != nil {
		out = append(out, adminv1.ReplicaAdmin_ServiceDesc.ServiceName)
	}
	return out
}

// publishHealth makes hs report the server's readiness from now on.
func (s *Server) publishHealth(hs *health.Server) {
	s.hsMu.Lock()
	s.hs = hs
	s.published = healthpb.HealthCheckResponse_UNKNOWN
	s.hsMu.Unlock()
	s.updateHealth()
}

// updateHealth publishes Ready's verdict (gRPC health, tcs_lookup_ready),
// logging changes.
func (s *Server) updateHealth() {
	err := s.Ready()
	st := healthpb.HealthCheckResponse_SERVING
	if err != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.hsMu.Lock()
	defer s.hsMu.Unlock()
	if st == s.published {
		return
	}
	prev := s.published
	s.published = st
	if st == healthpb.HealthCheckResponse_SERVING {
		s.ready.Set(1)
	} else {
		s.ready.Set(0)
	}
	if s.hs != nil {
		for _, svc := range s.healthServices() {
			s.hs.SetServingStatus(svc, st)
		}
	}
	switch {
	case err == nil:
		s.log.Info("lookup server ready (SERVING)")
	case prev == healthpb.HealthCheckResponse_SERVING:
		s.log.Warn("lookup server not ready (NOT_SERVING)", "why", err)
	default:
		s.log.Info("lookup server not ready yet (NOT_SERVING)", "why", err)
	}
}

// healthLoop runs every interval until ctx ends: checks the feed's
// liveness, probes a replica unreadable past max-stale, publishes
// readiness, and records that it ran (for Live).
func (s *Server) healthLoop(ctx context.Context, interval time.Duration, wg *sync.WaitGroup) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.beat.Store(time.Now().UnixNano())
		s.checkFeed()
		if s.feedDown() {
			// Silent since the start, or failing: the node serves as one
			// whose feed went down later does (shortened TTLs), rather than
			// not at all.
			s.markSubscribed()
		}
		// Out of service, the node gets no lookups to find the replica
		// back: it probes. (In service, its lookups do: cache.FailingAfter.)
		if s.replicaUnready() != nil && s.probing.CompareAndSwap(false, true) {
			wg.Go(func() {
				defer s.probing.Store(false)
				if s.cache.ProbeReplica(ProbeHostname) == nil {
					s.updateHealth()
				}
			})
		}
		s.updateHealth()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// warmUp waits for the feed to be subscribed (reads made before could miss
// invalidations), then fills the cache with the hostnames of the hot-keys
// file, within the warm timeout, and marks the server warmed whatever
// happened. Then it writes the hot-keys file every hotKeysInterval, and
// once more when ctx ends.
func (s *Server) warmUp(ctx context.Context) {
	select {
	case <-s.subscribedCh:
	case <-ctx.Done():
		return
	}
	s.warm(ctx)
	s.warmed.Store(true)
	s.updateHealth()
	if s.hotKeysFile == "" || ctx.Err() != nil {
		// Stopped during the warm-up: the cache holds part of the list,
		// which must not replace it.
		return
	}
	t := time.NewTicker(s.hotKeysInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.writeHotKeys()
			return
		case <-t.C:
			s.writeHotKeys()
		}
	}
}

// warm runs the start-up warm-up.
func (s *Server) warm(ctx context.Context) {
	if s.hotKeysFile == "" || s.warmTimeout < 0 {
		return
	}
	hosts, err := cache.ReadHotKeys(s.hotKeysFile, s.hotKeys)
	switch {
	case errors.Is(err, cache.ErrNoHotKeys):
		s.log.Info("no hot-keys file: starting with a cold cache", "err", err)
		return
	case err != nil:
		s.log.Warn("hot-keys file unusable: starting with a cold cache", "err", err)
		return
	}
	// Timed from before the timeout's start, so that a warm-up cut short
	// by it never reports less than the timeout.
	began := time.Now()
	wctx, cancel := context.WithTimeout(ctx, s.warmTimeout)
	defer cancel()
	st, err := s.cache.Warm(wctx, hosts, s.warmConcurrency)
	took := time.Since(began)
	s.warmKeys.Set(float64(st.Loaded))
	s.warmTime.Set(took.Seconds())
	attrs := []any{"file", s.hotKeysFile, "hostnames", len(hosts), "loaded", st.Loaded, "failed", st.Failed, "duration", took.Round(time.Millisecond)}
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		s.log.Warn("cache warm-up cut short by the warm timeout: serving with what it loaded", append(attrs, "warm_timeout", s.warmTimeout)...)
	case err != nil:
		s.log.Info("cache warm-up stopped", append(attrs, "err", err)...)
	case st.Failed > 0:
		s.log.Warn("cache warm-up done with failed reads", attrs...)
	default:
		s.log.Info("cache warm-up done", attrs...)
	}
}

// writeHotKeys writes the cache's most recently used hostnames to the
// hot-keys file, logging a failure.
func (s *Server) writeHotKeys() {
	if err := cache.WriteHotKeys(s.hotKeysFile, s.cache.HotKeys(s.hotKeys)); err != nil {
		s.log.Warn("could not save the hot keys for the next start's warm-up", "err", err)
	}
}
