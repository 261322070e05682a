package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// RateLimits bounds how fast one caller may send requests. An
// authenticated request counts against its caller, the credential's unique
// name, wherever it comes from; any other request (an open route, a failed
// authentication, an unknown route) against its client address, so that
// floods without credentials are limited too. Once an address has spent
// its budget, every request from it is refused until it refills, even one
// with credentials: checking them is work the flood would otherwise get
// for free. A refused request gets 429 with Retry-After and costs no store
// call.
//
// The client address is the TCP peer (an IPv6 address counts as its /64,
// which one host usually holds whole); X-Forwarded-For is not trusted, so
// behind a proxy every unauthenticated request shares the proxy's budget.
type RateLimits struct {
	// PerCaller is the sustained requests a second of one authenticated
	// caller; 0 means no limit.
	PerCaller float64
	// CallerBurst is how many requests a caller may send at once; 0 means
	// twice PerCaller (at least 1).
	CallerBurst int
	// PerAddress is the sustained requests a second of one client address
	// before (or without) authentication; 0 means no limit.
	PerAddress float64
	// AddressBurst is PerAddress's burst; 0 means twice PerAddress.
	AddressBurst int
	// MaxTracked bounds the callers and, apart, the addresses whose
	// budgets are remembered; the least recently seen are forgotten (and
	// start afresh). 0 means DefaultMaxTracked.
	MaxTracked int
	// Now is the limits' clock; nil means time.Now.
	Now func() time.Time
}

// Rate limit defaults: far above what people and tcsctl send (tcsctl
// retries a 429 after Retry-After), far below what a flood does.
const (
	DefaultPerCaller  = 100
	DefaultPerAddress = 20
	DefaultMaxTracked = 10_000
)

// DefaultRateLimits are the limits of a Config without RateLimits.
func DefaultRateLimits() RateLimits {
	return RateLimits{PerCaller: DefaultPerCaller, PerAddress: DefaultPerAddress}
}

// limiter keeps a token bucket per caller and per client address.
type limiter struct {
	perCaller, perAddress  rate.Limit
	callerBurst, addrBurst int
	now                    func() time.Time

	mu      sync.Mutex
	callers *simplelru.LRU[string, *rate.Limiter]
	addrs   *simplelru.LRU[string, *rate.Limiter]
}

func newLimiter(cfg RateLimits) *limiter {
	burst := func(b int, r float64) int {
		if b > 0 {
			return b
		}
		return max(1, int(math.Ceil(2*r)))
	}
	l := &limiter{
		perCaller: rate.Limit(cfg.PerCaller), perAddress: rate.Limit(cfg.PerAddress),
		callerBurst: burst(cfg.CallerBurst, cfg.PerCaller), addrBurst: burst(cfg.AddressBurst, cfg.PerAddress),
		now: cfg.Now,
	}
	if l.now == nil {
		l.now = time.Now
	}
	size := positiveOr(cfg.MaxTracked, DefaultMaxTracked)
	l.callers, _ = simplelru.NewLRU[string, *rate.Limiter](size, nil)
	l.addrs, _ = simplelru.NewLRU[string, *rate.Limiter](size, nil)
	return l
}

// rateLimited is a request refused by a rate limit.
type rateLimited struct {
	// by is "caller" or "address".
	by    string
	limit rate.Limit
	burst int
	retry time.Duration
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("too many requests from this %s: at most %g a second (bursts of %d); retry in %s", e.by, float64(e.limit), e.burst, retryAfterSeconds(e.retry)+"s")
}

// retryAfterSeconds is d as a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// bucket returns key's bucket in c, making one if needed.
func (l *limiter) bucket(c *simplelru.LRU[string, *rate.Limiter], key string, r rate.Limit, burst int) *rate.Limiter {
	b, ok := c.Get(key)
	if !ok {
		b = rate.NewLimiter(r, burst)
		c.Add(key, b)
	}
	return b
}

// take spends one request of the caller's budget (an authenticated
// request: caller is its name) or else of the address's.
func (l *limiter) take(caller, addr string) error {
	by, key, r, burst, c := "caller", caller, l.perCaller, l.callerBurst, l.callers
	if caller == "" {
		by, key, r, burst, c = "address", addr, l.perAddress, l.addrBurst, l.addrs
	}
	if r == 0 {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(c, key, r, burst)
	if b.AllowN(now, 1) {
		return nil
	}
	return &rateLimited{by: by, limit: r, burst: burst, retry: wait(b, now)}
}

// spent reports whether addr has no budget left, without spending any.
func (l *limiter) spent(addr string) error {
	if l.perAddress == 0 {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.addrs.Get(addr)
	if !ok || b.TokensAt(now) >= 1 {
		return nil
	}
	return &rateLimited{by: "address", limit: l.perAddress, burst: l.addrBurst, retry: wait(b, now)}
}

// wait is how long until b holds a whole token again.
func wait(b *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - b.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(b.Limit()) * float64(time.Second))
}

// clientAddress is the key of r's client for the per-address limit: its
// TCP peer's IP address, or the /64 of an IPv6 one.
func clientAddress(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		// Not ip:port (a test or an unusual listener): the whole string,
		// bounded.
		return truncate(r.RemoteAddr, 64)
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// limited charges a request to its caller's budget (or, on an open route,
// its address's) before the handler runs, after authentication.
func (s *Server) limited(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if rec, ok := w.(*statusRecorder); ok {
			rec.charged = true
		}
		if err := s.limits.take(actorFrom(r.Context()), clientAddress(r)); err != nil {
			return err
		}
		return h(w, r)
	}
}

// codeRateLimited: the caller or its address exceeded its rate limit.
const codeRateLimited tenant.Code = "rate_limited"

// knownMethods are the metric label values of request methods; any other
// method is "other", so that a client cannot mint series.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
	http.MethodConnect: true, http.MethodTrace: true,
}

// methodLabel is r's method as a metric label (and log field): one of the
// HTTP methods, or "other".
func methodLabel(method string) string {
	if knownMethods[method] {
		return method
	}
	return "other"
}

// statusLabel is a status code as a metric label: bounded to the three
// digit codes.
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}
