// Package client is the TCS client library that compute nodes link to learn,
// on every request, which tenant owns a hostname.
//
// A Client answers from an in-process cache when it can (a hit on a hot
// tenant allocates nothing and takes tens of nanoseconds; cached tenants
// are kept serialised, out of the garbage collector's way, and only the hot
// ones decoded), and otherwise asks the lookup
// service of the first healthy region in its ordered list (local region
// first), hedging to the next region when the first is slow and failing
// over when it errs. Concurrent misses of one hostname make one RPC. A Watch
// stream on the current region invalidates cached answers as tenants
// change; while that stream is down the cache's TTL is shortened so that
// staleness stays bounded, and when every region fails an answer up to
// max-stale old is served, marked stale. LookupView answers with a
// read-only View of the cached document instead of a decoded tenant: a hit
// on any cached tenant then allocates nothing.
//
// # Monotonic reads
//
// A Client never returns an older version of a tenant (its document's
// Version, by tenant ID) than one it has already returned, to any of its
// callers: not from a cache hit, a region asked first, a hedge or a
// failover to a region whose replica is behind, a BatchLookup, a fill that
// raced with a newer one, a Watch resync or a stale answer. An answer from
// a region older than what the Client has returned is set aside and the
// next region asked at once (Hooks.Behind); if no region gives a version at
// least as new within the lookup timeout, the lookup returns that newest
// version again, from memory, with Meta.Remembered set (Hooks.Remembered),
// provided it lists the hostname and is younger than the TTL or max-stale.
// Otherwise (the newest version no longer lists the hostname: the regions
// that answered are behind a move of it) the lookup serves a stale answer of
// the hostname if it has one, and if not ErrNotFound with Meta.Stale and
// Meta.Remembered (when that version was read its tenant no longer owned
// the hostname; Age says how long ago that was); past the TTL or max-stale
// it fails with ErrUnavailable: it does not go backwards.
//
// Limits:
//   - Per Client: two Clients, or one restarted, may disagree.
//   - Per tenant: a hostname answered by another tenant than before (it
//     moved), or NOT_FOUND, is not a regression. A NOT_FOUND answer has no
//     version, so a region that has not yet applied a tenant's creation or
//     claim answers NOT_FOUND for its hostnames, and that is passed on.
//   - Bounded memory: the Client remembers the newest version of the
//     WithMonotonicReads tenants (DefaultMonotonicTenants) most recently
//     answered by a region. A tenant forgotten because more than that many
//     others were answered since is no longer guarded: an older version of
//     it can be returned once (what the cache still holds of it under the
//     hostnames of that answer is taken into account), after which it is
//     remembered again.
//
// # Read-your-writes
//
// LookupAtLeast(ctx, hostname, v) returns the tenant at version v or newer
// (v is what the catalog answered a write with), never older: from the
// cache when it holds such an answer (a hit, allocation-free), else from
// the regions, asked with LookupRequest.min_version. A region behind v says
// so (UNAVAILABLE with an ErrorInfo naming its version); the lookup moves to
// the next region at once without counting it against the region's circuit
// breaker, and when every region is behind, asks again with backoff until
// ctx ends, then fails with a *TooOldError (ErrTooOld) naming the newest
// version a region had. NOT_FOUND has no version and is returned as it is;
// LookupTenantAtLeast names the tenant too, so that a region that has not
// applied the tenant's creation or claim of the hostname counts as behind.
// The cache never replaces an answer with an older version of its tenant,
// whatever path brings it (see atleast.go).
//
// The package links gRPC and protobuf but not the AWS SDK nor any metrics
// library (a test checks it): wire Hooks to your own.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking, for RoundRobin
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Errors of Lookup, for errors.Is. Lookup returns them wrapped or as they
// are.
var (
	// ErrNotFound: no live tenant owns the hostname.
	ErrNotFound = errors.New("tcs: hostname not found")
	// ErrInvalidHostname: the hostname cannot be normalised (see
	// tenant.NormalizeHostname).
	ErrInvalidHostname = errors.New("tcs: invalid hostname")
	// ErrUnavailable: no region answered and no cached answer within
	// max-stale was left to serve.
	ErrUnavailable = errors.New("tcs: unavailable")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("tcs: client closed")
)

// Meta says where an answer came from.
type Meta struct {
	// Cached is true when the answer came from the client's cache.
	Cached bool
	// Stale is true when every region failed and the answer is an expired
	// cached one, served because it is younger than max-stale.
	Stale bool
	// Region is the region that read the answer from its replica, as it
	// names itself (or its address, if it did not).
	Region string
	// Age is how long ago that region read it.
	Age time.Duration
	// Remembered is true when the regions that answered hold only older
	// versions of the tenant than this Client had already returned (their
	// replicas are behind), so the newest version it returned before is
	// returned again, from memory, or, if that version no longer lists the
	// hostname, ErrNotFound with Stale (see Monotonic reads). Cached is
	// true too; Region and Age say when and where that version was read.
	Remembered bool
}

// Client looks up tenants by hostname. It is safe for concurrent use. Make
// it with New and Close it when done.
type Client struct {
	cfg     config
	log     *slog.Logger
	hooks   Hooks
	regions []*region
	cache   *cache
	hedge   *hedger
	flights flights

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watcher and the clock

	// silence is how long the current Watch stream may stay silent, in
	// nanoseconds: DefaultHeartbeatTimeout until a heartbeat tells the
	// server's interval. Tests wait on it.
	silence atomic.Int64

	ready readiness // for WaitReady
}

// New returns a Client for the regions of WithRegions. It dials lazily: New
// does not wait for any region to be reachable. ctx bounds nothing after New
// returns (Close stops the Client).
func New(ctx context.Context, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.regions) == 0 {
		return nil, errors.New("tcs client: no regions (use WithRegions)")
	}
	if cfg.lookupTimeout <= 0 {
		cfg.lookupTimeout = DefaultLookupTimeout
	}
	if cfg.breakerFailures <= 0 {
		cfg.breakerFailures = DefaultBreakerFailures
	}
	if cfg.breakerCooldown <= 0 {
		cfg.breakerCooldown = DefaultBreakerCooldown
	}
	if cfg.heartbeatTimeout <= 0 {
		cfg.heartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.disconnectedTTL <= 0 {
		cfg.disconnectedTTL = DefaultDisconnectedTTL
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	c := &Client{cfg: cfg, log: cfg.log, hooks: cfg.hooks}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.hooks.fill()
	c.ready.init()
	c.hedge = newHedger(cfg.hedgeDelay, cfg.hedgeSet)
	c.cache = newCache(cacheConfig{
		size:      cfg.cacheSize,
		ttl:       cfg.ttl,
		negTTL:    cfg.negativeTTL,
		maxStale:  cfg.maxStale,
		discTTL:   cfg.disconnectedTTL,
		window:    max(time.Minute, 2*cfg.lookupTimeout),
		now:       cfg.now,
		monotonic: cfg.monotonic,
	})

	creds := insecure.NewCredentials()
	if cfg.tls != nil {
		creds = credentials.NewTLS(cfg.tls)
	}
	sc, err := cfg.balancing.serviceConfig()
	if err != nil {
		return nil, err
	}
	// The service config is the client's own: one a resolver supplies
	// (a DNS TXT record) is ignored.
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithDisableServiceConfig(),
	}
	if cfg.token != "" {
		if cfg.tls == nil {
			for _, addr := range cfg.regions {
				if !isLoopback(addr) {
					return nil, fmt.Errorf("tcs client: WithToken without WithTLS would send the token in the clear to %s: add WithTLS (plaintext is for loopback regions only)", addr)
				}
			}
		}
		dial = append(dial, grpc.WithPerRPCCredentials(bearerToken{token: cfg.token, secure: cfg.tls != nil}))
	}
	if cfg.keepaliveTime > 0 {
		if cfg.keepaliveTimeout <= 0 {
			cfg.keepaliveTimeout = DefaultKeepaliveTimeout
		}
		dial = append(dial, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                cfg.keepaliveTime,
			Timeout:             cfg.keepaliveTimeout,
			PermitWithoutStream: true,
		}))
	}
	dial = append(dial, cfg.dial...)
	for _, addr := range cfg.regions {
		conn, err := grpc.NewClient(addr, dial...)
		if err != nil {
			for _, r := range c.regions {
				r.conn.Close()
			}
			return nil, fmt.Errorf("tcs client: dial %s: %w", addr, err)
		}
		c.regions = append(c.regions, &region{addr: addr, name: addr, conn: conn, api: tcsv1.NewTenantContextServiceClient(conn)})
	}

	c.ctx, c.cancel = context.WithCancel(context.Background())
	if !cfg.clockSet && !cfg.preciseClock {
		c.cache.ticking = true
		c.cache.coarse.Store(c.cache.clock())
		c.wg.Go(func() { c.cache.tick(c.ctx.Done()) })
	}
	if cfg.noWatch {
		c.cache.setWatching(true)
		c.ready.set(true, nil)
	} else {
		c.wg.Go(c.watch)
	}
	return c, nil
}

// Close stops the Watch stream and closes the connections. Lookups after
// Close fail with ErrClosed unless answered from the cache.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	var errs []error
	for _, r := range c.regions {
		errs = append(errs, r.conn.Close())
	}
	return errors.Join(errs...)
}

// Watching reports whether the invalidation stream is up (a Resync has been
// received on the current stream). While it is not, cached answers live for
// the disconnected TTL only. WaitReady waits for it.
func (c *Client) Watching() bool { return c.cache.watching() }

// Lookup returns the tenant that owns hostname (normalised as the catalog
// does; a hostname already normalised is looked up as it is).
//
// The returned tenant is shared with the cache and with every other caller:
// it must not be modified (Clone it to change it). A cache hit on a
// hostname given already normalised allocates nothing when its tenant is
// one of the hot ones the cache holds decoded (up to 32,768, the tenants
// most recently cached or hit, less some let go of at random; the others it
// keeps serialised, and decodes on their hit: LookupView does not); one
// that needs normalising (upper case, a port, a trailing dot) pays for it
// first. Errors are ErrNotFound,
// ErrInvalidHostname, ErrUnavailable, ErrClosed or the caller's context
// error, for errors.Is.
func (c *Client) Lookup(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	if r := c.cache.lookup(hostname); r.s != nil && c.cache.fresh(r.s, c.cache.fast()) {
		c.hooks.Hit()
		if t := r.tenant(); t != nil {
			return t, nil
		}
		return nil, ErrNotFound
	}
	t, _, err := c.LookupMeta(ctx, hostname)
	return t, err
}

// LookupMeta is Lookup, also saying where the answer came from.
func (c *Client) LookupMeta(ctx context.Context, hostname string) (*tenant.Tenant, Meta, error) {
	r, now, f, h, err := c.find(ctx, hostname)
	if r.s != nil {
		return c.cache.answer(r, now)
	}
	if err != nil {
		return nil, Meta{}, err
	}
	return c.answer(f, h)
}

// find is the path of LookupMeta and LookupViewMeta to an answer: a fresh
// cache slot found at now (r.s is not nil: a hit), or else the landed
// flight f of normalised hostname h, unless err (the hostname is invalid,
// or ctx ended first).
func (c *Client) find(ctx context.Context, hostname string) (r ref, now int64, f *flight, h string, err error) {
	now = c.cache.fast()
	// Cache keys are normalised hostnames, which normalise to themselves:
	// try the hostname as given first, so the common case skips normalising.
	if r := c.cache.lookup(hostname); r.s != nil && c.cache.fresh(r.s, now) {
		c.hooks.Hit()
		return r, now, nil, "", nil
	}
	h, err = tenant.NormalizeHostname(hostname)
	if err != nil {
		return ref{}, now, nil, "", fmt.Errorf("%w %q: %s", ErrInvalidHostname, hostname, tenant.ErrorMessage(err))
	}
	if h != hostname {
		if r := c.cache.lookup(h); r.s != nil && c.cache.fresh(r.s, now) {
			c.hooks.Hit()
			return r, now, nil, "", nil
		}
	}
	c.hooks.Miss()
	f, err = c.miss(ctx, h)
	return ref{}, now, f, h, err
}

// miss joins the flight of normalised hostname h, starting it if none is in
// progress, and returns it once landed, or ctx's error if ctx ends first.
// (A function of its own so that a hit does not allocate what the flight's
// goroutine captures.)
func (c *Client) miss(ctx context.Context, h string) (*flight, error) {
	f, lead := c.flights.join(h)
	if lead {
		go func() {
			res, err := c.fill(ctx, h)
			c.flights.land(h, f, res, err)
		}()
	}
	select {
	case <-f.done:
		return f, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// meta is the Meta of a hit on fresh cache slot r at now.
func (c *cache) meta(r ref, now int64) Meta {
	return Meta{Cached: true, Region: c.regionOf(r.w), Age: time.Duration(max(now-r.s.readAt, 0))}
}

// answer turns a fresh cache slot into Lookup's results.
func (c *cache) answer(r ref, now int64) (*tenant.Tenant, Meta, error) {
	m := c.meta(r, now)
	t := r.tenant()
	if t == nil {
		return nil, m, ErrNotFound
	}
	return t, m, nil
}

// answer turns a cache entry into Lookup's results.
func (e entry) answer(now int64, stale bool) (*tenant.Tenant, Meta, error) {
	m := Meta{Cached: true, Stale: stale, Region: e.region, Age: time.Duration(max(now-e.readAt, 0))}
	if e.t == nil {
		return nil, m, ErrNotFound
	}
	return e.t, m, nil
}

// fillResult is what a fill gives every caller waiting for it.
type fillResult struct {
	e          entry
	cached     bool // from the cache (a fill just before, stale, or remembered)
	stale      bool
	remembered bool // the newest version returned before (see fallback)
}

// fill asks the regions for normalised hostname h, caches the answer and
// returns it as an entry; one fill runs per hostname at a time (see
// flights). An answer older than a version of its tenant the client has
// returned is set aside for the next region's (see call). When no region
// gives an answer it can use it falls back (see fallback).
//
// caller is the context of the lookup that leads the flight: the RPCs run on
// the client's context (the flight's other callers share them), with what
// the carry of WithRPCStats or WithRPCInterceptor takes from caller.
func (c *Client) fill(caller context.Context, h string) (fillResult, error) {
	now := c.cache.clock()
	// A fill that finished just before this one started has already
	// cached the answer.
	if e, st := c.cache.get(h, now); st == fresh {
		return fillResult{e: e, cached: true}, nil
	}
	tk := c.cache.begin()
	ctx, cancel := context.WithTimeout(c.callContext(caller), c.cfg.lookupTimeout)
	defer cancel()
	var (
		got    fillResult
		bad    error    // a tenant that did not decode
		behind []string // the tenants of the answers set aside
	)
	_, r, err := call(c, ctx, func(ctx context.Context, api tcsv1.TenantContextServiceClient) (*tcsv1.LookupResponse, error) {
		return api.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h})
	}, func(resp *tcsv1.LookupResponse, r *region) bool {
		t, cerr := tcsv1.TenantFromProto(resp.GetTenant())
		if cerr != nil || t == nil {
			c.log.Error("tcs lookup: bad tenant in answer", "region", r.label(), "hostname", h, "err", cerr)
			bad = fmt.Errorf("%w: bad answer from %s", ErrUnavailable, r.label())
			return true
		}
		age := resp.GetAge().AsDuration()
		e := entry{t: t, readAt: c.cache.clock() - int64(max(age, 0)), region: r.intern(resp.GetRegion())}
		if !c.cache.accept(h, e) {
			behind = appendNew(behind, t.ID)
			return false
		}
		got = fillResult{e: e, stale: resp.GetStale()}
		return true
	})
	done := c.cache.clock()
	switch status.Code(err) {
	case codes.OK:
		if bad != nil {
			return c.fallback(h, done, nil, bad)
		}
		c.cache.put(h, got.e, tk)
		return got, nil
	case codes.NotFound:
		e := entry{readAt: done, region: r.label()}
		c.cache.put(h, e, tk)
		return fillResult{e: e}, nil
	case codes.InvalidArgument:
		return fillResult{}, fmt.Errorf("%w %q: %s", ErrInvalidHostname, h, status.Convert(err).Message())
	}
	if c.ctx.Err() != nil {
		return fillResult{}, ErrClosed
	}
	return c.fallback(h, done, behind, unavailable(h, behind, err))
}

// unavailable is the error of a lookup of h that got no answer it could
// use: err is call's, behind the tenants of the answers set aside.
func unavailable(h string, behind []string, err error) error {
	if len(behind) == 0 {
		return fmt.Errorf("%w: lookup %s: %v", ErrUnavailable, h, err)
	}
	others := ""
	if !errors.Is(err, errBehind) {
		others = fmt.Sprintf("; the last other failed: %v", err)
	}
	return fmt.Errorf("%w: lookup %s: the regions that answered hold older versions of tenant %s than this client has returned%s",
		ErrUnavailable, h, strings.Join(behind, ", "), others)
}

// fallback is what a lookup of h gives when no region gave an answer it can
// use: the newest version returned of a tenant in behind (tenants that
// regions answered h with, but older than that) if it lists h; otherwise a
// stale entry of h (see staleOr); otherwise, if the newest version returned
// of every tenant in behind no longer lists h, NOT_FOUND, stale and
// remembered (see released); otherwise err.
func (c *Client) fallback(h string, now int64, behind []string, err error) (fillResult, error) {
	for _, id := range behind {
		if e, ok := c.cache.remembered(h, id, now); ok {
			return fillResult{e: e, cached: true, remembered: true}, nil
		}
	}
	res, serr := c.staleOr(h, now, err)
	if serr == nil || len(behind) == 0 {
		return res, serr
	}
	// The regions that answered are behind a release of h by every tenant
	// they answered with. What the client knows is newer than what they
	// say: when the version it returned was read, that tenant did not own
	// h. A region that had applied that version answered NOT_FOUND then
	// (unless it had applied a later claim too), so NOT_FOUND is a true
	// answer of that time, stale; it is not cached.
	var rel entry
	for i, id := range behind {
		e, ok := c.cache.released(h, id, now)
		if !ok {
			return res, serr
		}
		if i == 0 || e.readAt < rel.readAt {
			rel = e
		}
	}
	c.hooks.StaleServe()
	return fillResult{e: rel, cached: true, stale: true, remembered: true}, nil
}

// staleOr returns the cached entry of h, marked stale, if it is within
// max-stale (and not older than a version of its tenant returned), and err
// otherwise.
func (c *Client) staleOr(h string, now int64, err error) (fillResult, error) {
	e, st := c.cache.get(h, now)
	if st == absent || !c.cache.staleOK(e, now) {
		return fillResult{}, err
	}
	if _, newer := c.cache.newer(e.t); newer {
		return fillResult{}, err
	}
	c.hooks.StaleServe()
	return fillResult{e: e, cached: true, stale: true}, nil
}

// answer turns landed flight f of normalised hostname h into Lookup's
// results (see notOlder).
func (c *Client) answer(f *flight, h string) (*tenant.Tenant, Meta, error) {
	if f.err != nil {
		return nil, Meta{}, f.err
	}
	t, m, err := f.res.e.answer(c.cache.clock(), f.res.stale)
	m.Cached, m.Remembered = f.res.cached, f.res.remembered
	if m.Remembered {
		c.hooks.Remembered()
	}
	if t == nil {
		return t, m, err
	}
	return c.notOlder(h, t, m)
}

// notOlder returns t, the answer for normalised hostname h, with its meta
// m, unless the client has since returned a newer version of its tenant
// (for another hostname: a flight that landed, or a hit read, just before
// that): then that version, remembered, if it lists h, and ErrUnavailable
// if it does not; never t.
func (c *Client) notOlder(h string, t *tenant.Tenant, m Meta) (*tenant.Tenant, Meta, error) {
	k, newer := c.cache.newer(t)
	if !newer {
		return t, m, nil
	}
	now := c.cache.clock()
	e, ok := c.cache.remembered(h, t.ID, now)
	if !ok {
		return nil, Meta{}, fmt.Errorf("%w: lookup %s: tenant %s was answered at version %d, but this client has returned version %d, "+
			"which it cannot serve for this hostname (the hostname is not in it, or it is older than max-stale)",
			ErrUnavailable, h, t.ID, t.Version, k.version)
	}
	c.hooks.Remembered()
	t, m, _ = e.answer(now, false)
	m.Remembered = true
	return t, m, nil
}

// appendNew appends s to list unless it is there.
func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// flight is one lookup of a hostname in progress, by a Lookup's fill or as
// one hostname of a BatchLookup RPC. Lookups and batches that miss on a
// hostname in flight wait for its answer instead of asking again, so there
// is at most one RPC in flight per hostname.
type flight struct {
	done chan struct{} // closed when res and err are set
	res  fillResult
	err  error
}

// flights are the flights in progress, by normalised hostname.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// join returns the flight of h, starting one if none is in progress, in
// which case lead is true and the caller must land it.
func (fs *flights) join(h string) (f *flight, lead bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.m[h]; f != nil {
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[string]*flight)
	}
	f = &flight{done: make(chan struct{})}
	fs.m[h] = f
	return f, true
}

// land ends flight f of h with its outcome: a lookup of h from now on
// starts a new flight (or hits the cache the answer was put in).
func (fs *flights) land(h string, f *flight, res fillResult, err error) {
	fs.mu.Lock()
	delete(fs.m, h)
	fs.mu.Unlock()
	f.res, f.err = res, err
	close(f.done)
}

// callContext returns the context of RPCs led by a lookup with context
// caller: the client's, with what the carry of WithRPCStats or
// WithRPCInterceptor takes from caller.
func (c *Client) callContext(caller context.Context) context.Context {
	if c.cfg.carry == nil {
		return c.ctx
	}
	return c.cfg.carry(caller, c.ctx)
}
