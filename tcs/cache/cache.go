// Package cache is the lookup server's cache of hostname → tenant answers,
// in front of the region's replica table.
//
// What it stores. Each entry holds the tenant already serialised as a
// tcs.v1.Tenant protobuf message (preceded by the tag and length that make it
// field 1 of a LookupResponse), plus the tenant id, version, read time and
// the cache generation it was read in. A []byte is one pointer to memory the
// garbage collector never scans, where a *tcsv1.Tenant or *tenant.Tenant is a
// tree of maps, strings and messages that it must walk on every cycle: with a
// million entries that walk, not the map lookup, is what a cache costs a
// server (BenchmarkGCMark measures it). Bytes also make a hit cheap to
// answer: the server splices them into its response instead of marshalling
// the tenant again.
//
// What it guarantees.
//
//   - Positive answers live for TTL, negative ones (hostname unknown) for
//     NegativeTTL; LimitTTL shortens both at run time, for entries already
//     cached too (the lookup server does while its invalidation feed is
//     down).
//   - An invalidation naming a hostname makes its entry out of date unless
//     the entry is already that tenant at that version or newer, and an
//     entry of the invalidated tenant below the invalidated version is out
//     of date too (the rules of the Invalidation comment in tcs.proto). An
//     out-of-date entry is never served fresh again: it is kept only for
//     stale-if-error, until a read installs a newer answer (or a read
//     that succeeds finds the hostname unknown).
//   - Concurrent misses of one hostname make one replica read.
//   - No stale fill (docs/architecture.md, invariant 4): a read that raced with an
//     invalidation of its hostname, or with a Gap, is answered to its
//     callers but installed fresh only if it is provably as new as the
//     invalidation; otherwise it replaces the entry kept for
//     stale-if-error as an out-of-date one (it is newer than that entry:
//     the reads of one hostname run one at a time).
//   - No going back per hostname: a node never serves, fresh or stale, a
//     version of a tenant for a hostname older than one it has answered
//     for that hostname (given a replica whose reads of a hostname do not
//     go back).
//   - A read that succeeds is what its callers get: never a kept entry.
//   - A miss with nothing kept to serve stale, whose read failed (or was
//     slower than ReadTimeout), reads the replica once more before it
//     gives up, unless a Fallback is configured (which is then that second
//     path).
//   - Stale-if-error: when the replica fails or is slower than ReadTimeout,
//     the answer is, in this order: an entry that is merely expired (by
//     TTL or Gap), positive or negative, no older than MaxStale; else, if
//     nothing is kept for the hostname, a sibling answer: the newest
//     remembered invalidation naming the hostname names a tenant and a
//     version, and an entry of that tenant at that version or newer, kept
//     (no older than MaxStale) under another hostname of that invalidation,
//     lists this hostname (the newest such entry, kept for the hostname
//     from then on as an out-of-date entry); else an
//     answer of the Fallback reader, if one is configured and its answer
//     is not older than what the cache knows (see Options.Fallback); else
//     an out-of-date (invalidated) entry no older than MaxStale; else
//     Unavailable. Every such answer is marked Stale, with the time it was
//     read.
//   - While the replica is failing (its last FailingAfter reads failed), a
//     lookup whose answer would be a kept entry gets it at once, without
//     waiting for a read, and one read at a time probes the replica in the
//     background; the first read that succeeds ends this.
//   - With Options.Refresh, an invalidation reads the hostnames it names
//     that the cache holds an entry for again in the background, as misses
//     would (same rules).
//   - Gap expires every entry at once, by bumping a generation number.
//   - Read-your-writes (LookupAtLeast): a lookup that needs an answer at
//     least as new as a Want is served from a fresh entry that meets it,
//     or else from a replica read that began after the lookup did (shared
//     with the reads of other lookups of the hostname, as any miss's), and
//     is given that read's answer, new enough or not. The read installs
//     its answer by the rules above, so an older answer replaces no newer
//     entry of its tenant, and a stale-if-error answer is given as stale.
//   - Negative entries have LRUs of their own (Options.NegativeSize), so
//     that a flood of made-up hostnames evicts only other negative
//     entries, never a tenant answer; LookupAdmit lets the server refuse
//     the replica reads of such a flood beyond a budget.
//
// Hostnames given to the cache must be normalised (tenant.NormalizeHostname);
// the cache uses them as keys as they are.
package cache

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
)

// Defaults for the zero fields of Options.
const (
	DefaultSize               = 1_000_000
	DefaultNegativeSize       = 100_000
	DefaultShards             = 64
	DefaultTTL                = 30 * time.Second
	DefaultNegativeTTL        = 5 * time.Second
	DefaultReadTimeout        = 100 * time.Millisecond
	DefaultMaxStale           = 5 * time.Minute
	DefaultInvalidationWindow = time.Minute
	DefaultMaxRemembered      = 100_000
	DefaultFallbackTimeout    = 250 * time.Millisecond
	DefaultFailingAfter       = 3
)

// Options configure a Cache. Every zero field takes the default named beside
// it.
type Options struct {
	// Size bounds the number of tenant entries; the least recently used go
	// first. Each shard holds Size/Shards, and hostnames spread over shards
	// a little unevenly, so eviction starts slightly before Size entries
	// (about 2% before, at a million). Default DefaultSize (1,000,000).
	Size int
	// NegativeSize bounds the number of negative entries ("no tenant owns
	// this hostname"), kept in LRUs of their own beside the tenant
	// entries: a flood of random hostnames evicts only other negative
	// entries, never a tenant answer. Default DefaultNegativeSize
	// (100,000).
	NegativeSize int
	// Shards is the number of independently locked parts the entries are
	// spread over, rounded up to a power of two. Each is an LRU of
	// Size/Shards entries, so eviction order is per shard. Default
	// DefaultShards (64).
	Shards int
	// TTL is how long a tenant answer is served without asking the replica
	// again. Default DefaultTTL (30 s).
	TTL time.Duration
	// NegativeTTL is how long "no tenant owns this hostname" is served
	// without asking again. Negative means not cached at all. Default
	// DefaultNegativeTTL (5 s).
	NegativeTTL time.Duration
	// ReadTimeout bounds one replica read. A read that takes longer is a
	// failure: the caller gets a stale answer or Unavailable. Default
	// DefaultReadTimeout (100 ms).
	ReadTimeout time.Duration
	// MaxStale is the oldest answer (counted from its read) served when the
	// replica fails. Negative means never serve stale. Default
	// DefaultMaxStale (5 min).
	MaxStale time.Duration
	// InvalidationWindow is how long invalidations are remembered, to stop
	// fills that raced with them and to keep entries of an invalidated
	// tenant from being served. It is raised to at least twice ReadTimeout
	// (it must outlast any fill). Default DefaultInvalidationWindow (1 min).
	InvalidationWindow time.Duration
	// MaxRemembered bounds the hostnames remembered in the window; past it
	// the oldest invalidations are forgotten early, and a fill that began
	// before one of them is not installed. Default DefaultMaxRemembered
	// (100,000).
	MaxRemembered int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnReadError, if set, is called with every replica read that failed
	// (other than NotFound), and every fallback read that failed (its
	// error says "fallback"), for logging. The cache hides the cause from
	// callers, who get Unavailable or a stale answer.
	OnReadError func(hostname string, err error)
	// FailingAfter is the number of replica reads in a row that must fail
	// for the replica to count as failing: then a lookup whose answer
	// would be a kept entry gets it at once, without waiting for a read,
	// and one read at a time probes the replica in the background, until
	// a read succeeds. Negative means never. Default DefaultFailingAfter
	// (3).
	FailingAfter int
	// Fallback, if set, is another path to the same data (for example the
	// replica of another region), read once by a miss whose replica read
	// failed when the cache holds no merely expired entry to serve
	// instead. Its answers are returned marked Stale and Fallback, and
	// never installed: another region may be behind or ahead of this one,
	// and this region's invalidations say nothing about it. A fallback
	// answer is not used if it is older than what the cache knows: a
	// tenant below a remembered invalidation of that tenant, or, when the
	// cache keeps an out-of-date entry of the hostname, anything but that
	// entry's tenant at a newer version or the tenant the newest
	// remembered invalidation of the hostname named, at that version or
	// newer (a NotFound never is: it cannot be compared). Then the kept
	// entry is served stale. Nil means none.
	Fallback Reader
	// FallbackTimeout bounds one fallback read. Default
	// DefaultFallbackTimeout (250 ms: another region is further away).
	FallbackTimeout time.Duration
	// Refresh, if set, makes every invalidation read again, in the
	// background, the hostnames it names that the cache holds an entry for
	// (fresh, expired, out of date or negative: hostnames looked up
	// before), as a miss would (at most RefreshConcurrency reads at once; a
	// hostname that finds them all busy, or the replica failing, is
	// skipped): the next lookup of a changed tenant is a hit, and the new
	// answer is what is kept if the replica then fails. Hostnames nobody
	// looked up are not read, so a bulk change does not fill the cache
	// with tenants nobody asks for. It costs a replica read per cached
	// hostname per write. Off by default.
	Refresh bool
}

// RefreshConcurrency is how many background reads Options.Refresh runs at
// once.
const RefreshConcurrency = 8

func (o Options) withDefaults() Options {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.NegativeSize <= 0 {
		o.NegativeSize = DefaultNegativeSize
	}
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	o.Shards = 1 << bits.Len(uint(o.Shards-1))
	if o.Shards > o.Size {
		o.Shards = 1 << (bits.Len(uint(o.Size)) - 1)
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.MaxStale == 0 {
		o.MaxStale = DefaultMaxStale
	}
	if o.InvalidationWindow <= 0 {
		o.InvalidationWindow = DefaultInvalidationWindow
	}
	if o.InvalidationWindow < 2*o.ReadTimeout {
		o.InvalidationWindow = 2 * o.ReadTimeout
	}
	if o.MaxRemembered <= 0 {
		o.MaxRemembered = DefaultMaxRemembered
	}
	if o.FailingAfter == 0 {
		o.FailingAfter = DefaultFailingAfter
	}
	if o.FallbackTimeout <= 0 {
		o.FallbackTimeout = DefaultFallbackTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Reader is what the cache needs of a region's replica (tcs.Replica has it):
// the live tenant that owns a normalised hostname, or a NotFound
// *tenant.Error.
type Reader interface {
	LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error)
}

var _ Reader = tcs.Replica(nil)

// Result is a tenant answer.
type Result struct {
	// TenantID and Version identify the tenant document.
	TenantID string
	Version  int64
	// Field1 is the tenant serialised as a tcs.v1.Tenant message, preceded
	// by the tag and length of a field numbered 1. Appended to a message's
	// unknown fields it sets that message's field 1 (LookupResponse.tenant)
	// without a copy or a marshal. Shared: never modify it.
	Field1 []byte
	// ReadAt is when the replica read that produced the answer began.
	ReadAt time.Time
	// Stale is true when the answer was served because the replica could
	// not be read: a cached answer past its TTL (or its generation), or
	// made out of date by an invalidation, or a Fallback answer.
	Stale bool
	// Fallback is true when the answer was read from Options.Fallback (then
	// Stale is true too). It was not cached.
	Fallback bool

	hdr int    // len(Field1) - len(tenant message)
	seq uint64 // the number of the fill that read it (see Cache.fills); 0: not read for this answer
}

// Encoded returns the tenant serialised as a tcs.v1.Tenant message. Shared:
// never modify it.
func (r Result) Encoded() []byte { return r.Field1[r.hdr:] }

// Tenant decodes the tenant message.
func (r Result) Tenant() (*tcsv1.Tenant, error) {
	t := new(tcsv1.Tenant)
	if err := proto.Unmarshal(r.Encoded(), t); err != nil {
		return nil, err
	}
	return t, nil
}

// Age is how long before now the answer was read from the replica; never
// negative.
func (r Result) Age(now time.Time) time.Duration {
	return max(now.Sub(r.ReadAt), 0)
}

// Stats are the cache's counters since it was made, and its state.
type Stats struct {
	// PositiveHits and NegativeHits count lookups answered from a fresh
	// entry, with a tenant and with NotFound.
	PositiveHits, NegativeHits uint64
	// Misses counts lookups that waited for a replica read (their own or
	// one in flight).
	Misses uint64
	// StaleServes counts lookups answered with a cached answer (positive or
	// negative, expired or out of date) marked stale because the replica
	// failed; StaleAtOnce counts those among them answered without waiting
	// for a read, because the replica was failing.
	StaleServes, StaleAtOnce uint64
	// Refreshes counts the background reads of Options.Refresh started,
	// RefreshSkipped the hostnames not read because RefreshConcurrency
	// reads were running or the replica was failing.
	Refreshes, RefreshSkipped uint64
	// SiblingServes counts stale answers for a hostname with nothing kept,
	// taken from its tenant's document kept under another hostname (see
	// the package comment).
	SiblingServes uint64
	// FallbackServes counts reads of the Fallback reader whose answer was
	// served, FallbackErrors those that failed, FallbackDiscarded those
	// whose answer was older than what the cache knew.
	FallbackServes, FallbackErrors, FallbackDiscarded uint64
	// Reads counts replica reads, ReadErrors those that failed (NotFound is
	// not a failure), Rejected the reads not installed fresh because they
	// raced with an invalidation or a gap (or found their tenant at a newer
	// version cached), and Retries the second reads of misses that had
	// nothing to serve stale after their first read failed.
	Reads, ReadErrors, Rejected, Retries uint64
	// Refused counts lookups that Admit refused, RefusedStale those among
	// them answered with a kept entry (see LookupAdmit).
	Refused, RefusedStale uint64
	// Entries is the number of entries held (fresh, expired or out of
	// date), NegativeEntries those among them that are negative.
	Entries, NegativeEntries int
	// Remembered is the number of hostnames in the invalidation window.
	Remembered int
	// ReplicaFailing is true while the replica's last FailingAfter reads
	// failed (see Options.FailingAfter).
	ReplicaFailing bool
}

// entry is one cached answer. Its only pointers are buf and tenantID, both
// to memory the collector marks but never scans. (Pointing tenantID and the
// key into buf, to make one object per entry of three, was measured with
// BenchmarkGCMark and did not shorten a collection: the LRU's node, its
// pointers and their scattered targets are the cost, not the count.)
type entry struct {
	// buf is Result.Field1; nil for a negative entry.
	buf      []byte
	tenantID string
	version  int64
	readAt   int64 // unix nanoseconds at the start of the read
	gen      uint64
	hdr      int32
	// outdated is set when an invalidation made the entry out of date: it
	// is kept only for stale-if-error. (It fits in the padding after hdr.)
	outdated bool
}

func (e *entry) negative() bool { return e.buf == nil }

type shard struct {
	mu sync.Mutex
	// lru holds the tenant entries, neg the negative ones: a hostname has
	// an entry in one of them at most.
	lru, neg     *simplelru.LRU[string, entry]
	positiveHits uint64
	negativeHits uint64
	touches      uint64
	// hot is a ring of the hostnames of tenant entries lately installed or
	// promoted (a sample of hits: one in promoteEvery), hot[hotNext] the
	// oldest: what HotKeys reads, without walking the LRU.
	hot     []string
	hotNext int
	_       [64]byte // keep shards' locks on separate cache lines
}

// peek returns hostname's entry, from whichever list holds it, without
// moving it.
func (sh *shard) peek(hostname string) (entry, bool) {
	if e, ok := sh.lru.Peek(hostname); ok {
		return e, true
	}
	return sh.neg.Peek(hostname)
}

// promote moves hostname's entry e to the front of its list.
func (sh *shard) promote(hostname string, e *entry) {
	if e.negative() {
		sh.neg.Get(hostname)
	} else {
		sh.lru.Get(hostname)
		sh.noteHot(hostname)
	}
}

// noteHot records that hostname's tenant entry was just used.
func (sh *shard) noteHot(hostname string) {
	sh.hot[sh.hotNext] = hostname
	if sh.hotNext++; sh.hotNext == len(sh.hot) {
		sh.hotNext = 0
	}
}

// put stores e under hostname in the list of its kind, and removes
// hostname from the other.
func (sh *shard) put(hostname string, e entry) {
	if e.negative() {
		sh.lru.Remove(hostname)
		sh.neg.Add(hostname, e)
		return
	}
	sh.neg.Remove(hostname)
	sh.lru.Add(hostname, e)
}

// remove removes hostname's entry.
func (sh *shard) remove(hostname string) {
	sh.lru.Remove(hostname)
	sh.neg.Remove(hostname)
}

// Cache is the lookup server's cache. It is safe for concurrent use.
type Cache struct {
	opts   Options
	reader Reader
	// ttl and negTTL are the TTLs in force (nanoseconds), Options' unless
	// LimitTTL shortened them; negTTL < 0 means negative answers are not
	// cached.
	ttl, negTTL atomic.Int64
	stale       int64 // nanoseconds; < 0: never serve stale

	seed   maphash.Seed
	mask   uint64
	shards []shard

	gen    atomic.Uint64
	recent *recent
	flight singleflight.Group

	// refreshing holds a token per background read of Options.Refresh.
	refreshing chan struct{}

	// failures counts the replica reads that failed in a row; probing is
	// set while a background read probes a failing replica.
	failures atomic.Int64
	probing  atomic.Bool
	// failingSince is when the first of the failures in a row happened
	// (unix nanoseconds; 0 while the last read succeeded).
	failingSince atomic.Int64

	// fills numbers the fills that read the replica, in the order they
	// began (see LookupAtLeast).
	fills atomic.Uint64

	misses, staleServes, staleAtOnce, reads, readErrors, rejected, retries atomic.Uint64
	refreshes, refreshSkipped, refused, refusedStale                       atomic.Uint64
	fallbackServes, fallbackErrors, fallbackDiscarded, siblingServes       atomic.Uint64
}

// New returns an empty cache in front of r.
func New(r Reader, opts Options) *Cache {
	opts = opts.withDefaults()
	c := &Cache{
		opts:   opts,
		reader: r,
		stale:  int64(opts.MaxStale),
		seed:   maphash.MakeSeed(),
		mask:   uint64(opts.Shards - 1),
		shards: make([]shard, opts.Shards),
		recent: newRecent(int64(opts.InvalidationWindow), opts.MaxRemembered),
	}
	if opts.Refresh {
		c.refreshing = make(chan struct{}, RefreshConcurrency)
	}
	per := (opts.Size + opts.Shards - 1) / opts.Shards
	perNeg := (opts.NegativeSize + opts.Shards - 1) / opts.Shards
	for i := range c.shards {
		l, err := simplelru.NewLRU[string, entry](per, nil)
		if err != nil {
			panic(err) // per > 0 by construction
		}
		n, err := simplelru.NewLRU[string, entry](perNeg, nil)
		if err != nil {
			panic(err) // perNeg > 0 by construction
		}
		c.shards[i].lru, c.shards[i].neg = l, n
		c.shards[i].hot = make([]string, max(hotRing/opts.Shards, 64))
	}
	c.LimitTTL(0)
	return c
}

// LimitTTL bounds the TTL and the NegativeTTL by d from now on, for the
// entries already cached too (an entry read longer than d ago expires at
// once); d <= 0 restores Options' TTLs. Negative answers stay uncached if
// NegativeTTL is negative.
func (c *Cache) LimitTTL(d time.Duration) {
	ttl, neg := c.opts.TTL, c.opts.NegativeTTL
	if d > 0 {
		ttl = min(ttl, d)
		if neg > 0 {
			neg = min(neg, d)
		}
	}
	c.ttl.Store(int64(ttl))
	c.negTTL.Store(int64(neg))
}

func (c *Cache) shard(hostname string) *shard {
	return &c.shards[maphash.String(c.seed, hostname)&c.mask]
}

// fresh reports whether e may be served without asking the replica.
func (c *Cache) fresh(e *entry, now int64) bool {
	if e.outdated {
		return false
	}
	ttl := &c.ttl
	if e.negative() {
		ttl = &c.negTTL
	}
	return e.gen == c.gen.Load() && now-e.readAt < ttl.Load()
}

// keptWithin reports whether e may be served stale at now (MaxStale).
func (c *Cache) keptWithin(e *entry, now int64) bool {
	return c.stale >= 0 && now-e.readAt <= c.stale
}

func (e *entry) result(stale bool) Result {
	return Result{
		TenantID: e.tenantID,
		Version:  e.version,
		Field1:   e.buf,
		ReadAt:   time.Unix(0, e.readAt),
		Stale:    stale,
		hdr:      int(e.hdr),
	}
}

// promoteEvery says how often a hit moves its entry to the front of its
// shard's LRU list: one hit in promoteEvery. Moving writes three list nodes
// scattered over the heap; with a million entries a golang-lru Get (which
// moves) measured 1.2× to 3× the time of a Peek (which does not) on this
// project's 2-core machines. Sampling keeps hot entries near the front all
// the same; eviction order is approximate LRU.
const promoteEvery = 8

// getLocked returns hostname's entry, marking it out of date if an
// invalidation of its tenant has superseded it. sh.mu must be held.
func (c *Cache) getLocked(sh *shard, hostname string) (entry, bool) {
	e, ok := sh.peek(hostname)
	if !ok {
		return entry{}, false
	}
	if sh.touches++; sh.touches%promoteEvery == 0 {
		sh.promote(hostname, &e)
	}
	if !e.outdated && !e.negative() && c.recent.superseded(e.tenantID, e.version) {
		// Marked for good: the invalidation will leave the window.
		e.outdated = true
		sh.put(hostname, e)
	}
	return e, true
}

// Peek returns hostname's fresh tenant answer if the cache holds one, and
// never reads the replica. It counts as a hit when it finds one; callers
// that fall back to Lookup on a miss count each lookup once.
func (c *Cache) Peek(hostname string) (Result, bool) {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	e, ok := c.getLocked(sh, hostname)
	if !ok || e.negative() || !c.fresh(&e, now) {
		sh.mu.Unlock()
		return Result{}, false
	}
	sh.positiveHits++
	sh.mu.Unlock()
	return e.result(false), true
}

// Lookup returns the tenant that owns the normalised hostname: from a fresh
// entry, else from one replica read shared with concurrent callers, else (the
// read failed or timed out) stale, as the package comment says. It fails with
// a NotFound *tenant.Error for a hostname no tenant owns, an Unavailable
// *tenant.Error when there is no acceptable answer, and ctx.Err() if ctx ends
// first. With NotFound, the Result describes the negative answer: TenantID
// empty and Field1 nil, ReadAt, Stale and Fallback set as for a tenant.
func (c *Cache) Lookup(ctx context.Context, hostname string) (Result, error) {
	return c.LookupAdmit(ctx, hostname, nil)
}

// Admit decides whether a lookup that found no fresh entry may go on to
// read the replica (or join a read in flight). known says whether the cache
// holds a tenant entry of the hostname (expired or out of date): its
// hostname had a tenant, where an unknown one may be anything a client
// made up. Admit returns nil to admit the lookup, or the error to refuse it
// with.
type Admit func(known bool) error

// LookupAdmit is Lookup with admission control: a lookup that would wait
// for a replica read asks admit (nil admits every one) first. A refused
// lookup gets the entry the cache keeps for the hostname, if it is merely
// expired (not out of date) and no older than MaxStale, marked stale as
// when the replica fails (NotFound for a negative one); else admit's
// error. Neither reads the replica.
func (c *Cache) LookupAdmit(ctx context.Context, hostname string, admit Admit) (Result, error) {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	e, ok := c.getLocked(sh, hostname)
	if ok && c.fresh(&e, now) {
		if e.negative() {
			sh.negativeHits++
			sh.mu.Unlock()
			return e.result(false), notFound(hostname)
		}
		sh.positiveHits++
		sh.mu.Unlock()
		return e.result(false), nil
	}
	sh.mu.Unlock()

	if ok && c.failing() && c.keptWithin(&e, now) && (!e.outdated || c.opts.Fallback == nil) {
		// What the read would give if it failed as the last one did,
		// without waiting for it; one read at a time finds out whether the
		// replica is back.
		c.probe(hostname)
		c.staleAtOnce.Add(1)
		c.staleServes.Add(1)
		return c.serveStale(hostname, &e)
	}

	if admit != nil {
		if err := admit(ok && !e.negative()); err != nil {
			c.refused.Add(1)
			if ok && !e.outdated && c.keptWithin(&e, now) {
				c.refusedStale.Add(1)
				return c.serveStale(hostname, &e)
			}
			return Result{}, err
		}
	}
	c.misses.Add(1)
	ch := c.flight.DoChan(hostname, func() (any, error) { return c.fill(hostname) })
	select {
	case r := <-ch:
		res, _ := r.Val.(Result)
		if res.Stale && !res.Fallback {
			c.staleServes.Add(1) // per caller, not per (shared) read
		}
		return res, r.Err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// failing reports whether the replica counts as failing.
func (c *Cache) failing() bool {
	return c.opts.FailingAfter > 0 && c.failures.Load() >= int64(c.opts.FailingAfter)
}

// probe reads hostname in the background, unless a probe is already
// running, so that a failing replica is noticed when it is back.
func (c *Cache) probe(hostname string) {
	if !c.probing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.probing.Store(false)
		c.flight.Do(hostname, func() (any, error) { return c.fill(hostname) })
	}()
}

// serveStale answers with the kept entry e, marked stale.
func (c *Cache) serveStale(hostname string, e *entry) (Result, error) {
	if e.negative() {
		return e.result(true), notFound(hostname)
	}
	return e.result(true), nil
}

func notFound(hostname string) error {
	return tenant.Errorf(tenant.NotFound, "hostname %q has no tenant", hostname)
}

func unavailable() error {
	return tenant.Errorf(tenant.Unavailable, "the region's replica could not be read and no cached answer is recent enough")
}

// ticket is what a fill notes when it starts, to be checked at install.
type ticket struct {
	gen uint64
	seq uint64
	at  int64
}

func (c *Cache) begin() ticket {
	// The sequence number is read before the generation: a gap between the
	// two only makes the ticket more conservative.
	seq := c.recent.current()
	return ticket{seq: seq, gen: c.gen.Load(), at: c.opts.Now().UnixNano()}
}

// fill reads hostname from the replica and installs the answer if nothing
// that happened during the read forbids it. Its context is its own, not a
// caller's: the read is shared, and a caller giving up must not fail the
// others. Its Result goes with NotFound too (see Lookup).
func (c *Cache) fill(hostname string) (any, error) {
	// A caller that missed just before the previous fill installed its
	// answer, and joined only after that fill ended, finds it here.
	if res, err, ok := c.freshAnswer(hostname); ok {
		return res, err
	}
	return c.fillRead(hostname)
}

// fillRead is fill without its first look at the cache: it always reads
// the replica (LookupAtLeast needs a read), and numbers its Result with the
// fill's place in Cache.fills.
func (c *Cache) fillRead(hostname string) (any, error) {
	n := c.fills.Add(1)
	v, err := c.readInstall(hostname)
	res, _ := v.(Result)
	res.seq = n
	return res, err
}

// readInstall reads hostname from the replica and installs the answer (see
// fill).
func (c *Cache) readInstall(hostname string) (any, error) {
	t := c.begin()
	ten, err := c.read(hostname)
	if err != nil && tenant.ErrorCode(err) != tenant.NotFound && c.opts.Fallback == nil && !c.hasKept(hostname) {
		// Nothing to answer stale: rather than fail the callers, give the
		// replica a second chance (a read over ReadTimeout is often a
		// slow moment, not an outage).
		c.readFailed(hostname, err)
		c.retries.Add(1)
		t = c.begin()
		ten, err = c.read(hostname)
	}
	switch {
	case err == nil:
		c.readOK()
		e, err := encode(ten, t)
		if err != nil {
			return c.failed(hostname, err)
		}
		c.install(hostname, &e, t)
		return e.result(false), nil
	case tenant.ErrorCode(err) == tenant.NotFound:
		c.readOK()
		neg := entry{readAt: t.at, gen: t.gen}
		if c.opts.NegativeTTL > 0 {
			c.install(hostname, &neg, t)
		} else {
			c.dropKept(hostname)
		}
		return neg.result(false), notFound(hostname)
	default:
		return c.failed(hostname, err)
	}
}

// read reads hostname from the replica, bounded by ReadTimeout; a deleted
// tenant or none is NotFound.
func (c *Cache) read(hostname string) (*tenant.Tenant, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.ReadTimeout)
	ten, err := c.reader.LookupHostname(ctx, hostname)
	cancel()
	c.reads.Add(1)
	if err == nil && (ten == nil || ten.Deleted()) {
		err = notFound(hostname)
	}
	return ten, err
}

// readFailed counts a failed replica read and reports it to OnReadError.
func (c *Cache) readFailed(hostname string, err error) {
	c.readErrors.Add(1)
	c.countFailure()
	if c.opts.OnReadError != nil {
		c.opts.OnReadError(hostname, err)
	}
}

// countFailure counts a failed replica read in the failures in a row.
func (c *Cache) countFailure() {
	now := c.opts.Now().UnixNano()
	if c.failures.Add(1) == 1 {
		c.failingSince.Store(now)
	} else {
		c.failingSince.CompareAndSwap(0, now)
	}
}

// readOK records a replica read that succeeded (NotFound included): the
// replica is not failing.
func (c *Cache) readOK() {
	c.failures.Store(0)
	c.failingSince.Store(0)
}

// UnreadableSince reports whether the replica counts as unreadable (its
// last reads all failed: FailingAfter of them, or one when FailingAfter is
// negative), and since when: the time of the first of those failures. A
// read that succeeds, a lookup's or ProbeReplica's, ends it.
func (c *Cache) UnreadableSince() (time.Time, bool) {
	n := c.failures.Load()
	if n == 0 || (c.opts.FailingAfter > 0 && n < int64(c.opts.FailingAfter)) {
		return time.Time{}, false
	}
	since := c.failingSince.Load()
	if since == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, since), true
}

// ProbeReplica reads hostname from the replica (bounded by ReadTimeout)
// without touching the entries, and records the outcome as a lookup's read
// would: a success (NotFound included) ends the replica's failing state, a
// failure counts towards it (but is not passed to OnReadError: a node that
// probes every second while the replica is down would log each one). It
// returns the read's error, nil for NotFound. A node that no longer receives lookups
// (taken out of service because its replica failed) probes to learn that
// the replica is back.
func (c *Cache) ProbeReplica(hostname string) error {
	_, err := c.read(hostname)
	if err != nil && tenant.ErrorCode(err) != tenant.NotFound {
		c.readErrors.Add(1)
		c.countFailure()
		return err
	}
	c.readOK()
	return nil
}

// MaxStale returns the oldest answer served stale (Options.MaxStale after
// defaults; negative: never).
func (c *Cache) MaxStale() time.Duration { return time.Duration(c.stale) }

// hasKept reports whether the cache holds an entry of hostname it may serve
// stale (fresh, expired or out of date, no older than MaxStale).
func (c *Cache) hasKept(hostname string) bool {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	e, ok := c.getLocked(sh, hostname)
	sh.mu.Unlock()
	return ok && c.keptWithin(&e, now)
}

// freshAnswer returns hostname's fresh entry as Lookup answers it, if there
// is one.
func (c *Cache) freshAnswer(hostname string) (Result, error, bool) {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	e, ok := c.getLocked(sh, hostname)
	sh.mu.Unlock()
	if !ok || !c.fresh(&e, now) {
		return Result{}, nil, false
	}
	if e.negative() {
		return e.result(false), notFound(hostname), true
	}
	return e.result(false), nil, true
}

// dropKept removes hostname's entry if it is not fresh: a read that
// succeeded has superseded it, and no negative entry replaces it.
func (c *Cache) dropKept(hostname string) {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	if e, ok := sh.peek(hostname); ok && !c.fresh(&e, now) {
		sh.remove(hostname)
	}
	sh.mu.Unlock()
}

// failed answers a fill whose read failed: stale if it may (see the package
// comment), else Unavailable.
func (c *Cache) failed(hostname string, err error) (any, error) {
	c.readFailed(hostname, err)
	now := c.opts.Now().UnixNano()
	if res, err, ok := c.freshAnswer(hostname); ok { // installed meanwhile
		return res, err
	}
	sh := c.shard(hostname)
	sh.mu.Lock()
	e, ok := c.getLocked(sh, hostname)
	sh.mu.Unlock()
	ok = ok && c.keptWithin(&e, now)
	if ok && !e.outdated {
		return c.serveStale(hostname, &e)
	}
	if !ok {
		if res, found := c.sibling(hostname, now); found {
			c.siblingServes.Add(1)
			return res, nil
		}
	}
	if c.opts.Fallback != nil {
		var kept *entry
		if ok {
			kept = &e
		}
		if res, err, used := c.fallback(hostname, kept); used {
			return res, err
		}
	}
	if ok {
		return c.serveStale(hostname, &e)
	}
	return Result{}, unavailable()
}

// sibling is the answer for hostname, with nothing kept for it, when the
// newest remembered invalidation naming it says that a tenant claimed it at
// some version, and the cache keeps that tenant, at that version or newer,
// under another hostname of that invalidation, in a document that lists
// hostname: that document, the newest such, marked stale. It is kept as
// hostname's out-of-date entry too, so later lookups (until a read
// succeeds) serve it and never an older one. now is the failure's time.
func (c *Cache) sibling(hostname string, now int64) (Result, bool) {
	m, ok := c.recent.hostMark(hostname)
	if !ok || c.stale < 0 {
		return Result{}, false
	}
	var best entry
	found := false
	for _, o := range m.hostnames {
		if o == hostname {
			continue
		}
		sh := c.shard(o)
		sh.mu.Lock()
		e, ok := c.getLocked(sh, o)
		sh.mu.Unlock()
		if !ok || e.negative() || e.tenantID != m.tenantID || e.version < m.version || !c.keptWithin(&e, now) ||
			(found && e.version <= best.version) || !lists(&e, hostname) {
			continue
		}
		best, found = e, true
	}
	if !found {
		return Result{}, false
	}
	sh := c.shard(hostname)
	sh.mu.Lock()
	if _, held := sh.peek(hostname); !held {
		k := best
		k.outdated = true
		sh.put(hostname, k)
	}
	sh.mu.Unlock()
	return best.result(true), true
}

// lists reports whether e's tenant document lists hostname.
func lists(e *entry, hostname string) bool {
	t, err := e.result(false).Tenant()
	return err == nil && slices.Contains(t.GetHostnames(), hostname)
}

// fallback reads hostname from Options.Fallback, and reports whether its
// answer may be used, given the out-of-date entry the cache keeps (nil:
// none), by the rules of Options.Fallback.
func (c *Cache) fallback(hostname string, kept *entry) (Result, error, bool) {
	at := c.opts.Now().UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.FallbackTimeout)
	ten, err := c.opts.Fallback.LookupHostname(ctx, hostname)
	cancel()
	if err == nil && (ten == nil || ten.Deleted()) {
		err = notFound(hostname)
	}
	switch {
	case err == nil:
		if !c.fallbackNewer(hostname, ten, kept) {
			c.fallbackDiscarded.Add(1)
			return Result{}, nil, false
		}
		e, err := encode(ten, ticket{at: at})
		if err != nil {
			c.fallbackErrors.Add(1)
			return Result{}, nil, false
		}
		c.fallbackServes.Add(1)
		r := e.result(true)
		r.Fallback = true
		return r, nil, true
	case tenant.ErrorCode(err) == tenant.NotFound:
		if kept != nil {
			c.fallbackDiscarded.Add(1)
			return Result{}, nil, false
		}
		c.fallbackServes.Add(1)
		return Result{ReadAt: time.Unix(0, at), Stale: true, Fallback: true}, notFound(hostname), true
	default:
		c.fallbackErrors.Add(1)
		if c.opts.OnReadError != nil {
			c.opts.OnReadError(hostname, fmt.Errorf("fallback: %w", err))
		}
		return Result{}, nil, false
	}
}

// fallbackNewer reports whether a fallback read of t is not older than what
// the cache knows of hostname (see Options.Fallback).
func (c *Cache) fallbackNewer(hostname string, t *tenant.Tenant, kept *entry) bool {
	if c.recent.superseded(t.ID, t.Version) {
		return false
	}
	if kept == nil {
		return true
	}
	if !kept.negative() && kept.tenantID == t.ID && kept.version < t.Version {
		return true
	}
	m, ok := c.recent.hostMark(hostname)
	return ok && m.tenantID == t.ID && m.version <= t.Version
}

// encode serialises t as Result.Field1 wants it.
func encode(t *tenant.Tenant, tk ticket) (entry, error) {
	p := tcsv1.TenantToProto(t)
	n := proto.Size(p)
	hdr := 1 + protowire.SizeVarint(uint64(n))
	buf := make([]byte, 0, hdr+n)
	buf = protowire.AppendTag(buf, 1, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(n))
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, p)
	if err != nil {
		return entry{}, err
	}
	if len(buf) != hdr+n {
		return entry{}, fmt.Errorf("encode tenant %s: marshalled %d bytes, sized %d", t.ID, len(buf)-hdr, n)
	}
	return entry{
		buf:      buf,
		tenantID: t.ID,
		version:  t.Version,
		readAt:   tk.at,
		gen:      tk.gen,
		hdr:      int32(hdr),
	}, nil
}

// install puts e under hostname unless the fill that read it, described by
// tk, raced with a gap or an invalidation that makes it suspect, or the
// entry there is the same tenant at a newer version. It reports whether it
// did. A fill that raced is not installed as fresh (invariant 4), but its
// answer, which its callers got, replaces the entry kept for stale-if-error
// as an out-of-date one (see keepRejected). The checks and the insertion
// happen under the shard's lock, which Invalidate also takes after it
// records an invalidation, so an invalidation either is seen here or finds
// e installed and marks it out of date.
func (c *Cache) install(hostname string, e *entry, tk ticket) bool {
	sh := c.shard(hostname)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, found := sh.peek(hostname)
	if found && !old.negative() && !e.negative() && old.tenantID == e.tenantID && old.version > e.version {
		c.rejected.Add(1)
		return false
	}
	if c.gen.Load() != tk.gen || !c.recent.admits(hostname, e, tk.seq) {
		c.rejected.Add(1)
		c.keepRejected(sh, hostname, e, old, found)
		return false
	}
	sh.put(hostname, *e)
	if !e.negative() {
		sh.noteHot(hostname)
	}
	return true
}

// keepRejected keeps e, the answer of a fill that may not be installed
// fresh, as hostname's out-of-date entry: served only stale, when the
// replica fails, and replaced by the next read. The fills of one hostname
// run one at a time (singleflight), so e was read after whatever the cache
// holds for hostname was, and is as new or newer (install has already
// refused it if the entry there is its tenant at a newer version): kept, a
// node that answered e never serves an older version of e's tenant for this
// hostname stale later, as it would if the entry from before stayed. A
// fresh entry there is left alone. sh.mu must be held.
func (c *Cache) keepRejected(sh *shard, hostname string, e *entry, old entry, found bool) {
	if found && c.fresh(&old, c.opts.Now().UnixNano()) {
		return
	}
	k := *e
	k.outdated = true
	sh.put(hostname, k)
}

// Invalidate applies inv as the Invalidation comment in tcs.proto says: each
// hostname it names has its entry made out of date unless that entry is
// already inv's tenant at inv's version or newer (a negative entry always
// is: the hostname may now be claimed), and no entry of inv's tenant older
// than inv's version is served fresh again. Out-of-date entries are kept
// for stale-if-error only. inv is also remembered for the invalidation
// window, so that a fill in flight cannot put an older answer back
// (invariant 4). A heartbeat (inv.Heartbeat()) is ignored. The cache keeps
// inv.Hostnames: the caller must not modify it afterwards.
func (c *Cache) Invalidate(inv tcs.Invalidation) {
	if inv.Heartbeat() {
		return
	}
	c.recent.add(inv, c.opts.Now().UnixNano())
	var held []string // hostnames with an entry, for Refresh
	for _, h := range inv.Hostnames {
		sh := c.shard(h)
		sh.mu.Lock()
		e, ok := sh.peek(h)
		if ok && !e.outdated && (e.negative() || e.tenantID != inv.TenantID || e.version < inv.Version) {
			e.outdated = true
			sh.put(h, e)
		}
		sh.mu.Unlock()
		if ok && c.refreshing != nil {
			held = append(held, h)
		}
	}
	for _, h := range held {
		c.refresh(h)
	}
}

// refresh reads hostname again in the background (Options.Refresh), unless
// the replica is failing or RefreshConcurrency reads already run.
func (c *Cache) refresh(hostname string) {
	if c.failing() {
		c.refreshSkipped.Add(1)
		return
	}
	select {
	case c.refreshing <- struct{}{}:
	default:
		c.refreshSkipped.Add(1)
		return
	}
	c.refreshes.Add(1)
	go func() {
		defer func() { <-c.refreshing }()
		c.flight.Do(hostname, func() (any, error) { return c.fill(hostname) })
	}()
}

// Gap records that invalidations may have been missed: every entry expires
// at once (they stay for stale-if-error), and no fill already in flight is
// installed.
func (c *Cache) Gap() {
	c.gen.Add(1)
}

// Len returns the number of entries, fresh, expired or out of date.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len() + sh.neg.Len()
		sh.mu.Unlock()
	}
	return n
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		Misses:            c.misses.Load(),
		StaleServes:       c.staleServes.Load(),
		StaleAtOnce:       c.staleAtOnce.Load(),
		FallbackServes:    c.fallbackServes.Load(),
		FallbackErrors:    c.fallbackErrors.Load(),
		FallbackDiscarded: c.fallbackDiscarded.Load(),
		SiblingServes:     c.siblingServes.Load(),
		Refreshes:         c.refreshes.Load(),
		RefreshSkipped:    c.refreshSkipped.Load(),
		Reads:             c.reads.Load(),
		ReadErrors:        c.readErrors.Load(),
		Rejected:          c.rejected.Load(),
		Retries:           c.retries.Load(),
		Refused:           c.refused.Load(),
		RefusedStale:      c.refusedStale.Load(),
		Remembered:        c.recent.size(),
		ReplicaFailing:    c.failing(),
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		s.PositiveHits += sh.positiveHits
		s.NegativeHits += sh.negativeHits
		s.Entries += sh.lru.Len() + sh.neg.Len()
		s.NegativeEntries += sh.neg.Len()
		sh.mu.Unlock()
	}
	return s
}
