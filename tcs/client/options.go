package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Defaults for the options not given to New.
const (
	DefaultCacheSize       = 1_000_000
	DefaultTTL             = 30 * time.Second
	DefaultNegativeTTL     = 5 * time.Second
	DefaultMaxStale        = 5 * time.Minute
	DefaultDisconnectedTTL = time.Second
	DefaultHedgeDelay      = 20 * time.Millisecond
	DefaultLookupTimeout   = time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 5 * time.Second
	// DefaultHeartbeatTimeout is how long a Watch stream may stay silent
	// before its first Heartbeat tells the client the server's interval
	// (three times the server's default interval of 5 s).
	DefaultHeartbeatTimeout = 15 * time.Second
	// DefaultKeepaliveTime and DefaultKeepaliveTimeout: a connection that
	// has carried nothing for 20 s is pinged, and closed if the ping is not
	// answered within 10 s, so the RPCs on a dead path fail (and move to
	// the next region) instead of waiting for their deadline. tcs/lookup
	// servers accept pings every 10 s.
	DefaultKeepaliveTime    = 20 * time.Second
	DefaultKeepaliveTimeout = 10 * time.Second
	// DefaultMonotonicTenants is how many tenants a Client remembers the
	// newest returned version of, for monotonic reads (see
	// WithMonotonicReads): about 180 bytes each, plus the document of a
	// tenant no longer in the cache.
	DefaultMonotonicTenants = 100_000
)

// Option configures New.
type Option func(*config)

type config struct {
	regions          []string
	dial             []grpc.DialOption
	carry            func(caller, call context.Context) context.Context // nil: nothing (WithRPCStats, WithRPCInterceptor)
	tls              *tls.Config
	token            string
	cacheSize        int
	ttl              time.Duration
	negativeTTL      time.Duration
	maxStale         time.Duration
	disconnectedTTL  time.Duration
	hedgeDelay       time.Duration
	hedgeSet         bool
	lookupTimeout    time.Duration
	breakerFailures  int
	breakerCooldown  time.Duration
	heartbeatTimeout time.Duration
	keepaliveTime    time.Duration
	keepaliveTimeout time.Duration
	monotonic        int
	balancing        Balancing
	log              *slog.Logger
	hooks            Hooks
	now              func() time.Time
	clockSet         bool
	preciseClock     bool
	noWatch          bool
	ackInterval      time.Duration // see WithAckInterval (ack.go)
}

func defaults() config {
	return config{
		cacheSize:        DefaultCacheSize,
		ttl:              DefaultTTL,
		negativeTTL:      DefaultNegativeTTL,
		maxStale:         DefaultMaxStale,
		disconnectedTTL:  DefaultDisconnectedTTL,
		hedgeDelay:       DefaultHedgeDelay,
		lookupTimeout:    DefaultLookupTimeout,
		breakerFailures:  DefaultBreakerFailures,
		breakerCooldown:  DefaultBreakerCooldown,
		heartbeatTimeout: DefaultHeartbeatTimeout,
		keepaliveTime:    DefaultKeepaliveTime,
		keepaliveTimeout: DefaultKeepaliveTimeout,
		monotonic:        DefaultMonotonicTenants,
		balancing:        RoundRobin,
		now:              time.Now,
	}
}

// WithRegions sets the lookup endpoints, one per region, ordered local
// region first: lookups go to the first region whose circuit breaker is
// closed, and hedge or fail over down the list. Required.
//
// An endpoint is a gRPC target: "host:port" or "dns:///host:port" (the
// same: the name is resolved through DNS, and again whenever a connection
// to one of its addresses is lost, at most every 30 s), or another
// resolver's "scheme:///…". A region served by several nodes is one
// endpoint whose name resolves to every node, such as a Kubernetes
// headless Service; WithBalancing says how the calls spread over them.
func WithRegions(addrs ...string) Option {
	return func(c *config) { c.regions = append([]string(nil), addrs...) }
}

// Balancing is how a Client spreads a region's calls over the addresses
// the region's endpoint resolves to (see WithBalancing).
type Balancing string

// The balancing policies of WithBalancing.
const (
	// RoundRobin connects to every address the endpoint resolves to and
	// sends each call to the next ready one in turn, so every node of the
	// region gets a share. A node that reports NOT_SERVING through gRPC
	// health (service tcs.v1.TenantContextService: starting up, its
	// replica unreadable past max-stale, shutting down) gets no calls
	// until it reports SERVING again; one without the health service
	// counts as serving. When no node of a region is ready, its calls fail
	// at once and move to the next region. The default.
	RoundRobin Balancing = "round_robin"
	// PickFirst connects to one address at a time (the first that
	// accepts) and sends every call there: for an endpoint that is a
	// single address, or a load balancer in front of the nodes.
	PickFirst Balancing = "pick_first"
)

// serviceConfig is the gRPC service config of the policy.
func (b Balancing) serviceConfig() (string, error) {
	switch b {
	case RoundRobin:
		return `{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":"` +
			tcsv1.TenantContextService_ServiceDesc.ServiceName + `"}}`, nil
	case PickFirst:
		return `{"loadBalancingConfig":[{"pick_first":{}}]}`, nil
	}
	return "", fmt.Errorf("tcs client: unknown balancing %q (use client.RoundRobin or client.PickFirst)", string(b))
}

// WithBalancing sets how each region's calls spread over the addresses
// its endpoint resolves to: RoundRobin (the default) or PickFirst.
//
// A client learns of a node added to a region when it resolves the
// region's name again, which it does whenever it loses a connection (over
// DNS at most every 30 s). tcs nodes close every connection gracefully
// (GOAWAY) after --max-connection-age (1 h by default, ±10%), so with
// RoundRobin an added node gets its share of a client's calls within about
// that age; TestLoadSpreading checks at least 15% of the calls within two
// ages. A node that stops gracefully reports NOT_SERVING, sends GOAWAY
// and finishes the calls it has: the calls go to the other nodes and none
// fails. The Watch stream lives on one node; when that node ends it (its
// connection aged, after the grace), the client watches again, on any node.
func WithBalancing(b Balancing) Option {
	return func(c *config) { c.balancing = b }
}

// WithDialOptions adds gRPC dial options to every region's connection (for
// example interceptors for tracing). They come after the client's own, so
// they override them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dial = append(c.dial, opts...) }
}

// WithRPCStats instruments every region's connection with the gRPC stats
// handler h (clientotel.WithTracing uses it with an OpenTelemetry one; the
// client itself links no tracing library). A lookup's RPC does not run on
// its caller's context, since the callers that miss on one hostname at once
// share one RPC (and one caller giving up must not cancel it for the
// others); carry, if not nil, returns the RPC's context call with what h
// needs from caller, the context of the lookup that led it (its trace span,
// say). It is called on cache misses only.
func WithRPCStats(h stats.Handler, carry func(caller, call context.Context) context.Context) Option {
	return func(c *config) {
		c.dial = append(c.dial, grpc.WithStatsHandler(h))
		c.carry = carry
	}
}

// WithRPCInterceptor instruments every region's connection with the unary
// client interceptor i (Lookup and BatchLookup; the Watch stream runs under
// no caller's context). clientotel.WithTracing uses it to trace the RPCs of
// cache misses without a stats handler, which would cost every call grpc-go's
// stats events. carry is as for WithRPCStats.
func WithRPCInterceptor(i grpc.UnaryClientInterceptor, carry func(caller, call context.Context) context.Context) Option {
	return func(c *config) {
		c.dial = append(c.dial, grpc.WithChainUnaryInterceptor(i))
		c.carry = carry
	}
}

// WithTLS connects to every region over TLS with cfg (set Certificates for
// mutual TLS). Without it the client connects in plaintext, which suits a
// loopback or an already encrypted network only.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}

// WithToken sends token as a bearer token ("authorization: Bearer …") with
// every call, Watch included: a credential of role lookup (tcsctl token
// new --role lookup). Without WithTLS it is sent only to loopback regions:
// New refuses a region elsewhere, since the token would cross the network
// in the clear. For mutual TLS instead, give WithTLS a client certificate.
func WithToken(token string) Option {
	return func(c *config) { c.token = token }
}

// WithCacheSize bounds the cache to n entries (tenants and negative
// answers). Zero or negative disables caching. Default DefaultCacheSize.
func WithCacheSize(n int) Option {
	return func(c *config) { c.cacheSize = n }
}

// WithTTL sets how long a tenant answer is served from the cache without
// asking a region, counted from when the region read it. Default DefaultTTL.
func WithTTL(d time.Duration) Option {
	return func(c *config) { c.ttl = d }
}

// WithNegativeTTL sets how long "no tenant owns this hostname" is cached.
// Zero or negative means not cached. Default DefaultNegativeTTL.
func WithNegativeTTL(d time.Duration) Option {
	return func(c *config) { c.negativeTTL = d }
}

// WithMaxStale sets the oldest answer (counted from when a region read it)
// that is served, marked stale, when every region fails. Zero or negative
// means never serve stale. Default DefaultMaxStale.
func WithMaxStale(d time.Duration) Option {
	return func(c *config) { c.maxStale = d }
}

// WithDisconnectedTTL sets the TTL that replaces the TTL while the Watch
// stream is down (before the first one is up, and between a lost stream and
// the Resync of the next), bounding how stale an answer can be when
// invalidations cannot arrive. Default DefaultDisconnectedTTL (1 s).
func WithDisconnectedTTL(d time.Duration) Option {
	return func(c *config) { c.disconnectedTTL = d }
}

// WithHedgeDelay sets how long a lookup waits for a region before it sends
// the same lookup to the next region too, taking the first answer. Zero or
// negative disables hedging (the next region is asked only after a failure).
// Without it the delay adapts: the p95 of the last 256 successful lookups to
// the region asked first, between 2 ms and 250 ms (DefaultHedgeDelay until
// there are 64).
func WithHedgeDelay(d time.Duration) Option {
	return func(c *config) { c.hedgeDelay, c.hedgeSet = d, true }
}

// WithLookupTimeout bounds one cache miss across all regions (hedges and
// failovers included), whatever the caller's deadline. Default
// DefaultLookupTimeout.
func WithLookupTimeout(d time.Duration) Option {
	return func(c *config) { c.lookupTimeout = d }
}

// WithCircuitBreaker makes a region that failed failures times in a row be
// skipped for cooldown, after which one lookup probes it (success closes the
// breaker, failure opens it for another cooldown). Defaults
// DefaultBreakerFailures and DefaultBreakerCooldown.
func WithCircuitBreaker(failures int, cooldown time.Duration) Option {
	return func(c *config) { c.breakerFailures, c.breakerCooldown = failures, cooldown }
}

// WithKeepalive makes each region's connection send an HTTP/2 ping after
// interval without receiving anything, and close the connection if no
// answer comes within timeout: a region whose network path died (no RST, no
// FIN) is then noticed within interval+timeout, its RPCs fail over, and the
// connection is dialled again. gRPC raises an interval below 10 s to 10 s,
// and a server closes connections that ping more often than its
// enforcement policy allows (tcs/lookup: every 10 s). An interval of zero
// or less turns keepalive off. Defaults DefaultKeepaliveTime and
// DefaultKeepaliveTimeout.
func WithKeepalive(interval, timeout time.Duration) Option {
	return func(c *config) { c.keepaliveTime, c.keepaliveTimeout = interval, timeout }
}

// WithMonotonicReads sets how many tenants the Client remembers the newest
// returned version of: the tenants most recently answered by a region
// (least recently answered forgotten first). For those, the Client never
// returns an older version of the tenant than one it has returned before
// (see the package comment); for a tenant it has forgotten, the guarantee
// lapses until a region answers for it again. Zero or negative turns
// monotonic reads off: answers are taken as the regions give them. Default
// DefaultMonotonicTenants.
func WithMonotonicReads(tenants int) Option {
	return func(c *config) { c.monotonic = tenants }
}

// WithLogger sends the client's logs (stream losses, breakers) to l. Default:
// discarded.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

// WithMetrics sets the hooks the client calls on cache hits, misses, stale
// serves, hedges and failovers, to wire to any metrics library.
func WithMetrics(h Hooks) Option {
	return func(c *config) { c.hooks = h }
}

// WithPreciseClock makes hits read the clock (time.Now: about 30 ns on a
// VM's kvm-clock) instead of a coarse clock that a goroutine updates every
// millisecond. It suits a process whose lookups are not in-process calls of
// tens of nanoseconds but requests of tens of microseconds, where the
// ticker's thousand wake-ups a second cost more than they save: tcs-sidecar
// uses it (its idle loopback hit took 35.2 µs at the median with the
// ticker, 30.7 without: BenchmarkSidecar, one run, -count 8). Default: the
// coarse clock.
func WithPreciseClock() Option {
	return func(c *config) { c.preciseClock = true }
}

// WithClock sets the clock the cache measures ages with (for tests).
// Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now, c.clockSet = now, true }
}
