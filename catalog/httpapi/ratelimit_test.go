package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/internal/testio"
)

// countingStore counts the store calls of the routes the rate limit tests
// use.
type countingStore struct {
	catalog.Store
	calls atomic.Int64
}

func (c *countingStore) List(ctx context.Context, opts catalog.ListOptions) (catalog.Page, error) {
	c.calls.Add(1)
	return c.Store.List(ctx, opts)
}

func (c *countingStore) Ping(ctx context.Context) error {
	c.calls.Add(1)
	return c.Store.Ping(ctx)
}

// limitedHarness is a harness with limits and a clock of their own, whose
// store counts calls.
func limitedHarness(t *testing.T, limits RateLimits) (*harness, *testclock.Clock, *countingStore) {
	t.Helper()
	clock := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	limits.Now = clock.Now
	var counting *countingStore
	h := newHarnessConfig(t, func(c *Config) {
		counting = &countingStore{Store: c.Store}
		c.Store = counting
		c.RateLimits = &limits
	})
	return h, clock, counting
}

// doFrom is h.do from the client address remote ("ip:port").
func (h *harness) doFrom(remote string, c call) result {
	h.t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req := httptest.NewRequest(c.method, c.path, body)
	req.RemoteAddr = remote
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	rec := httptest.NewRecorder()
	h.api.ServeHTTP(rec, req)
	res := result{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	checkAgainstSpec(h.t, req, res)
	return res
}

// counterValue is the value of the counter name{labels}, or 0.
func counterValue(t testing.TB, h *harness, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := h.api.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return metricValue(m)
		}
	}
	return 0
}

func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetGauge().GetValue()
}

func TestRateLimitPerCaller(t *testing.T) {
	t.Parallel()
	h, clock, store := limitedHarness(t, RateLimits{PerCaller: 2, CallerBurst: 3})
	const addr = "192.0.2.10:4000"
	list := call{method: "GET", path: "/v1/tenants", token: readerToken}
	for i := range 3 {
		if res := h.doFrom(addr, list); res.status != http.StatusOK {
			t.Fatalf("request %d in the burst: %d %s", i+1, res.status, res.body)
		}
	}
	calls := store.calls.Load()
	res := h.doFrom(addr, list)
	if res.status != http.StatusTooManyRequests {
		t.Fatalf("request beyond the burst: %d, want 429", res.status)
	}
	p := res.problem(t)
	if p.Type != "urn:tcs:problem:rate_limited" || !strings.Contains(p.Detail, "this caller") || strings.Contains(p.Detail, "bob") {
		t.Errorf("problem %+v: want rate_limited, naming the caller's limit but not the caller", p)
	}
	// Empty bucket, 2 a second: a token in half a second, rounded up.
	if got := res.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if got := store.calls.Load(); got != calls {
		t.Errorf("a refused request made %d store calls", got-calls)
	}
	// Another caller, from the same address, has its own budget.
	if res := h.doFrom(addr, call{method: "GET", path: "/v1/tenants", token: adminToken}); res.status != http.StatusOK {
		t.Errorf("another caller: %d, want 200", res.status)
	}
	// And so has the same caller from anywhere else: it is the caller
	// that is limited.
	if res := h.doFrom("198.51.100.7:1", list); res.status != http.StatusTooManyRequests {
		t.Errorf("the same caller from another address: %d, want 429", res.status)
	}
	clock.Advance(500 * time.Millisecond)
	if res := h.doFrom(addr, list); res.status != http.StatusOK {
		t.Errorf("after the refill: %d, want 200", res.status)
	}
	if got := counterValue(t, h, "tcs_catalog_http_rate_limited_total", map[string]string{"by": "caller"}); got != 2 {
		t.Errorf("rate_limited_total{by=caller} = %v, want 2", got)
	}
}

func TestRateLimitPerAddress(t *testing.T) {
	t.Parallel()
	h, clock, store := limitedHarness(t, RateLimits{PerAddress: 1, AddressBurst: 2, PerCaller: 100})
	const flooder, other = "192.0.2.66:1234", "203.0.113.5:80"
	// Open routes, failed authentication and unknown routes all spend
	// the address's budget.
	steps := []struct {
		c    call
		want int
	}{
		{call{method: "GET", path: "/readyz"}, 200},
		{call{method: "GET", path: "/v1/tenants", token: "wrong-token"}, 401},
		{call{method: "GET", path: "/no/such/route"}, 429},
		{call{method: "GET", path: "/readyz"}, 429},
		// Credentials do not open an open route past the address's
		// limit.
		{call{method: "GET", path: "/readyz", token: readerToken}, 429},
		// Spent, but valid credentials are limited as their caller, not
		// as the address (callers behind one proxy share it)...
		{call{method: "GET", path: "/v1/tenants", token: readerToken}, 200},
		// ...while wrong ones get 429 like anonymous requests (guessing
		// tokens is limited too).
		{call{method: "GET", path: "/v1/tenants", token: "wrong-token"}, 429},
	}
	for i, st := range steps {
		res := h.doFrom(flooder, st.c)
		if res.status != st.want {
			t.Fatalf("step %d (%s %s): %d, want %d", i+1, st.c.method, st.c.path, res.status, st.want)
		}
		if st.want == 429 {
			if res.header.Get("Retry-After") == "" {
				t.Errorf("step %d: 429 without Retry-After", i+1)
			}
			if p := res.problem(t); !strings.Contains(p.Detail, "this address") {
				t.Errorf("step %d: detail %q, want the address's limit", i+1, p.Detail)
			}
		}
	}
	if got := store.calls.Load(); got != 2 {
		t.Errorf("store calls %d, want 2 (the first readyz and the authenticated list)", got)
	}
	// Other addresses are not affected.
	if res := h.doFrom(other, call{method: "GET", path: "/healthz"}); res.status != 200 {
		t.Errorf("another address: %d, want 200", res.status)
	}
	// An IPv6 client is its /64.
	if res := h.doFrom("[2001:db8:1:2::1]:443", call{method: "GET", path: "/healthz"}); res.status != 200 {
		t.Fatalf("ipv6: %d", res.status)
	}
	h.doFrom("[2001:db8:1:2::ffff]:443", call{method: "GET", path: "/healthz"})
	if res := h.doFrom("[2001:db8:1:2:aaaa::1]:443", call{method: "GET", path: "/healthz"}); res.status != http.StatusTooManyRequests {
		t.Errorf("third address of one /64: %d, want 429", res.status)
	}
	if res := h.doFrom("[2001:db8:1:3::1]:443", call{method: "GET", path: "/healthz"}); res.status != 200 {
		t.Errorf("another /64: %d, want 200", res.status)
	}
	clock.Advance(time.Second)
	if res := h.doFrom(flooder, call{method: "GET", path: "/v1/tenants", token: readerToken}); res.status != 200 {
		t.Errorf("after the refill: %d, want 200", res.status)
	}
}

// TestRateLimitTracksBoundedCallers: addresses beyond MaxTracked evict the
// least recently seen, so a flood from many addresses costs bounded
// memory.
func TestRateLimitTracksBoundedCallers(t *testing.T) {
	t.Parallel()
	l := newLimiter(RateLimits{PerCaller: 1, PerAddress: 1, MaxTracked: 100})
	for i := range 10_000 {
		_ = l.take("", "10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256))
		_ = l.take("caller-"+strconv.Itoa(i), "")
	}
	if n, m := l.addrs.Len(), l.callers.Len(); n != 100 || m != 100 {
		t.Errorf("tracked %d addresses and %d callers, want 100 each", n, m)
	}
}

func TestRateLimitsOff(t *testing.T) {
	t.Parallel()
	h, _, _ := limitedHarness(t, RateLimits{})
	for i := range 500 {
		if res := h.doFrom("192.0.2.1:1", call{method: "GET", path: "/healthz"}); res.status != 200 {
			t.Fatalf("request %d with no limits: %d", i+1, res.status)
		}
	}
}

// TestFailureLogThrottled: a store outage fails every request; the failure
// log has a line a second, and says how many it held back.
func TestFailureLogThrottled(t *testing.T) {
	t.Parallel()
	var buf testio.SyncBuffer
	h := newHarnessConfig(t, func(c *Config) { c.Logger = newTextLogger(&buf) })
	h.store.Close()
	for range 200 {
		if res := h.do(call{method: "GET", path: "/v1/tenants", token: readerToken}); res.status < 500 {
			t.Fatalf("list with the store closed: %d, want 500 or 503", res.status)
		}
	}
	if n := strings.Count(buf.String(), `msg="request failed"`); n < 1 || n > 3 {
		t.Errorf("%d 'request failed' lines for 200 failures within a second or so, want 1 to 3", n)
	}
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// BenchmarkRateLimit is what the limits add to a request: the address
// check before routing and the caller's bucket after authentication.
func BenchmarkRateLimit(b *testing.B) {
	l := newLimiter(RateLimits{PerCaller: 1e9, PerAddress: 1e9})
	b.ReportAllocs()
	for b.Loop() {
		if err := l.spent("192.0.2.1"); err != nil {
			b.Fatal(err)
		}
		if err := l.take("alice", "192.0.2.1"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnauthenticatedFailuresLogThrottled: failed requests without a
// caller (a flood of bad credentials or random paths from many addresses)
// are logged at most ten times a second; authenticated requests each.
func TestUnauthenticatedFailuresLogThrottled(t *testing.T) {
	t.Parallel()
	var buf testio.SyncBuffer
	h := newHarnessConfig(t, func(c *Config) { c.Logger = newTextLogger(&buf) })
	start := time.Now()
	for i := range 500 {
		h.doFrom(fmt.Sprintf("10.9.%d.%d:1", i>>8, i&255), call{method: "GET", path: "/v1/tenants", token: "wrong-token"})
		h.doFrom(fmt.Sprintf("10.9.%d.%d:1", i>>8, i&255), call{method: "GET", path: "/no/such/path"})
	}
	elapsed := time.Since(start)
	for range 5 {
		h.mustDo(call{method: "GET", path: "/v1/tenants/nobody", token: readerToken}, http.StatusNotFound)
	}
	logged := strings.Count(buf.String(), `msg=request`)
	if limit := 5 + 10*int(elapsed/time.Second+1) + 1; logged > limit || logged < 6 {
		t.Errorf("%d request lines for 1,000 unauthenticated failures in %v and 5 authenticated requests, want 6 to %d", logged, elapsed, limit)
	}
	if !strings.Contains(buf.String(), "unauthenticated_failures_held_back=") {
		t.Error("no line says how many were held back")
	}
}
