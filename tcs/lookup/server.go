// Package lookup is the TCS lookup server: the gRPC TenantContextService of
// one region (tcs.proto), answering from a cache (package cache) in front of
// the region's replica, kept fresh by the region's invalidation feed, which
// it also relays to clients over Watch.
//
// With Config.ReplicaAdmin it also serves tcs.admin.v1.ReplicaAdmin
// (admin.proto) on the same port: page-by-page scans of the replica for the
// SRE tools, for callers the server authenticated with the replica-scan role
// (ServeOptions.Auth; a tcs node never holds catalog admin credentials).
//
// A Server is made with New, runs its feed subscription with Run, and is
// served with Serve (which also runs Run, health, reflection, TLS and
// graceful shutdown) or registered on a caller's grpc.Server with Register.
//
// Feed liveness. Appliers send a heartbeat through the feed every few
// seconds (tcs.Invalidation.Heartbeat), so a silent feed is a broken one.
// The feed is down when it has delivered nothing (invalidation or
// heartbeat) for Config.FeedTimeout, or from when a subscription fails
// until it delivers again. While it is down lost invalidations cannot be
// ruled out, so the server: limits its cache's TTLs to Config.FeedDownTTL
// (entries already cached included); ends its Watch streams, and refuses
// new ones, with UNAVAILABLE "invalidation feed down" (clients trust a
// Watch stream to invalidate their caches; ended, they shorten their TTL
// and watch another region); sets the gauge tcs_lookup_feed_up to 0 (and
// tcs_lookup_feed_last_message_timestamp_seconds says since when nothing
// came); and logs one warning. When the feed delivers again it is treated
// as a gap (the whole cache expires) before the TTLs are restored, with one
// info log. Heartbeats are neither applied to the cache nor relayed to
// Watch streams, and do not feed the replication-lag gauge (their time is
// when the applier sent them, not a commit).
//
// Health. Serve's grpc.health.v1 statuses (the whole server and each
// service) and tcs_lookup_ready follow Ready: NOT_SERVING until the feed is
// subscribed and the cache warmed from Config.HotKeysFile (at most
// Config.WarmTimeout), while the replica has been unreadable for longer
// than the cache's MaxStale (probed every Config.HealthInterval meanwhile,
// since a node out of service gets no lookups to find it back), and once
// shutting down. Live fails only when the server is wedged, never because
// the replica or the feed is down. Lookups are answered whatever Ready
// says: health is advice to load balancers and clients.
//
// Stale answers. When the replica cannot be read, the cache answers what it
// kept (package cache: expired entries, entries invalidated by a write,
// negative entries), or its Fallback replica's answer, marked stale: a
// LookupResponse or BatchLookupResult says stale and age; a stale NOT_FOUND
// of Lookup carries the trailers tcs-stale ("true") and tcs-age (a Go
// duration), and one of BatchLookup its result's stale and age.
//
// Read-your-writes. A Lookup with min_version (and tenant_id) is answered
// only with the tenant at that version or newer: from the cache if its
// fresh entry is, else from a replica read that began after the call
// (through the cache, which installs it by its rules); a region whose
// replica is behind too answers UNAVAILABLE naming the version it has
// (trailers tcs-version and tcs-region, an ErrorInfo detail), and a stale
// answer is served only if its version reaches min_version. atleast.go has
// the rules and why UNAVAILABLE; tcs_lookup_min_version_lookups_total
// counts the outcomes.
//
// Acknowledgements (acks.go). Each broadcast to the Watch streams is
// numbered (WatchResponse.seq, one sequence for the node), each Resync names
// its stream's session and takes the number of the last broadcast it
// covers, and clients ack the number they have applied on an AckStream. With the
// number of each tenant's latest invalidation (an LRU of Config.AckTenants)
// that lets TenantStatus (also ReplicaAdmin.TenantStatus) count, for one
// tenant at one version, the streams that have applied it, those that lag,
// and those that never ack (past Config.AckGrace): with the replica's
// version and the lowest version the cache holds for the tenant's
// hostnames, what the catalog's propagation status asks every node.
//
// Load shedding. Whatever a client on the network sends, what it costs the
// node is bounded, and cache hits are the last thing refused:
//
//   - Connections: at most ServeOptions.MaxConcurrentStreams calls at once
//     on one, a GOAWAY after MaxConnectionAge (plus a grace), and a client
//     pinging more often than the keepalive policy allows is disconnected.
//   - Watch: at most Config.MaxWatchStreams streams on the node and
//     Config.MaxWatchPerCaller per caller (CallerOf: the authenticated
//     identity's name, else the peer's IP address); a refused stream costs
//     no goroutine or buffer. A broadcast walks the open streams under one
//     lock without waiting for any (a full buffer becomes a Resync), so the
//     node cap bounds its cost.
//   - Lookup and BatchLookup: each caller may look up Config.LookupRate
//     hostnames a second; past it the whole call is refused. A lookup that
//     would read the replica for a hostname the cache holds no tenant for
//     (a made-up one, most likely) takes a token from the caller's and the
//     node's miss budget (Config.MissRatePerCaller, MissRate); over budget
//     it is answered with the entry the cache keeps for it, stale, or
//     refused. Hits never touch the budget, and neither do reads of
//     hostnames the cache holds a tenant for (expired or invalidated):
//     those are bounded by the cache's size and TTL. Negative answers live
//     in their own, smaller LRUs (cache.Options.NegativeSize), so a flood
//     of random hostnames evicts no tenant.
//   - BatchLookup answers each distinct hostname once (a repeated one gets
//     INVALID_ARGUMENT naming its first entry) and stops adding tenants at
//     MaxBatchResponse bytes (the rest are RESOURCE_EXHAUSTED).
//
// A refusal is RESOURCE_EXHAUSTED with a message naming the cap and the tcs
// flag that sets it; when waiting helps, the trailer retry-after
// (TrailerRetryAfter, a Go duration) says how long. tcs_lookup_shed_total
// counts refusals by reason, a fixed set. Failures logged per request
// (replica reads, internal errors) are logged at most once per 10 s, the
// next line counting those it left out.
//
// Over gRPC a Lookup answer is not marshalled from a tenant message: the
// cache holds each tenant pre-serialised, and the server splices those bytes
// in as field 1 of the LookupResponse (which tcs.proto numbers 1 for this
// purpose), leaving the response's Tenant field unset in Go. Calling the
// Server's methods directly (in process) gives ordinary, decoded responses.
package lookup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/spanctx"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// Limits and defaults.
const (
	// MaxBatch is the most hostnames one BatchLookup may ask for.
	MaxBatch = 100
	// MaxHostnameInput is the most bytes of a requested hostname the server
	// reads; longer ones are INVALID_ARGUMENT before any work is done.
	MaxHostnameInput = 1024
	// DefaultHeartbeatInterval is Config.HeartbeatInterval's default.
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultWatchBuffer is Config.WatchBuffer's default.
	DefaultWatchBuffer = 256
	// DefaultFeedTimeout is Config.FeedTimeout's default: three times the
	// interval at which appliers send feed heartbeats by default (5 s).
	DefaultFeedTimeout = 15 * time.Second
	// DefaultFeedDownTTL is Config.FeedDownTTL's default.
	DefaultFeedDownTTL = 5 * time.Second
)

// maxHostname is the longest normalised hostname: a cache key is never
// longer, so a longer request skips the cache's fast path.
const maxHostname = 253

// Config configures a Server. Zero fields take the defaults described.
type Config struct {
	// Region is the region this server answers for, reported in every
	// response (for example "eu-west-1").
	Region string
	// Replica is the region's replica table; the server only reads it
	// (LookupHostname). Required.
	Replica tcs.Replica
	// Feed is the region's invalidation feed, subscribed to by Run. Nil
	// means no invalidations: answers are fresh only to their TTL.
	Feed tcs.Feed
	// Cache configures the cache (see cache.Options for its defaults, and
	// its Fallback reader). A nil Cache.Now takes Now.
	Cache cache.Options
	// FeedTimeout is how long the feed may deliver nothing (no
	// invalidation, no heartbeat) before it counts as down; it also counts
	// as down from when a subscription fails until the feed delivers again.
	// While it is down the cache's TTLs are limited to FeedDownTTL, Watch
	// streams are ended and refused (UNAVAILABLE), and when it delivers
	// again the whole cache expires (see the package comment). Negative
	// turns the detection off (so does a nil Feed). Default
	// DefaultFeedTimeout (15 s), which suits appliers that send a heartbeat
	// every 5 s.
	FeedTimeout time.Duration
	// FeedDownTTL bounds the cache's TTL and negative TTL while the feed is
	// down. Default DefaultFeedDownTTL (5 s).
	FeedDownTTL time.Duration
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// TracerProvider makes the "invalidate" span of each traced
	// invalidation from the feed (one that carries a trace context): the
	// child of the applier's "apply" span, covering the cache invalidation
	// and the fan-out to Watch streams. Nil means no spans. (RPC spans come
	// from interceptors in ServeOptions.ServerOptions: see
	// internal/telemetry's GRPCLeafServerOptions.)
	TracerProvider trace.TracerProvider
	// Registerer receives the server's metrics (named tcs_lookup_*); wrap
	// it with prometheus.WrapRegistererWith to tell several servers of one
	// process apart. Nil means a new registry, with the Go and process
	// collectors, returned by Registry.
	Registerer prometheus.Registerer
	// HeartbeatInterval is how often Watch streams carry a Heartbeat.
	// Default DefaultHeartbeatInterval (5 s).
	HeartbeatInterval time.Duration
	// WatchBuffer is how many messages may wait for one Watch stream before
	// it is sent a Resync instead. Default DefaultWatchBuffer (256).
	WatchBuffer int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// ReplicaAdmin serves the replica admin API (tcs.admin.v1.ReplicaAdmin:
	// ScanDocs, ScanHosts), which reads the replica page by page for tcsctl
	// verify and repair, to callers authenticated with the replica-scan role
	// (ServeOptions.Auth); without authentication every call is refused. A
	// Replica that is not a tcs.Scanner leaves it off.
	ReplicaAdmin bool

	// Caps and limits (see "Load shedding" in the package comment). Each is
	// per node, or per caller (CallerOf: the authenticated identity, else
	// the peer's IP address); zero takes the default, negative turns it
	// off. What they refuse is RESOURCE_EXHAUSTED, with a message naming
	// the cap and the tcs flag that sets it.

	// MaxWatchStreams caps the Watch streams open on the node. Default
	// DefaultMaxWatchStreams (10,000).
	MaxWatchStreams int
	// MaxWatchPerCaller caps the Watch streams one caller has open.
	// Default DefaultMaxWatchPerCaller (1,000).
	MaxWatchPerCaller int
	// LookupRate is how many hostnames a second one caller may look up (a
	// Lookup counts one, a BatchLookup one per distinct hostname), in
	// bursts of a second's worth (at least MaxBatch). A call over it is
	// refused whole, with a retry-after trailer. Default DefaultLookupRate
	// (50,000).
	LookupRate float64
	// MissRate and MissRatePerCaller are the miss budget: how many lookups
	// a second, on the node and per caller, of hostnames the cache holds no
	// tenant for (made up, known to have none, or never asked for) may go
	// on to read the replica, in bursts of a second's worth. A lookup over
	// budget is answered with the entry the cache keeps for it, stale (a
	// NOT_FOUND, usually), or else RESOURCE_EXHAUSTED with a retry-after
	// trailer. Lookups of hostnames the cache holds a tenant for, expired
	// or invalidated, are never refused: their reads are bounded by the
	// cache's size and TTL, and they are what keeps the hot set served.
	// Defaults DefaultMissRate (10,000) and DefaultMissRatePerCaller
	// (2,000).
	MissRate, MissRatePerCaller float64

	// HotKeysFile is a file on local disk where the server keeps the
	// hostnames it answers most (the HotKeys most recently used tenant
	// answers of its cache), written atomically every HotKeysInterval and
	// when Run ends, after the warm-up. When Run starts it reads them back
	// and, once the feed is subscribed, fills the cache with them from the
	// replica before reporting ready (see Ready). Empty: no warm-up, no
	// file.
	HotKeysFile string
	// HotKeys is how many hostnames HotKeysFile holds. Default
	// DefaultHotKeys (10,000).
	HotKeys int
	// HotKeysInterval is how often HotKeysFile is written. Default
	// DefaultHotKeysInterval (1 min).
	HotKeysInterval time.Duration
	// WarmTimeout bounds the warm-up: past it the server is ready with
	// whatever it loaded. Negative: no warm-up. Default DefaultWarmTimeout
	// (30 s).
	WarmTimeout time.Duration
	// WarmConcurrency is how many replica reads the warm-up makes at once.
	// Default cache.DefaultWarmConcurrency (16).
	WarmConcurrency int
	// HealthInterval is how often readiness is re-evaluated (and a replica
	// counted unreadable probed). Default DefaultHealthInterval (1 s).
	HealthInterval time.Duration
	// AckTenants is how many tenants' last invalidation the node
	// remembers, to tell which Watch clients have acknowledged it (see
	// acks.go; a tenant beyond it is judged by the oldest one remembered).
	// Default DefaultAckTenants (100,000).
	AckTenants int
	// AckGrace is how long a Watch stream may go without its first Ack
	// before its client counts as not acknowledging (built before acks)
	// rather than lagging. Default DefaultAckGrace (5 s).
	AckGrace time.Duration
	// LiveTimeout is how long the health loop may not run, or the feed
	// goroutine spend on one message, before Live fails. Default
	// DefaultLiveTimeout (30 s).
	LiveTimeout time.Duration
}

// Server is the lookup server. Its methods are the TenantContextService;
// call them directly, or serve them with Register or Serve.
type Server struct {
	tcsv1.UnimplementedTenantContextServiceServer

	region   string
	replica  tcs.Replica
	feed     tcs.Feed
	log      *slog.Logger
	tracer   trace.Tracer // nil without a TracerProvider
	registry *prometheus.Registry
	m        *metrics
	cache    *cache.Cache
	now      func() time.Time
	interval time.Duration
	buffer   int

	admin   *adminServer // nil: the replica admin API is not served
	running atomic.Bool

	lim                 *limits
	maxWatch            int // <= 0: no cap
	maxWatchPerCaller   int // <= 0: no cap
	readFailLog, errLog logLimiter

	feedTimeout time.Duration // <= 0: liveness detection off
	feedDownTTL time.Duration
	readTimeout time.Duration // the cache's, for the replica reads the server makes itself

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	// watchCallers counts the open Watch streams per caller (callers with
	// none are removed).
	watchCallers map[Caller]int
	// bcastMu serialises broadcasts; bcastList is the list of streams a
	// broadcast walks, kept between broadcasts (under bcastMu).
	bcastMu   sync.Mutex
	bcastList []*watcher
	stopOnce  sync.Once
	stopping  chan struct{} // closed when Watch streams must end
	// sessions maps the session id of each open Watch stream to its
	// watcher, for AckStream (which takes no lock but the map's).
	sessions sync.Map
	acks     ackState // Server.mu
	feedState
	healthState
}

// feedState is what the server knows of its feed's liveness. Server.mu
// guards it.
type feedState struct {
	// lastSign is when the feed last delivered, or when Run started (unix
	// nanoseconds).
	lastSign int64
	// subFailed is set when a subscription ended with an error, until the
	// feed delivers again.
	subFailed bool
	down      bool
	downSince time.Time
	// downCh is closed when the feed goes down, ending the Watch streams
	// that started while it was up; a new one is made when it comes back.
	downCh chan struct{}
}

var _ tcsv1.TenantContextServiceServer = (*Server)(nil)

// New returns a Server. It panics if cfg.Replica is nil, or if its metrics
// cannot be registered (a registry that already has them).
func New(cfg Config) *Server {
	if cfg.Replica == nil {
		panic("lookup: Config.Replica is nil")
	}
	s := &Server{
		region:   cfg.Region,
		replica:  cfg.Replica,
		feed:     cfg.Feed,
		log:      cfg.Logger,
		now:      cfg.Now,
		interval: cfg.HeartbeatInterval,
		buffer:   cfg.WatchBuffer,
		watchers: make(map[*watcher]struct{}),
		stopping: make(chan struct{}),

		watchCallers:      make(map[Caller]int),
		maxWatch:          cfg.MaxWatchStreams,
		maxWatchPerCaller: cfg.MaxWatchPerCaller,

		feedTimeout: cfg.FeedTimeout,
		feedDownTTL: cfg.FeedDownTTL,
		readTimeout: readTimeoutOf(cfg.Cache),
	}
	if cfg.TracerProvider != nil {
		s.tracer = spanctx.Tracer(cfg.TracerProvider)
	}
	s.downCh = make(chan struct{})
	s.acks.init(cfg)
	s.healthState.init(cfg)
	if s.feedTimeout == 0 {
		s.feedTimeout = DefaultFeedTimeout
	}
	if s.feed == nil {
		s.feedTimeout = -1
	}
	if s.feedDownTTL <= 0 {
		s.feedDownTTL = DefaultFeedDownTTL
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = DefaultHeartbeatInterval
	}
	if s.buffer <= 0 {
		s.buffer = DefaultWatchBuffer
	}
	if s.maxWatch == 0 {
		s.maxWatch = DefaultMaxWatchStreams
	}
	if s.maxWatchPerCaller == 0 {
		s.maxWatchPerCaller = DefaultMaxWatchPerCaller
	}
	s.lim = newLimits(cfg, s.now)
	s.readFailLog = newLogLimiter(failureLogEvery, s.now)
	s.errLog = newLogLimiter(failureLogEvery, s.now)
	reg := cfg.Registerer
	if reg == nil {
		s.registry = prometheus.NewRegistry()
		s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = s.registry
	}
	opts := cfg.Cache
	if opts.Now == nil {
		opts.Now = s.now
	}
	onReadError := opts.OnReadError
	opts.OnReadError = func(hostname string, err error) {
		s.readFailLog.log(s.log, slog.LevelWarn, "replica read failed", "hostname", hostname, "err", err)
		if onReadError != nil {
			onReadError(hostname, err)
		}
	}
	s.cache = cache.New(cfg.Replica, opts)
	if cfg.ReplicaAdmin {
		if sc, ok := cfg.Replica.(tcs.Scanner); ok {
			s.admin = newAdminServer(s, sc)
		} else {
			s.log.Warn("replica admin API asked for, but the replica cannot be scanned: the replica admin API is not served", "replica", fmt.Sprintf("%T", cfg.Replica))
		}
	}
	s.m = newMetrics(reg, s.cache)
	reg.MustRegister(s.healthState.collectors()...)
	return s
}

// Registry returns the registry holding the server's metrics when
// Config.Registerer was nil, and nil otherwise.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Cache returns the server's cache.
func (s *Server) Cache() *cache.Cache { return s.cache }

// Register registers the service on gs, in its wire form (see the package
// comment), and the replica admin service if the server has one (see
// Config.ReplicaAdmin).
func (s *Server) Register(gs grpc.ServiceRegistrar) {
	tcsv1.RegisterTenantContextServiceServer(gs, wireServer{s})
	if s.admin != nil {
		adminv1.RegisterReplicaAdminServer(gs, s.admin)
	}
}

// lookup answers one requested hostname, exactly as the client sent it,
// for caller c (whose limiters are cl).
func (s *Server) lookup(ctx context.Context, raw string, c Caller, cl *callerLimits) (cache.Result, error) {
	// A cache key is a normalised hostname, and normalising one returns it
	// unchanged; so a hit on the raw input is the answer, and the common
	// case (clients send hostnames already normalised) skips normalising.
	if len(raw) <= maxHostname {
		if res, ok := s.cache.Peek(raw); ok {
			return res, nil
		}
	}
	h, err := s.normalize(raw)
	if err != nil {
		return cache.Result{}, err
	}
	return s.cache.LookupAdmit(ctx, h, s.admit(c, cl))
}

// normalize normalises a requested hostname, refusing one too long to read.
func (s *Server) normalize(raw string) (string, error) {
	if len(raw) > MaxHostnameInput {
		return "", &tenant.Error{
			Code:    tenant.Invalid,
			Message: "invalid hostname",
			Fields: []tenant.FieldError{{
				Field:  "hostname",
				Reason: fmt.Sprintf("is too long: %d bytes (a hostname is at most %d characters)", len(raw), maxHostname),
			}},
		}
	}
	return tenant.NormalizeHostname(raw)
}

// unary checks a Lookup or BatchLookup of n distinct hostnames against its
// caller's lookup rate, and returns the caller and its limiters.
func (s *Server) unary(ctx context.Context, n int) (Caller, *callerLimits, error) {
	c := CallerOf(ctx)
	cl := s.lim.caller(c)
	return c, cl, s.allowLookups(c, cl, n)
}

// Lookup implements TenantContextService.Lookup, returning the tenant
// decoded (the gRPC path splices it instead; see the package comment).
func (s *Server) Lookup(ctx context.Context, req *tcsv1.LookupRequest) (*tcsv1.LookupResponse, error) {
	start := time.Now()
	res, err := s.lookupOne(ctx, req)
	var t *tcsv1.Tenant
	if err == nil {
		t, err = res.Tenant()
	}
	if err != nil {
		s.failTrailers(ctx, res, err)
		return nil, s.fail(s.m.lookupLatency, start, err)
	}
	s.m.done(s.m.lookupLatency, start, codes.OK)
	return &tcsv1.LookupResponse{
		Tenant: t,
		Stale:  res.Stale,
		Region: s.region,
		Age:    durationpb.New(res.Age(s.now())),
	}, nil
}

// Trailer keys that mark a stale NOT_FOUND answer of Lookup, whose
// response (an error status) has no stale and age fields.
const (
	TrailerStale = "tcs-stale" // "true"
	TrailerAge   = "tcs-age"   // how long ago it was read, as a Go duration ("12.5s")
)

// lookupOne answers a Lookup: its caller's lookup rate, then lookup (or
// lookupAtLeast, with min_version).
func (s *Server) lookupOne(ctx context.Context, req *tcsv1.LookupRequest) (cache.Result, error) {
	c, cl, err := s.unary(ctx, 1)
	if err != nil {
		return cache.Result{}, err
	}
	if req.GetMinVersion() != 0 {
		return s.lookupAtLeast(ctx, req, c, cl)
	}
	return s.lookup(ctx, req.GetHostname(), c, cl)
}

// failTrailers marks a stale NOT_FOUND answer of a unary Lookup in the
// call's trailer, gives a refused one its retry hint, and one of a region
// behind min_version the version it has (outside a gRPC call it does
// nothing).
func (s *Server) failTrailers(ctx context.Context, res cache.Result, err error) {
	var shed *shedError
	if errors.As(err, &shed) {
		retryTrailer(ctx, shed.retryAfter)
		return
	}
	var be *behindError
	if errors.As(err, &be) {
		be.trailer(ctx)
		return
	}
	if !res.Stale || tenant.ErrorCode(err) != tenant.NotFound {
		return
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs(TrailerStale, "true", TrailerAge, res.Age(s.now()).String()))
}

// fail counts a failed lookup and returns its status error.
func (s *Server) fail(h prometheus.Observer, start time.Time, err error) error {
	st := s.status(err)
	s.m.done(h, start, st.Code())
	return st.Err()
}

// BatchLookup implements TenantContextService.BatchLookup.
func (s *Server) BatchLookup(ctx context.Context, req *tcsv1.BatchLookupRequest) (*tcsv1.BatchLookupResponse, error) {
	return s.batchLookup(ctx, req, false)
}

// batchLookup answers a BatchLookup; spliced says whether tenants are
// spliced in as bytes (the wire form) or decoded. Each distinct hostname
// is looked up once: a later copy of one gets INVALID_ARGUMENT pointing at
// the first. The tenants of one response add up to at most
// MaxBatchResponse bytes: results past it are RESOURCE_EXHAUSTED.
func (s *Server) batchLookup(ctx context.Context, req *tcsv1.BatchLookupRequest, spliced bool) (*tcsv1.BatchLookupResponse, error) {
	start := time.Now()
	names := req.GetHostnames()
	if len(names) > MaxBatch {
		s.m.batchLatency.Observe(time.Since(start).Seconds())
		return nil, s.status(&tenant.Error{
			Code:    tenant.Invalid,
			Message: "too many hostnames",
			Fields: []tenant.FieldError{{
				Field:  "hostnames",
				Reason: fmt.Sprintf("has %d entries; at most %d are allowed", len(names), MaxBatch),
			}},
		}).Err()
	}
	// first[i] is the index of the first copy of names[i].
	first := make([]int, len(names))
	seen := make(map[string]int, len(names))
	for i, raw := range names {
		j, dup := seen[raw]
		if !dup {
			j = i
			seen[raw] = i
		}
		first[i] = j
	}
	c, cl, err := s.unary(ctx, len(seen))
	if err != nil {
		s.failTrailers(ctx, cache.Result{}, err)
		return nil, s.fail(s.m.batchLatency, start, err)
	}
	// Fresh hits are answered inline; the rest (each a replica read, up to
	// the read timeout) are read concurrently, so that a batch of misses
	// costs about one read, not one per hostname.
	outs := make([]batchOutcome, len(names))
	var misses []int
	for i, raw := range names {
		if first[i] != i {
			continue
		}
		if len(raw) <= maxHostname {
			if res, ok := s.cache.Peek(raw); ok {
				outs[i].res = res
				continue
			}
		}
		misses = append(misses, i)
	}
	if len(misses) > 0 {
		work := make(chan int, len(misses))
		for _, i := range misses {
			work <- i
		}
		close(work)
		var wg sync.WaitGroup
		for range min(len(misses), batchReaders) {
			wg.Go(func() {
				for i := range work {
					outs[i].res, outs[i].err = s.lookup(ctx, names[i], c, cl)
				}
			})
		}
		wg.Wait()
		// The whole call fails only if the caller went away: the answers
		// would never be read.
		if err := ctx.Err(); err != nil {
			return nil, s.fail(s.m.batchLatency, start, err)
		}
	}
	resp := &tcsv1.BatchLookupResponse{
		Results: make([]*tcsv1.BatchLookupResult, len(names)),
		Region:  s.region,
	}
	var size int           // tenant bytes in the response so far
	var wait time.Duration // the longest retry hint of a refused hostname
	for i, raw := range names {
		r := &tcsv1.BatchLookupResult{Hostname: raw}
		resp.Results[i] = r
		if j := first[i]; j != i {
			s.m.lookups[codes.InvalidArgument].Inc()
			r.Code = int32(codes.InvalidArgument)
			r.Message = fmt.Sprintf("duplicate of hostnames[%d]: each hostname is answered once, in the result of its first entry", j)
			continue
		}
		o := &outs[i]
		if o.err == nil {
			if size += len(o.res.Encoded()); size > MaxBatchResponse {
				s.m.shed[shedBatchResponse].Inc()
				o.res, o.err = cache.Result{}, &shedError{reason: shedBatchResponse, msg: fmt.Sprintf(
					"the tenants of this response reached its size cap of %d bytes (lookup.MaxBatchResponse): ask for this hostname in another call", MaxBatchResponse)}
			}
		}
		var shed *shedError
		if errors.As(o.err, &shed) {
			wait = max(wait, shed.retryAfter)
		}
		s.batchResult(r, o.res, o.err, spliced)
	}
	retryTrailer(ctx, wait)
	s.m.batchLatency.Observe(time.Since(start).Seconds())
	return resp, nil
}

// batchOutcome is the lookup of one hostname of a BatchLookup.
type batchOutcome struct {
	res cache.Result
	err error
}

// batchReaders is how many of one BatchLookup's misses are read at once.
const batchReaders = 16

// batchResult fills r, one BatchLookup answer, from a lookup's outcome.
func (s *Server) batchResult(r *tcsv1.BatchLookupResult, res cache.Result, err error, spliced bool) {
	if err == nil {
		if spliced {
			b := make([]byte, 0, len(res.Field1)+1)
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, res.Encoded())
			r.ProtoReflect().SetUnknown(b)
		} else {
			r.Tenant, err = res.Tenant()
		}
	}
	if err != nil {
		st := s.status(err)
		s.m.lookups[st.Code()].Inc()
		r.Code, r.Message = int32(st.Code()), st.Message()
		if res.Stale && st.Code() == codes.NotFound {
			r.Stale, r.Age = true, durationpb.New(res.Age(s.now()))
		}
		return
	}
	r.Stale, r.Age = res.Stale, durationpb.New(res.Age(s.now()))
	s.m.lookups[codes.OK].Inc()
}

// wireServer is the Server as registered on a grpc.Server: Lookup and
// BatchLookup splice the cached tenant bytes into their responses instead of
// decoding them into messages that gRPC would at once encode again.
type wireServer struct{ *Server }

// Lookup implements TenantContextService.Lookup with the tenant spliced in
// as the response's field 1.
func (w wireServer) Lookup(ctx context.Context, req *tcsv1.LookupRequest) (*tcsv1.LookupResponse, error) {
	s := w.Server
	start := time.Now()
	res, err := s.lookupOne(ctx, req)
	if err != nil {
		s.failTrailers(ctx, res, err)
		return nil, s.fail(s.m.lookupLatency, start, err)
	}
	resp := &tcsv1.LookupResponse{
		Stale:  res.Stale,
		Region: s.region,
		Age:    durationpb.New(res.Age(s.now())),
	}
	resp.ProtoReflect().SetUnknown(res.Field1)
	s.m.done(s.m.lookupLatency, start, codes.OK)
	return resp, nil
}

// BatchLookup implements TenantContextService.BatchLookup with each tenant
// spliced in as its result's field 2.
func (w wireServer) BatchLookup(ctx context.Context, req *tcsv1.BatchLookupRequest) (*tcsv1.BatchLookupResponse, error) {
	return w.batchLookup(ctx, req, true)
}
