package httpapi

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/httpserve"
)

// hostileOutcome is what an attack got.
type hostileOutcome struct {
	statuses map[int]int // answers by status
	maxBody  int         // the largest answer body, bytes
}

func (o *hostileOutcome) add(res result) {
	if o.statuses == nil {
		o.statuses = map[int]int{}
	}
	o.statuses[res.status]++
	o.maxBody = max(o.maxBody, len(res.body))
}

// hostileCase is one attack on the REST edge and the bounds of its outcome.
type hostileCase struct {
	name   string
	attack string
	// limits are the API's rate limits; nil means none, so that the
	// attack reaches what it attacks.
	limits *RateLimits
	run    func(t *testing.T, h *harness) hostileOutcome

	// wantStatus are the statuses every answer must have.
	wantStatus []int
	// maxHeapGrowth bounds the heap the attack leaves behind (after GC).
	maxHeapGrowth int64
	// maxBody bounds every answer's body.
	maxBody int
	// maxSeries bounds the series of the request metrics at the end.
	maxSeries int
	// check, if set, checks more.
	check func(t *testing.T, h *harness, o hostileOutcome)
}

// TestHostileREST is the REST edge's hostile-input suite: each case is an
// attack and the bounded outcome it must get (statuses, retained heap,
// metric series, answer size). It is not parallel so that its heap
// measurements see only its own work.
func TestHostileREST(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	randomToken := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	randomPath := func() string {
		var b strings.Builder
		for range 1 + rng.IntN(8) {
			b.WriteString("/" + randomToken(1+rng.IntN(250)))
		}
		return b.String()
	}
	get := func(path string) call { return call{method: "GET", path: path, token: readerToken} }
	cursor := func(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

	cases := []hostileCase{
		{
			name:   "random methods and paths",
			attack: "10,000 requests with random methods of up to 4,000 characters and random paths, no credentials",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				for i := range 10_000 {
					req := httptest.NewRequest("GET", "/", nil)
					req.Method = randomToken(1 + rng.IntN(4000))
					if i%4 == 0 {
						req.Method = http.MethodGet
					}
					req.URL.Path = randomPath()
					if i%10 == 0 {
						req.URL.Path = "/v1/tenants" // a known route: 405 for the random methods
					}
					rec := httptest.NewRecorder()
					h.api.ServeHTTP(rec, req)
					o.add(result{status: rec.Code, body: rec.Body.Bytes()})
				}
				return o
			},
			wantStatus: []int{401, 404, 405}, maxHeapGrowth: 4 << 20, maxBody: 2 << 10,
			// Counter (route, method, code): the warm-up's GET /healthz,
			// unmatched other 404 and 405, unmatched GET 404, GET
			// /v1/tenants GET 401; histogram (route, method): four.
			maxSeries: 5 + 4,
			check: func(t *testing.T, h *harness, _ hostileOutcome) {
				res := h.do(call{method: "GET", path: "/metrics"})
				if n := len(res.body); n > 64<<10 {
					t.Errorf("/metrics is %d bytes after the attack", n)
				}
			},
		},
		{
			name:   "random paths from 10,000 addresses, default limits",
			attack: "10,000 requests for random paths, each from another client address",
			limits: &RateLimits{PerCaller: DefaultPerCaller, PerAddress: DefaultPerAddress},
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				for i := range 10_000 {
					o.add(h.doFrom(fmt.Sprintf("10.%d.%d.%d:999", i>>16, (i>>8)&255, i&255), call{method: "GET", path: randomPath()}))
				}
				return o
			},
			// The warm-up's and unmatched GET 404, in both metrics. A
			// budget per address: 10,000 of them cost about 2 MiB.
			wantStatus: []int{404}, maxHeapGrowth: 8 << 20, maxBody: 4 << 10, maxSeries: 4,
		},
		{
			name:   "oversize body",
			attack: "a 64 MiB tenant document",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				body := &countingReader{r: io.LimitReader(infiniteJSON{}, 64<<20)}
				req := httptest.NewRequest("POST", "/v1/tenants", body)
				req.Header.Set("Authorization", "Bearer "+adminToken)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.api.ServeHTTP(rec, req)
				o.add(result{status: rec.Code, body: rec.Body.Bytes()})
				if body.n > DefaultMaxBodyBytes+64<<10 {
					t.Errorf("the server read %d bytes of the body, want about %d", body.n, DefaultMaxBodyBytes)
				}
				return o
			},
			wantStatus: []int{413}, maxHeapGrowth: 2 << 20, maxBody: 1 << 10,
		},
		{
			name:   "oversize resync body",
			attack: "a 64 MiB resync request",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				body := &countingReader{r: io.LimitReader(infiniteJSON{}, 64<<20)}
				req := httptest.NewRequest("POST", "/v1/admin/resync", body)
				req.Header.Set("Authorization", "Bearer "+adminToken)
				rec := httptest.NewRecorder()
				h.api.ServeHTTP(rec, req)
				o.add(result{status: rec.Code, body: rec.Body.Bytes()})
				if body.n > MaxResyncBodyBytes+64<<10 {
					t.Errorf("the server read %d bytes of the body, want about %d", body.n, MaxResyncBodyBytes)
				}
				return o
			},
			wantStatus: []int{413}, maxHeapGrowth: 2 << 20, maxBody: 1 << 10,
		},
		{
			name:   "deeply nested JSON",
			attack: "a label value of 60,000 nested arrays, and a body of 60,000 nested objects",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				o.add(h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"id":"deep","hostnames":["d.example.com"],"labels":{"x":` + strings.Repeat("[", 60_000) + strings.Repeat("]", 60_000) + `}}`}))
				o.add(h.do(call{method: "POST", path: "/v1/admin/resync", token: adminToken,
					body: strings.Repeat(`{"a":`, 60_000) + "1" + strings.Repeat("}", 60_000)}))
				return o
			},
			// The tenant document is over 64 KiB: 413 before any parsing.
			wantStatus: []int{400, 413}, maxHeapGrowth: 2 << 20, maxBody: 2 << 10,
			check: func(t *testing.T, h *harness, o hostileOutcome) {
				res := h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"id":"deep","hostnames":["d.example.com"],"labels":{"x":` + strings.Repeat("[", 20_000) + strings.Repeat("]", 20_000) + `}}`})
				if p := res.problem(t); res.status != 400 || !strings.Contains(p.Errors[0].Reason, "deeper than") {
					t.Errorf("20,000 nested arrays: %d %s, want 400 naming the depth", res.status, res.body)
				}
			},
		},
		{
			name:   "duplicate keys",
			attack: "a tenant document with its id 3,000 times, and a label 3,000 times",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				o.add(h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"hostnames":["d.example.com"]` + strings.Repeat(`,"id":"dup"`, 3000) + `}`}))
				o.add(h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"id":"dup","hostnames":["d.example.com"],"labels":{` + strings.TrimPrefix(strings.Repeat(`,"a":"b"`, 3000), ",") + `}}`}))
				return o
			},
			wantStatus: []int{400}, maxHeapGrowth: 2 << 20, maxBody: 1 << 10,
		},
		{
			name:   "huge label map",
			attack: "a tenant document with 2,500 invalid labels (60 KiB)",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				var b strings.Builder
				b.WriteString(`{"id":"many","hostnames":["m.example.com"],"labels":{`)
				for i := range 2500 {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `"k%d x":"v"`, i)
				}
				b.WriteString(`}}`)
				o.add(h.do(call{method: "POST", path: "/v1/tenants", token: adminToken, body: b.String()}))
				return o
			},
			// 100 field errors and a count, not 2,501.
			wantStatus: []int{422}, maxHeapGrowth: 2 << 20, maxBody: 16 << 10,
			check: func(t *testing.T, h *harness, o hostileOutcome) {
				res := h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"id":"many","hostnames":["m.example.com"],"labels":{` + strings.TrimPrefix(strings.Repeat(`,"a b":"v"`, 1), ",") + `}}`})
				if res.status != 422 {
					t.Errorf("one bad label: %d", res.status)
				}
			},
		},
		{
			name:   "secret-looking values",
			attack: "a Vault token as a label value, an AWS access key id in secret_ref, a random string in a label",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				o.add(h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"id":"leaky","hostnames":["l.example.com"],"labels":{"vault":"hvs.CAESIJlWh0E5SLlU2F2xkE0VUxjUU1FMHhJbnZ","blob":"Qm9Hc1x7TzR2pLk8Vw3Nf5Zy"},` +
						`"database":{"engine":"postgres","host":"db","port":5432,"name":"x","secret_ref":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:AKIAIOSFODNN7EXAMPLE"}}`}))
				return o
			},
			wantStatus: []int{422}, maxHeapGrowth: 1 << 20, maxBody: 2 << 10,
			check: func(t *testing.T, h *harness, o hostileOutcome) {
				res := h.do(call{method: "POST", path: "/v1/tenants", token: adminToken,
					body: `{"id":"leaky","hostnames":["l.example.com"],"labels":{"vault":"hvs.CAESIJlWh0E5SLlU2F2xkE0VUxjUU1FMHhJbnZ","blob":"Qm9Hc1x7TzR2pLk8Vw3Nf5Zy"},` +
						`"database":{"engine":"postgres","host":"db","port":5432,"name":"x","secret_ref":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:AKIAIOSFODNN7EXAMPLE"}}`})
				var fields []string
				for _, f := range res.problem(t).Errors {
					fields = append(fields, f.Field)
				}
				if want := []string{"database.secret_ref", "labels.blob", "labels.vault"}; !slices.Equal(fields, want) {
					t.Errorf("fields %q, want %q", fields, want)
				}
				for _, secret := range []string{"hvs.CAES", "AKIAIOSFODNN7EXAMPLE", "Qm9Hc1x7TzR2pLk8Vw3Nf5Zy"} {
					if strings.Contains(string(res.body), secret) {
						t.Errorf("the answer repeats %s", secret)
					}
				}
			},
		},
		{
			name:   "flood beyond the caller's rate limit",
			attack: "1,000 authenticated reads at once, default limits, clock stopped",
			limits: &RateLimits{PerCaller: DefaultPerCaller, PerAddress: DefaultPerAddress},
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				for range 1000 {
					o.add(h.doFrom("192.0.2.1:1", get("/v1/tenants")))
				}
				return o
			},
			wantStatus: []int{200, 429}, maxHeapGrowth: 2 << 20, maxBody: 2 << 10,
			check: func(t *testing.T, h *harness, o hostileOutcome) {
				if o.statuses[200] != 2*DefaultPerCaller {
					t.Errorf("%d answered, want the burst (%d)", o.statuses[200], 2*DefaultPerCaller)
				}
				res := h.doFrom("192.0.2.1:1", get("/v1/tenants"))
				if res.status != 429 || res.header.Get("Retry-After") != "1" {
					t.Errorf("after the flood: %d with Retry-After %q, want 429 with 1", res.status, res.header.Get("Retry-After"))
				}
			},
		},
		{
			name:   "unauthenticated flood",
			attack: "1,000 requests with random bearer tokens from one address, default limits, clock stopped",
			limits: &RateLimits{PerCaller: DefaultPerCaller, PerAddress: DefaultPerAddress},
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				for range 1000 {
					o.add(h.doFrom("192.0.2.2:1", call{method: "GET", path: "/v1/tenants", token: randomToken(40)}))
				}
				return o
			},
			wantStatus: []int{401, 429}, maxHeapGrowth: 2 << 20, maxBody: 2 << 10,
			check: func(t *testing.T, h *harness, o hostileOutcome) {
				if o.statuses[401] != 2*DefaultPerAddress {
					t.Errorf("%d authentication attempts answered, want the address's burst (%d)", o.statuses[401], 2*DefaultPerAddress)
				}
			},
		},
		{
			name:   "readiness flood",
			attack: "1,000 /readyz calls from 1,000 addresses within a second (the clock stopped), default limits",
			limits: &RateLimits{PerCaller: DefaultPerCaller, PerAddress: DefaultPerAddress},
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				store := h.api.store.(*countingStore)
				calls := store.calls.Load()
				for i := range 1000 {
					o.add(h.doFrom(fmt.Sprintf("10.1.%d.%d:1", i>>8, i&255), call{method: "GET", path: "/readyz"}))
				}
				if n := store.calls.Load() - calls; n > 1 {
					t.Errorf("%d store pings, want at most 1 (the answer is reused for a second)", n)
				}
				return o
			},
			wantStatus: []int{200}, maxHeapGrowth: 2 << 20, maxBody: 1 << 10,
		},
		{
			name:   "forged pagination cursors",
			attack: "page tokens this API never returned, on list, history, export and resync",
			run: func(t *testing.T, h *harness) (o hostileOutcome) {
				h.mustDo(call{method: "POST", path: "/v1/tenants", token: adminToken, body: tenantJSON("alpha", "alpha.example.com")}, http.StatusCreated)
				for _, path := range []string{
					"/v1/tenants?page_token=not-base64!",
					"/v1/tenants?page_token=" + cursor("t:../../etc/passwd"),
					"/v1/tenants?page_token=" + cursor("t:"+strings.Repeat("a", 4000)),
					"/v1/tenants?page_token=" + cursor("x:alpha"),
					"/v1/tenants?page_size=99999999999999999999",
					"/v1/tenants?page_size=-1",
					"/v1/tenants/alpha/history?page_token=" + cursor("v:-5"),
					"/v1/tenants/alpha/history?page_token=" + cursor("v:1e9"),
					"/v1/admin/export?page_token=" + cursor("x:ALPHA"),
					"/v1/admin/export?page_token=" + cursor("t:alpha"),
				} {
					o.add(h.do(get(path)))
				}
				o.add(h.do(call{method: "POST", path: "/v1/admin/resync", token: adminToken, body: `{"all":true,"page_token":"` + cursor("x:../x") + `"}`}))
				return o
			},
			wantStatus: []int{400}, maxHeapGrowth: 1 << 20, maxBody: 2 << 10,
			check: func(t *testing.T, h *harness, o hostileOutcome) {
				// A well-formed cursor past the end only skips: harmless.
				res := h.mustDo(get("/v1/tenants?page_token="+cursor("t:zzzz")), http.StatusOK)
				if !strings.Contains(string(res.body), `"tenants":[]`) {
					t.Errorf("a cursor past the end: %s", res.body)
				}
			},
		},
	}
	routePatterns := map[string]bool{"unmatched": true}
	for _, rt := range routes {
		routePatterns[rt.Method+" "+rt.Pattern] = true
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			limits := tc.limits
			if limits == nil {
				limits = &RateLimits{}
			}
			h, _, _ := limitedHarness(t, *limits)
			h.t = t
			h.do(call{method: "GET", path: "/healthz"}) // warm up
			before := heapInUse()
			o := tc.run(t, h)
			growth := heapInUse() - before
			t.Logf("attack: %s → %v, largest answer %d bytes, heap %+d KiB", tc.attack, o.statuses, o.maxBody, growth>>10)
			for status, n := range o.statuses {
				if !slices.Contains(tc.wantStatus, status) {
					t.Errorf("%d answers with status %d, want only %v", n, status, tc.wantStatus)
				}
			}
			if o.maxBody > tc.maxBody {
				t.Errorf("largest answer %d bytes, want at most %d", o.maxBody, tc.maxBody)
			}
			if growth > tc.maxHeapGrowth {
				t.Errorf("heap grew %d KiB, want at most %d KiB", growth>>10, tc.maxHeapGrowth>>10)
			}
			series := 0
			for _, s := range requestSeries(t, h) {
				series++
				if !routePatterns[s["route"]] || !knownMethods[s["method"]] && s["method"] != "other" || statusLabel(atoiOr(s["code"])) != s["code"] {
					t.Errorf("series %v has a label outside the fixed sets", s)
				}
			}
			if tc.maxSeries > 0 && series > tc.maxSeries {
				t.Errorf("%d request metric series, want at most %d", series, tc.maxSeries)
			}
			if tc.check != nil {
				tc.check(t, h, o)
			}
		})
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// requestSeries returns the labels of every series of the request metrics.
func requestSeries(t testing.TB, h *harness) []map[string]string {
	t.Helper()
	mfs, err := h.api.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, mf := range mfs {
		if n := mf.GetName(); n != "tcs_catalog_http_requests_total" && n != "tcs_catalog_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if _, ok := labels["code"]; !ok {
				labels["code"] = "200" // the histogram has no code
			}
			out = append(out, labels)
		}
	}
	return out
}

func atoiOr(s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return -1
	}
	return n
}

// infiniteJSON reads as a JSON object that never ends.
type infiniteJSON struct{}

func (infiniteJSON) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	if len(p) > 0 {
		p[0] = '{'
	}
	return len(p), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestSlowClients: over a real listener, a client that trickles its
// headers is cut off by the read-header timeout, and one that sends more
// headers than allowed is refused with 431, without the server holding
// goroutines for them afterwards.
func TestSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trickles requests past the server's read timeouts (about 6 s)")
	}
	t.Parallel()
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Serve(ctx, ln, h.api) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := ln.Addr().String()

	// 20 slowloris connections: a header byte every 100 ms, forever.
	const slow = 20
	start := time.Now()
	closed := make(chan time.Duration, slow)
	for range slow {
		go func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				closed <- -1
				return
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
				closed <- time.Since(start)
				return
			}
			for {
				time.Sleep(100 * time.Millisecond)
				if _, err := c.Write([]byte("a")); err != nil {
					break
				}
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeoutErr(err) {
					break // the server answered (408) or closed
				}
			}
			closed <- time.Since(start)
		}()
	}
	for range slow {
		d := <-closed
		if d < 0 {
			t.Fatal("dial failed")
		}
		// Serve's ReadHeaderTimeout is 5 s; a connection still open at
		// 10 s would mean it is not enforced.
		if d > 10*time.Second {
			t.Errorf("a slowloris connection lasted %v", d)
		}
	}

	// Oversize headers: 431 as soon as they are read.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 64<<10))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of headers: %d, want 431", res.StatusCode)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
