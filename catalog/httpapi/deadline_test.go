package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// Short deadlines, so that each frozen call costs a fraction of a second.
const (
	testStoreTimeout = 300 * time.Millisecond
	testReadyTimeout = 200 * time.Millisecond
)

// frozenStore is a catalog.Store whose frozen methods hang: until the test
// ends, ignoring their context (a store stuck in a read that has no
// deadline), or, with honorsContext, until their context ends. The other
// methods, and frozen ones once released, reach the real store.
type frozenStore struct {
	catalog.Store
	honorsContext bool
	release       chan struct{} // closed to let frozen calls through
	releaseOnce   sync.Once

	mu        sync.Mutex
	fail      map[string]error // methods that fail at once with this error
	frozen    map[string]bool
	calls     map[string]int
	deadlines []time.Time
	returned  chan string // receives the method of each released call once it returned
}

func newFrozenStore(t testing.TB, real catalog.Store, honorsContext bool, methods ...string) *frozenStore {
	f := &frozenStore{Store: real, honorsContext: honorsContext, release: make(chan struct{}),
		frozen: map[string]bool{}, calls: map[string]int{}, returned: make(chan string, 100)}
	for _, m := range methods {
		f.frozen[m] = true
	}
	t.Cleanup(func() { f.releaseOnce.Do(func() { close(f.release) }) })
	return f
}

// thaw lets every frozen call, waiting or future, through to the real
// store.
func (f *frozenStore) thaw() {
	f.mu.Lock()
	f.frozen = map[string]bool{}
	f.mu.Unlock()
	f.releaseOnce.Do(func() { close(f.release) })
}

func (f *frozenStore) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// wait hangs a frozen method. It returns the context the real call gets:
// once released, a frozen call goes on as a store that ignored its deadline
// would.
func (f *frozenStore) wait(ctx context.Context, method string) (context.Context, func(), error) {
	f.mu.Lock()
	frozen := f.frozen[method]
	f.calls[method]++
	if err := f.fail[method]; err != nil {
		f.mu.Unlock()
		return nil, nil, err
	}
	if d, ok := ctx.Deadline(); ok && frozen {
		f.deadlines = append(f.deadlines, d)
	}
	f.mu.Unlock()
	if !frozen {
		return ctx, func() {}, nil
	}
	if f.honorsContext {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-f.release:
		}
	} else {
		<-f.release
	}
	return context.WithoutCancel(ctx), func() { f.returned <- method }, nil
}

func (f *frozenStore) Create(ctx context.Context, t *tenant.Tenant, actor string) (*tenant.Tenant, error) {
	ctx, done, err := f.wait(ctx, "Create")
	if err != nil {
		return nil, err
	}
	defer done()
	return f.Store.Create(ctx, t, actor)
}

func (f *frozenStore) Get(ctx context.Context, id string) (*tenant.Tenant, error) {
	ctx, done, err := f.wait(ctx, "Get")
	if err != nil {
		return nil, err
	}
	defer done()
	return f.Store.Get(ctx, id)
}

func (f *frozenStore) Update(ctx context.Context, t *tenant.Tenant, expected int64, actor string) (*tenant.Tenant, error) {
	ctx, done, err := f.wait(ctx, "Update")
	if err != nil {
		return nil, err
	}
	defer done()
	return f.Store.Update(ctx, t, expected, actor)
}

func (f *frozenStore) Delete(ctx context.Context, id string, expected int64, actor string) (*tenant.Tenant, error) {
	ctx, done, err := f.wait(ctx, "Delete")
	if err != nil {
		return nil, err
	}
	defer done()
	return f.Store.Delete(ctx, id, expected, actor)
}

func (f *frozenStore) List(ctx context.Context, opts catalog.ListOptions) (catalog.Page, error) {
	ctx, done, err := f.wait(ctx, "List")
	if err != nil {
		return catalog.Page{}, err
	}
	defer done()
	return f.Store.List(ctx, opts)
}

func (f *frozenStore) LookupHostname(ctx context.Context, h string) (*tenant.Tenant, error) {
	ctx, done, err := f.wait(ctx, "LookupHostname")
	if err != nil {
		return nil, err
	}
	defer done()
	return f.Store.LookupHostname(ctx, h)
}

func (f *frozenStore) History(ctx context.Context, id string, opts catalog.HistoryOptions) ([]catalog.AuditRecord, error) {
	ctx, done, err := f.wait(ctx, "History")
	if err != nil {
		return nil, err
	}
	defer done()
	return f.Store.History(ctx, id, opts)
}

func (f *frozenStore) Resync(ctx context.Context, reqs []catalog.ResyncRequest, regions []string) (catalog.ResyncResult, error) {
	ctx, done, err := f.wait(ctx, "Resync")
	if err != nil {
		return catalog.ResyncResult{}, err
	}
	defer done()
	return f.Store.Resync(ctx, reqs, regions)
}

func (f *frozenStore) ResyncAll(ctx context.Context, after string, limit int, regions []string) (catalog.ResyncResult, string, error) {
	ctx, done, err := f.wait(ctx, "ResyncAll")
	if err != nil {
		return catalog.ResyncResult{}, "", err
	}
	defer done()
	return f.Store.ResyncAll(ctx, after, limit, regions)
}

func (f *frozenStore) Export(ctx context.Context, opts catalog.ListOptions) (catalog.ExportPage, error) {
	ctx, done, err := f.wait(ctx, "Export")
	if err != nil {
		return catalog.ExportPage{}, err
	}
	defer done()
	return f.Store.Export(ctx, opts)
}

func (f *frozenStore) Ping(ctx context.Context) error {
	ctx, done, err := f.wait(ctx, "Ping")
	if err != nil {
		return err
	}
	defer done()
	return f.Store.Ping(ctx)
}

// newFrozenHarness is a harness whose API reaches its store through a
// frozenStore with methods frozen, and short deadlines. The bbolt store
// holds tenant alpha (alpha.example.com) at version 1.
func newFrozenHarness(t testing.TB, honorsContext bool, configure func(*Config), methods ...string) (*harness, *frozenStore) {
	t.Helper()
	var fs *frozenStore
	h := newHarnessConfig(t, func(c *Config) {
		fs = newFrozenStore(t, c.Store, honorsContext, methods...)
		c.Store = fs
		c.StoreTimeout, c.ReadyTimeout = testStoreTimeout, testReadyTimeout
		if configure != nil {
			configure(c)
		}
	})
	if _, err := h.store.Create(context.Background(), mustPrepare(t, "alpha", "alpha.example.com"), "alice"); err != nil {
		t.Fatal(err)
	}
	return h, fs
}

func mustPrepare(t testing.TB, id string, hostnames ...string) *tenant.Tenant {
	t.Helper()
	tn, err := decodeTenantInput([]byte(tenantJSON(id, hostnames...)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tenant.Prepare(tn); err != nil {
		t.Fatal(err)
	}
	return tn
}

// timedDo is h.do, reporting how long the API took to answer.
func (h *harness) timedDo(c call) (result, time.Time, time.Time) {
	h.t.Helper()
	start := time.Now()
	res := h.do(c)
	return res, start, time.Now()
}

// checkUnavailable asserts a 503 problem with Retry-After, of problem type
// want, naming the operation.
func checkUnavailable(t *testing.T, res result, want tenant.Code, operation string) Problem {
	t.Helper()
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503; body %s", res.status, res.body)
	}
	if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", res.header.Get("Retry-After"))
	}
	p := res.problem(t)
	if p.Type != "urn:tcs:problem:"+string(want) {
		t.Errorf("problem type %q, want %q; detail %q", p.Type, "urn:tcs:problem:"+string(want), p.Detail)
	}
	if p.Operation != operation {
		t.Errorf("problem operation %q, want %q", p.Operation, operation)
	}
	return p
}

// TestFrozenStore: every store-backed operation answers 503 with
// Retry-After by its deadline when its store call hangs, whether the store
// ignores its context or honours it. Writes that reached the store are
// "outcome unknown", with how to check; reads, and writes whose store call
// never started, are plain store timeouts.
func TestFrozenStore(t *testing.T) {
	t.Parallel()
	ifMatch1 := map[string]string{"If-Match": `"1"`}
	cases := []struct {
		name      string
		frozen    string // the store method that hangs
		call      call
		want      tenant.Code
		operation string
		check     []string // the outcome-unknown detail names these
	}{
		{"create", "Create", call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("beta", "beta.example.com")},
			codeOutcomeUnknown, "create tenant beta", []string{"GET /v1/tenants/beta", "404", "/v1/tenants/beta/history"}},
		{"replace", "Update", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "alpha.example.org"), header: ifMatch1},
			codeOutcomeUnknown, "update tenant alpha", []string{"GET /v1/tenants/alpha", `ETag "1" means it did not commit`, `"2"`, "/v1/tenants/alpha/history"}},
		{"patch", "Update", call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"labels":{"tier":"silver"}}`,
			header: map[string]string{"If-Match": `"1"`, "Content-Type": "application/merge-patch+json"}},
			codeOutcomeUnknown, "update tenant alpha", []string{`ETag "1"`}},
		{"activate product", "Update", call{method: "POST", path: "/v1/tenants/alpha/products/confluence:activate", token: adminToken},
			codeOutcomeUnknown, "update tenant alpha", []string{`ETag "1"`}},
		{"replace, read frozen", "Get", call{method: "PUT", path: "/v1/tenants/alpha", token: adminToken, body: tenantJSON("alpha", "alpha.example.org"), header: ifMatch1},
			codeStoreTimeout, "read tenant alpha", nil},
		{"delete", "Delete", call{method: "DELETE", path: "/v1/tenants/alpha", token: adminToken},
			codeOutcomeUnknown, "delete tenant alpha", []string{"GET /v1/tenants/alpha", "/v1/tenants/alpha/history"}},
		{"get", "Get", call{method: "GET", path: "/v1/tenants/alpha", token: readerToken}, codeStoreTimeout, "read tenant alpha", nil},
		{"list", "List", call{method: "GET", path: "/v1/tenants", token: readerToken}, codeStoreTimeout, "list tenants", nil},
		{"history", "History", call{method: "GET", path: "/v1/tenants/alpha/history", token: readerToken}, codeStoreTimeout, "read the history of tenant alpha", nil},
		{"hostname", "LookupHostname", call{method: "GET", path: "/v1/hostnames/Alpha.Example.com", token: readerToken}, codeStoreTimeout, "look up hostname alpha.example.com", nil},
		{"export", "Export", call{method: "GET", path: "/v1/admin/export", token: readerToken}, codeStoreTimeout, "export tenants", nil},
		{"resync", "Resync", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"tenants":[{"id":"alpha"}]}`},
			codeOutcomeUnknown, "resync 1 tenant", []string{"send the same request again"}},
		{"resync all", "ResyncAll", call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"all":true}`},
			codeOutcomeUnknown, "resync a page of all tenants", []string{"send the same request again"}},
	}
	for _, honors := range []bool{false, true} {
		mode := "store ignores context"
		if honors {
			mode = "store honours context"
		}
		for _, tc := range cases {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				h, fs := newFrozenHarness(t, honors, nil, tc.frozen)
				res, start, end := h.timedDo(tc.call)
				p := checkUnavailable(t, res, tc.want, tc.operation)
				if tc.want == codeOutcomeUnknown && p.Title != "Write outcome unknown" {
					t.Errorf("title %q, want \"Write outcome unknown\"", p.Title)
				}
				for _, s := range tc.check {
					if !strings.Contains(p.Detail, s) {
						t.Errorf("detail %q does not say %q", p.Detail, s)
					}
				}
				if fs.count(tc.frozen) != 1 {
					t.Errorf("store %s called %d times, want 1", tc.frozen, fs.count(tc.frozen))
				}
				// The store got the request's deadline, and the API answered
				// by it (plus scheduling slack; a generous bound).
				fs.mu.Lock()
				deadlines := fs.deadlines
				fs.mu.Unlock()
				if len(deadlines) != 1 {
					t.Fatalf("the frozen call saw %d context deadlines, want 1", len(deadlines))
				}
				if d := deadlines[0].Sub(start); d < testStoreTimeout || d > testStoreTimeout+time.Second {
					t.Errorf("store call deadline %v after the request began, want the store timeout %v", d, testStoreTimeout)
				}
				if took := end.Sub(start); took > 5*testStoreTimeout {
					t.Errorf("answered after %v; the store deadline is %v", took, testStoreTimeout)
				}
			})
		}
	}
}

// TestTimedOutWriteMayCommit: a create that timed out was answered
// "outcome unknown", and rightly so: the store commits it afterwards, and
// the check the answer describes finds it.
func TestTimedOutWriteMayCommit(t *testing.T) {
	t.Parallel()
	h, fs := newFrozenHarness(t, false, nil, "Create")
	res := h.do(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("beta", "beta.example.com")})
	checkUnavailable(t, res, codeOutcomeUnknown, "create tenant beta")

	fs.thaw()
	if m := <-fs.returned; m != "Create" {
		t.Fatalf("released call %s, want Create", m)
	}
	got := h.mustDo(call{method: "GET", path: "/v1/tenants/beta", token: readerToken}, http.StatusOK)
	if got.header.Get("ETag") != `"1"` {
		t.Errorf("ETag %s, want \"1\"", got.header.Get("ETag"))
	}
	hist := h.mustDo(call{method: "GET", path: "/v1/tenants/beta/history", token: readerToken}, http.StatusOK)
	if !strings.Contains(string(hist.body), `"action":"create"`) || !strings.Contains(string(hist.body), `"actor":"alice"`) {
		t.Errorf("history does not show alice's create: %s", hist.body)
	}
}

// TestStoreCallsBounded: calls to a store that ignores its context outlive
// their requests, but at most MaxStoreCalls of them; beyond that requests
// wait for a slot until their deadline and answer 503 without calling the
// store (a write then says nothing was written).
func TestStoreCallsBounded(t *testing.T) {
	t.Parallel()
	h, fs := newFrozenHarness(t, false, func(c *Config) { c.MaxStoreCalls = 2 }, "Get", "Create")
	for range 2 {
		checkUnavailable(t, h.do(call{method: "GET", path: "/v1/tenants/alpha", token: readerToken}), codeStoreTimeout, "read tenant alpha")
	}
	// Both slots are held by hung calls.
	checkUnavailable(t, h.do(call{method: "GET", path: "/v1/tenants/alpha", token: readerToken}), codeStoreTimeout, "read tenant alpha")
	res := h.do(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("beta", "beta.example.com")})
	p := checkUnavailable(t, res, codeStoreTimeout, "create tenant beta")
	if !strings.Contains(p.Detail, "nothing was written") {
		t.Errorf("detail %q does not say nothing was written", p.Detail)
	}
	if n := fs.count("Get"); n != 2 {
		t.Errorf("store Get called %d times, want 2 (the limit)", n)
	}
	if n := fs.count("Create"); n != 0 {
		t.Errorf("store Create called %d times, want 0: no slot was free", n)
	}
	metrics := string(h.mustDo(call{method: "GET", path: "/metrics"}, http.StatusOK).body)
	for _, want := range []string{"tcs_catalog_store_calls_in_flight 2", `tcs_catalog_store_timeouts_total{method="Get"} 3`, `tcs_catalog_store_timeouts_total{method="Create"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Once the store answers, the slots come back.
	fs.thaw()
	<-fs.returned
	<-fs.returned
	testwait.For(t, "store call slots to free", func() bool { return len(h.api.slots) == 0 })
	h.mustDo(call{method: "GET", path: "/v1/tenants/alpha", token: readerToken}, http.StatusOK)
}

// TestHealthzReadyzFrozenStore: /healthz answers 200 while the store is
// frozen; /readyz answers 503 by its deadline, and its ping is shared and
// cached, so a flood of /readyz costs one store call a second.
func TestHealthzReadyzFrozenStore(t *testing.T) {
	t.Parallel()
	everything := []string{"Create", "Get", "Update", "Delete", "List", "LookupHostname", "History", "Resync", "ResyncAll", "Export", "Ping"}
	h, fs := newFrozenHarness(t, false, nil, everything...)

	h.mustDo(call{method: "GET", path: "/healthz"}, http.StatusOK)

	res, start, end := h.timedDo(call{method: "GET", path: "/readyz"})
	checkUnavailable(t, res, codeStoreTimeout, "ping")
	if took := end.Sub(start); took > 5*testReadyTimeout {
		t.Errorf("/readyz answered after %v; its deadline is %v", took, testReadyTimeout)
	}
	if n := fs.count("Ping"); n != 1 {
		t.Fatalf("%d pings, want 1", n)
	}

	// A flood within the cache's second: no more pings.
	flood := func() {
		results := make([]result, 20)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() { results[i] = h.do(call{method: "GET", path: "/readyz"}) })
		}
		wg.Wait()
		for _, res := range results {
			checkUnavailable(t, res, codeStoreTimeout, "ping")
		}
	}
	flood()
	if n := fs.count("Ping"); n != 1 {
		t.Errorf("%d pings after a flood of /readyz within a second, want 1", n)
	}
	// A second later, concurrent callers share one ping.
	h.clock.Advance(readyCacheTTL)
	flood()
	if n := fs.count("Ping"); n != 2 {
		t.Errorf("%d pings after the next second's flood, want 2", n)
	}
	h.mustDo(call{method: "GET", path: "/healthz"}, http.StatusOK)

	// The store recovers: ready again once the cached answer expires.
	fs.thaw()
	h.clock.Advance(readyCacheTTL)
	testwait.For(t, "store call slots to free", func() bool { return len(h.api.slots) == 0 })
	h.mustDo(call{method: "GET", path: "/readyz"}, http.StatusOK)
}

// sendError is what the AWS SDK reports when a request's connection fails
// (smithy's RequestSendError): the request may have been sent.
type sendError struct{}

func (sendError) Error() string         { return "send request: connection reset by peer" }
func (sendError) ConnectionError() bool { return true }

// TestLostConnection: a write whose store call fails with a connection
// error may have reached the store, so it is "outcome unknown", like a
// timeout; a read is a plain 503.
func TestLostConnection(t *testing.T) {
	t.Parallel()
	h, fs := newFrozenHarness(t, false, nil)
	fs.mu.Lock()
	fs.fail = map[string]error{"Update": fmt.Errorf("dynamo update: %w", sendError{}), "History": sendError{}}
	fs.mu.Unlock()
	res := h.do(call{method: "PATCH", path: "/v1/tenants/alpha", token: adminToken, body: `{"labels":{"tier":"silver"}}`,
		header: map[string]string{"If-Match": `"1"`, "Content-Type": "application/merge-patch+json"}})
	p := checkUnavailable(t, res, codeOutcomeUnknown, "update tenant alpha")
	if !strings.Contains(p.Detail, "connection to the source of truth failed") || !strings.Contains(p.Detail, `ETag "1"`) {
		t.Errorf("detail %q does not say the connection failed and how to check", p.Detail)
	}
	res = h.do(call{method: "GET", path: "/v1/tenants/alpha/history", token: readerToken})
	checkUnavailable(t, res, tenant.Unavailable, "read the history of tenant alpha")
}

// BenchmarkStoreCall measures what the deadline costs a store call: its own
// goroutine, a timer and a slot.
func BenchmarkStoreCall(b *testing.B) {
	s := New(Config{})
	ctx := context.Background()
	f := func(context.Context) (int, error) { return 1, nil }
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := f(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("storeCall", func(b *testing.B) {
		op := storeOp{method: "Get", what: "read tenant x"}
		for b.Loop() {
			if _, err := storeCall(s, ctx, op, f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
