package lookup

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/logevery"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// Defaults of the caps and limits of Config.
const (
	// DefaultMaxWatchStreams is Config.MaxWatchStreams's default. A Watch
	// stream costs tens of KB (its goroutine, buffer and HTTP/2 state), and
	// relaying an invalidation to 10,000 takes 11–38 ms on 2 cores
	// (BenchmarkBroadcast).
	DefaultMaxWatchStreams = 10_000
	// DefaultMaxWatchPerCaller is Config.MaxWatchPerCaller's default.
	DefaultMaxWatchPerCaller = 1_000
	// DefaultLookupRate is Config.LookupRate's default.
	DefaultLookupRate = 50_000
	// DefaultMissRate is Config.MissRate's default.
	DefaultMissRate = 10_000
	// DefaultMissRatePerCaller is Config.MissRatePerCaller's default.
	DefaultMissRatePerCaller = 2_000
	// MaxBatchResponse bounds the tenant bytes of one BatchLookup response:
	// results past it are RESOURCE_EXHAUSTED (ask for them in another
	// call). It stays well under the 4 MiB a gRPC client accepts by
	// default.
	MaxBatchResponse = 1 << 20
	// maxCallers is how many callers the per-caller rate limits remember;
	// the least recently seen are forgotten (and start afresh, with a full
	// bucket, if they come back), so the memory they take is bounded
	// however many addresses a flood comes from. The node's miss budget
	// bounds replica reads whatever happens to per-caller state.
	maxCallers = 16_384
	// failureLogEvery is the shortest interval between two log lines of
	// one kind of failure (a replica read failed, an internal error); the
	// next line says how many were not logged meanwhile.
	failureLogEvery = 10 * time.Second
)

// TrailerRetryAfter is the trailer key of a RESOURCE_EXHAUSTED answer of
// Lookup or BatchLookup: how long to wait before asking again, as a Go
// duration ("250ms").
const TrailerRetryAfter = "retry-after"

// Caller identifies who is calling, for the per-caller caps and limits:
// the name of the identity the server authenticated (auth.FromContext),
// else the IP address the call came from (for IPv6, its /64: one host
// commonly has a whole /64 to draw addresses from). Callers sharing one
// identity (or one address, without authentication) share its caps.
type Caller struct {
	Name string     // the authenticated identity's name; empty: none
	IP   netip.Addr // the peer's address (IPv6: its /64), when Name is empty
}

// String names the caller for logs and error messages.
func (c Caller) String() string {
	switch {
	case c.Name != "":
		return "identity " + c.Name
	case c.IP.Is6():
		return "address " + c.IP.String() + "/64"
	case c.IP.IsValid():
		return "address " + c.IP.String()
	default:
		return "in-process caller"
	}
}

// CallerOf returns the caller of the call ctx belongs to: its
// authenticated identity's name, else its peer's IP address (neither for
// an in-process call, which then counts as one caller). It allocates
// nothing.
func CallerOf(ctx context.Context) Caller {
	if id, ok := auth.FromContext(ctx); ok && id.Name != "" {
		return Caller{Name: id.Name}
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return Caller{}
	}
	var ip netip.Addr
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		ip = a.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
		ip = ap.Addr()
	} else {
		return Caller{}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		pfx, _ := ip.Prefix(64)
		ip = pfx.Addr()
	}
	return Caller{IP: ip}
}

// shedError is a call or hostname refused by a cap or a limit: gRPC
// RESOURCE_EXHAUSTED, with a retry hint when waiting helps.
type shedError struct {
	reason     string // the metric label (shedReasons)
	msg        string
	retryAfter time.Duration // 0: no hint
}

func (e *shedError) Error() string {
	if e.retryAfter > 0 {
		return fmt.Sprintf("%s; retry after %v", e.msg, e.retryAfter.Round(time.Millisecond))
	}
	return e.msg
}

// The reasons of tcs_lookup_shed_total: a fixed set.
const (
	shedCallerRate    = "caller_rate"        // Config.LookupRate
	shedMissNode      = "miss_budget_node"   // Config.MissRate
	shedMissCaller    = "miss_budget_caller" // Config.MissRatePerCaller
	shedWatchNode     = "watch_node_cap"     // Config.MaxWatchStreams
	shedWatchCaller   = "watch_caller_cap"   // Config.MaxWatchPerCaller
	shedBatchResponse = "batch_response_size"
)

var shedReasons = []string{shedCallerRate, shedMissNode, shedMissCaller, shedWatchNode, shedWatchCaller, shedBatchResponse}

// callerLimits are one caller's rate limiters; nil ones are off.
type callerLimits struct {
	lookups, misses *rate.Limiter
}

// limits holds the rate limits of Lookup and BatchLookup.
type limits struct {
	lookupRate, missRate   rate.Limit // 0: off
	lookupBurst, missBurst int
	node                   *rate.Limiter // the node's miss budget; nil: off
	now                    func() time.Time

	seed   maphash.Seed
	shards [16]callerShard
}

type callerShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[Caller, *callerLimits]
	_   [48]byte // keep shards' locks on separate cache lines
}

// limit returns the rate and burst of a configured rate: off (0, 0) when
// it is negative, def when it is 0. The burst is a second's worth, and at
// least minBurst.
func limit(r, def float64, minBurst int) (rate.Limit, int) {
	if r == 0 {
		r = def
	}
	if r < 0 {
		return 0, 0
	}
	return rate.Limit(r), max(int(math.Ceil(r)), minBurst)
}

func newLimits(cfg Config, now func() time.Time) *limits {
	l := &limits{seed: maphash.MakeSeed(), now: now}
	l.lookupRate, l.lookupBurst = limit(cfg.LookupRate, DefaultLookupRate, MaxBatch)
	l.missRate, l.missBurst = limit(cfg.MissRatePerCaller, DefaultMissRatePerCaller, 1)
	if r, b := limit(cfg.MissRate, DefaultMissRate, 1); r > 0 {
		l.node = rate.NewLimiter(r, b)
	}
	if l.lookupRate > 0 || l.missRate > 0 {
		for i := range l.shards {
			lru, err := simplelru.NewLRU[Caller, *callerLimits](maxCallers/len(l.shards), nil)
			if err != nil {
				panic(err) // the size is positive
			}
			l.shards[i].lru = lru
		}
	}
	return l
}

// caller returns c's limiters, nil when no per-caller limit is on.
func (l *limits) caller(c Caller) *callerLimits {
	if l.lookupRate == 0 && l.missRate == 0 {
		return nil
	}
	sh := &l.shards[maphash.Comparable(l.seed, c)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if cl, ok := sh.lru.Get(c); ok {
		return cl
	}
	cl := &callerLimits{}
	if l.lookupRate > 0 {
		cl.lookups = rate.NewLimiter(l.lookupRate, l.lookupBurst)
	}
	if l.missRate > 0 {
		cl.misses = rate.NewLimiter(l.missRate, l.missBurst)
	}
	sh.lru.Add(c, cl)
	return cl
}

// take takes n tokens from lim if they are there now; if not it takes
// none, and says about how long until they would be. (Reserving and
// cancelling instead would give the exact wait, but cancellations racing
// with other reservations give back more tokens than they took: a flood
// from many goroutines would then read the replica over budget.)
func take(lim *rate.Limiter, n int, now time.Time) (ok bool, wait time.Duration) {
	if lim.AllowN(now, n) {
		return true, 0
	}
	missing := float64(n) - lim.TokensAt(now)
	return false, max(time.Duration(missing/float64(lim.Limit())*float64(time.Second)), time.Millisecond)
}

// allowLookups takes n hostnames from c's lookup rate, or returns why not.
func (s *Server) allowLookups(c Caller, cl *callerLimits, n int) error {
	if cl == nil || cl.lookups == nil {
		return nil
	}
	if ok, wait := take(cl.lookups, n, s.lim.now()); !ok {
		s.m.shed[shedCallerRate].Add(float64(n))
		return &shedError{
			reason:     shedCallerRate,
			msg:        fmt.Sprintf("%s is over its lookup rate of %g hostnames a second (tcs --lookup-rate-per-caller)", c, float64(s.lim.lookupRate)),
			retryAfter: wait,
		}
	}
	return nil
}

// admit returns the cache's admission control for the misses of caller c:
// a lookup of a hostname the cache holds a tenant for is always admitted
// (such reads are bounded by the cache's size and TTL, and are what keeps
// the hot set served); any other takes a token from the caller's miss
// budget and one from the node's.
func (s *Server) admit(c Caller, cl *callerLimits) cache.Admit {
	return func(known bool) error {
		if known {
			return nil
		}
		now := s.lim.now()
		if cl != nil && cl.misses != nil {
			// Taken first: a lookup the node then refuses still costs
			// its caller a token, so the caller behind a flood that
			// drains the node's budget is the one held back.
			if ok, d := take(cl.misses, 1, now); !ok {
				s.m.shed[shedMissCaller].Inc()
				return &shedError{
					reason:     shedMissCaller,
					msg:        fmt.Sprintf("%s is over its budget of %g replica reads a second (lookups of hostnames this server knows no tenant of, and min_version lookups that read) (tcs --miss-rate-per-caller)", c, float64(s.lim.missRate)),
					retryAfter: d,
				}
			}
		}
		if s.lim.node != nil {
			if ok, wait := take(s.lim.node, 1, now); !ok {
				s.m.shed[shedMissNode].Inc()
				return &shedError{
					reason:     shedMissNode,
					msg:        fmt.Sprintf("this server is over its budget of %g replica reads a second (lookups of hostnames it knows no tenant of, and min_version lookups that read) (tcs --miss-rate)", float64(s.lim.node.Limit())),
					retryAfter: wait,
				}
			}
		}
		return nil
	}
}

// retryTrailer tells a caller refused for err when to try again (outside
// a gRPC call it does nothing).
func retryTrailer(ctx context.Context, wait time.Duration) {
	if wait > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(TrailerRetryAfter, wait.Round(time.Millisecond).String()))
	}
}

// logLimiter lets one kind of failure log at most once per interval; each
// line says how many were not logged since the previous one.
type logLimiter struct {
	every logevery.Limiter
	now   func() time.Time
}

func newLogLimiter(every time.Duration, now func() time.Time) logLimiter {
	return logLimiter{every: logevery.Limiter{Every: every}, now: now}
}

// log logs msg with args (and "suppressed", the count since the previous
// line) unless a line was logged less than an interval ago.
func (l *logLimiter) log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	if n, ok := l.every.Allow(l.now()); ok {
		log.Log(context.Background(), level, msg, append(args, "suppressed", n)...)
	}
}
