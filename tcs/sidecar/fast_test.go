package sidecar_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/sidecar"
)

// answer is an HTTP answer as a test compares it.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

// doFast serves one request on s.ServeFastHTTP and returns its answer,
// without the headers fasthttp's server adds on writing it.
func doFast(s *sidecar.Server, method, target, body string, hdr ...string) answer {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(target)
	req.Header.SetHost("sidecar")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if body != "" {
		req.SetBodyString(body)
	}
	return serveFastRequest(s, &req)
}

// serveFastRequest serves req on s.ServeFastHTTP and returns its answer.
func serveFastRequest(s *sidecar.Server, req *fasthttp.Request) answer {
	var ctx fasthttp.RequestCtx
	ctx.Init(req, nil, quietLogger{})
	s.ServeFastHTTP(&ctx)
	a := answer{Status: ctx.Response.StatusCode(), Header: http.Header{}, Body: string(ctx.Response.Body())}
	for k, v := range ctx.Response.Header.All() {
		if k := string(k); k != "Content-Length" && k != "Date" {
			a.Header.Add(k, string(v))
		}
	}
	return a
}

// quietLogger drops what fasthttp logs (fasthttpadaptor's complaint about
// a target net/http cannot parse).
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// edgeServer is a sidecar with a fallback whose fake client answers every
// outcome: acme.example.com a stale hit, gone.example.com a stale not
// found, bad..host invalid, down.example.com unavailable,
// boom.example.com an internal error, gone-away.example.com cancelled.
func edgeServer() *sidecar.Server {
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	f.tenants["ACME.example.com"] = acme()
	f.meta.Stale = true
	f.errs["gone.example.com"] = client.ErrNotFound
	f.errMeta = client.Meta{Cached: true, Stale: true, Region: "us-east-1", Age: 42e9}
	f.errs["bad..host"] = fmt.Errorf("%w %q: %s", client.ErrInvalidHostname, "bad..host", "empty label")
	f.errs["down.example.com"] = fmt.Errorf("%w: connection refused", client.ErrUnavailable)
	f.errs["boom.example.com"] = errors.New("secret internal detail")
	f.errs["gone-away.example.com"] = context.Canceled
	fb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fallback " + r.URL.Path)) })
	return sidecar.New(sidecar.Config{Client: f, Fallback: fb})
}

// TestFastHTTPAnswersAsServeHTTP: ServeFastHTTP (what cmd/tcs-sidecar
// serves) answers every route and outcome as ServeHTTP does (which the
// other tests check), status, headers and body; so do the targets its
// unparsed fast path must leave to net/http's parse, and the plain ones it
// takes.
func TestFastHTTPAnswersAsServeHTTP(t *testing.T) {
	t.Parallel()
	s := edgeServer()
	for _, tc := range []struct {
		name, method, target, body string
		hdr                        []string
	}{
		{"hit", "GET", "/v1/lookup/acme.example.com", "", nil},
		{"hit HEAD", "HEAD", "/v1/lookup/acme.example.com", "", nil},
		{"percent-encoded", "GET", "/v1/lookup/acme%2Eexample.com", "", nil},
		{"percent-encoded slash", "GET", "/v1/lookup/acme%2Fexample.com", "", nil},
		{"percent-encoded prefix", "GET", "/v1/%6Cookup/acme.example.com", "", nil},
		{"percent-encoded non-ASCII", "GET", "/v1/lookup/b%C3%BCcher.example.com", "", nil},
		{"dot segments", "GET", "/v1/lookup/x/../acme.example.com", "", nil},
		{"dot segment", "GET", "/v1/lookup/./acme.example.com", "", nil},
		{"dot hostname", "GET", "/v1/lookup/.", "", nil},
		{"dot-dot hostname", "GET", "/v1/lookup/..", "", nil},
		{"dot segments in the prefix", "GET", "/v1/x/../lookup/acme.example.com", "", nil},
		{"double slash", "GET", "/v1/lookup//acme.example.com", "", nil},
		{"double slash in the prefix", "GET", "/v1//lookup/acme.example.com", "", nil},
		{"leading double slash", "GET", "//v1/lookup/acme.example.com", "", nil},
		{"absolute form", "GET", "http://sidecar/v1/lookup/acme.example.com", "", nil},
		{"empty query", "GET", "/v1/lookup/acme.example.com?", "", nil},
		{"fragment", "GET", "/v1/lookup/acme.example.com#top", "", nil},
		{"non-ASCII", "GET", "/v1/lookup/b\u00fccher.example.com", "", nil},
		{"not UTF-8", "GET", "/v1/lookup/b\xfccher.example.com", "", nil},
		{"backslash", "GET", "/v1/lookup/acme\\example.com", "", nil},
		{"trailing slash", "GET", "/v1/lookup/acme.example.com/", "", nil},
		{"upper-case", "GET", "/v1/lookup/ACME.example.com", "", nil},
		{"upper-case prefix", "GET", "/V1/LOOKUP/acme.example.com", "", nil},
		{"unreserved", "GET", "/v1/lookup/a_b~c-d.example.com", "", nil},
		{"sub-delims", "GET", "/v1/lookup/a!$&'()*+,;=:@b", "", nil},
		{"no slash after the prefix", "GET", "/v1/lookup", "", nil},
		{"stale not found", "GET", "/v1/lookup/gone.example.com", "", nil},
		{"not found", "GET", "/v1/lookup/nobody.example.com", "", nil},
		{"bad hostname", "GET", "/v1/lookup/bad..host", "", nil},
		{"empty hostname", "GET", "/v1/lookup/", "", nil},
		{"empty hostname HEAD", "HEAD", "/v1/lookup/", "", nil},
		{"unavailable", "GET", "/v1/lookup/down.example.com", "", nil},
		{"internal", "GET", "/v1/lookup/boom.example.com", "", nil},
		{"canceled", "GET", "/v1/lookup/gone-away.example.com", "", nil},
		{"min_version", "GET", "/v1/lookup/acme.example.com?min_version=7&tenant_id=acme", "", nil},
		{"bad min_version", "GET", "/v1/lookup/acme.example.com?min_version=x", "", nil},
		{"unknown parameter", "GET", "/v1/lookup/acme.example.com?verbose=1", "", nil},
		{"lookup method", "DELETE", "/v1/lookup/acme.example.com", "", nil},
		{"lookup method, lower-case", "get", "/v1/lookup/acme.example.com", "", nil},
		{"lookup method POST", "POST", "/v1/lookup/acme.example.com", "", nil},
		{"batch", "POST", "/v1/lookup:batch", `{"hostnames":["acme.example.com","nobody.example.com"]}`, []string{"Content-Type", "application/json"}},
		{"batch media", "POST", "/v1/lookup:batch", `{"hostnames":[]}`, []string{"Content-Type", "text/plain"}},
		{"batch method", "GET", "/v1/lookup:batch", "", nil},
		{"fallback", "GET", "/metrics", "", nil},
		{"no route", "GET", "/v1/tenants/acme", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(s, tc.method, tc.target, tc.body, tc.hdr...)
			want := answer{Status: w.Code, Header: w.Result().Header, Body: w.Body.String()}
			if got := doFast(s, tc.method, tc.target, tc.body, tc.hdr...); !cmp.Equal(want, got) {
				t.Errorf("ServeFastHTTP (-ServeHTTP +ServeFastHTTP):\n%s", cmp.Diff(want, got))
			}
		})
	}
}

// TestFastHTTPAnswersAsServeHTTPProperty: for any request line both
// servers read, built from the pieces of lookup targets and of what could
// go wrong in one (escapes, dot segments, slashes, queries, fragments,
// reserved and non-ASCII bytes), ServeFastHTTP answers as ServeHTTP does
// (but for a fragment on a route other than the lookup); a target
// net/http cannot parse (it answers 400 itself) is not answered 200.
func TestFastHTTPAnswersAsServeHTTPProperty(t *testing.T) {
	t.Parallel()
	s := edgeServer()
	prefixes := []string{
		"/v1/lookup/", "/v1/lookup/", "/v1/lookup/", "/v1/lookup/", "/v1/lookup/", "/v1/lookup/", "/v1/lookup/",
		"/v1/lookup", "/v1//lookup/", "/v1/./lookup/", "/v1/x/../lookup/", "/V1/lookup/", "/v1/%6Cookup/", "//v1/lookup/", "http://sidecar/v1/lookup/", "/v1/lookup:batch", "/metrics", "/",
	}
	// The pieces of a target after the prefix, by kind, each kind as
	// likely as the others.
	pieces := rapid.OneOf(
		rapid.SampledFrom([]string{"acme.example.com", "ACME.example.com", "gone.example.com", "bad..host", "down.example.com"}),
		rapid.SampledFrom([]string{"a", "Z", "0", "-", "_", "~"}),
		rapid.SampledFrom([]string{"%2E", "%2F", "%41", "%e9", "%zz", "%"}),
		rapid.SampledFrom([]string{".", "..", "/./", "/../"}),
		rapid.SampledFrom([]string{"/", "//", "\\"}),
		rapid.SampledFrom([]string{"?", "?min_version=7", "&tenant_id=acme", "=", "&"}),
		rapid.SampledFrom([]string{"#", "#top"}),
		rapid.SampledFrom([]string{":", "@", "!", "$", "'", "(", ")", "*", "+", ",", ";", "[", "]", "{", "|", "^", "`", "\"", "<", ">"}),
		rapid.SampledFrom([]string{"\u00e9", "\xff"}),
	)
	rapid.Check(t, func(rt *rapid.T) {
		method := rapid.SampledFrom([]string{"GET", "GET", "GET", "HEAD", "DELETE", "POST"}).Draw(rt, "method")
		target := rapid.SampledFrom(prefixes).Draw(rt, "prefix") + strings.Join(rapid.SliceOfN(pieces, 0, 4).Draw(rt, "rest"), "")
		if d := fastAgainstHTTP(s, method, target); d != "" {
			rt.Fatal(d)
		}
	})
}

// fastAgainstHTTP reads the request line "method target" as net/http and
// fasthttp do and says how ServeFastHTTP's answer differs from
// ServeHTTP's ("" when alike, or when the comparison does not apply: a
// request fasthttp cannot read never reaches ServeFastHTTP; a fragment on
// a route other than the lookup goes through fasthttpadaptor, which drops
// it where net/http keeps it in the path). A target net/http cannot parse
// (its server answers 400 itself) must be answered 400 malformed_request.
func fastAgainstHTTP(s *sidecar.Server, method, target string) string {
	raw := method + " " + target + " HTTP/1.1\r\nHost: sidecar\r\n\r\n"
	var freq fasthttp.Request
	if err := freq.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		return ""
	}
	got := serveFastRequest(s, &freq)
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		if got.Status != http.StatusBadRequest || got.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(got.Body, "malformed_request") {
			return fmt.Sprintf("%q: net/http refuses it (%v), ServeFastHTTP answered %d %s", target, err, got.Status, got.Body)
		}
		return ""
	}
	if strings.Contains(target, "#") && !strings.HasPrefix(r.URL.Path, "/v1/lookup/") {
		return ""
	}
	w := doRequest(s, r)
	if want := (answer{Status: w.Code, Header: w.Result().Header, Body: w.Body.String()}); !cmp.Equal(want, got) {
		return fmt.Sprintf("%s %q (-ServeHTTP +ServeFastHTTP):\n%s", method, target, cmp.Diff(want, got))
	}
	return ""
}

// TestFastHTTPRefusesBadTargets: a target net/http cannot parse (its
// server answers 400 without calling ServeHTTP) is answered 400 with a
// problem naming what was wrong, on the lookup and on any other route.
func TestFastHTTPRefusesBadTargets(t *testing.T) {
	t.Parallel()
	s := edgeServer()
	for _, target := range []string{"/v1/lookup/%zz", "/v1/lookup/acme%2", "/v1/lookup/a/../%zz#x", "/v1/lookup:batch%", "/metrics%zz"} {
		if _, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: s\r\n\r\n"))); err == nil {
			t.Fatalf("%q: net/http reads it; the test wants one it refuses", target)
		}
		// ServeFastHTTP, and Adapt of a wrapped ServeHTTP (what a traced
		// tcs-sidecar serves).
		var req fasthttp.Request
		req.SetRequestURI(target)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, nil, quietLogger{})
		s.Adapt(http.HandlerFunc(s.ServeHTTP))(&ctx)
		adapted := answer{Status: ctx.Response.StatusCode(), Header: http.Header{"Content-Type": {string(ctx.Response.Header.ContentType())}}, Body: string(ctx.Response.Body())}
		for name, got := range map[string]answer{"ServeFastHTTP": doFast(s, "GET", target, ""), "Adapt": adapted} {
			if got.Status != http.StatusBadRequest || got.Header.Get("Content-Type") != "application/problem+json" ||
				!strings.Contains(got.Body, `"urn:tcs:problem:malformed_request"`) || !strings.Contains(got.Body, "invalid URL escape") {
				t.Errorf("%s %q: %d %v %s, want 400 malformed_request naming the bad escape", name, target, got.Status, got.Header, got.Body)
			}
		}
	}
}

// TestFastHTTPHitAllocs: a hit on ServeFastHTTP allocates nothing, stale
// or not, GET or HEAD (net/http's server allocates some 10 objects a
// request).
func TestFastHTTPHitAllocs(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		stale        bool
	}{{"GET", "GET", false}, {"HEAD", "HEAD", false}, {"stale", "GET", true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.tenants["acme.example.com"] = acme()
			f.meta.Stale = tc.stale
			s := sidecar.New(sidecar.Config{Client: f, Registerer: prometheus.NewRegistry()})
			var req fasthttp.Request
			req.Header.SetMethod(tc.method)
			req.SetRequestURI("/v1/lookup/acme.example.com")
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, nil, nil)
			allocs := testing.AllocsPerRun(100, func() {
				ctx.Response.Reset()
				s.ServeFastHTTP(&ctx)
			})
			if ctx.Response.StatusCode() != 200 || allocs != 0 {
				t.Errorf("a hit: status %d, %.0f allocations, want 200 and none", ctx.Response.StatusCode(), allocs)
			}
			if got := string(ctx.Response.Header.Peek("TCS-Stale")); got != map[bool]string{true: "true"}[tc.stale] {
				t.Errorf("TCS-Stale: %q with the client's answer stale %v", got, tc.stale)
			}
		})
	}
}

// serving is s.Serve with ServeFastHTTP on a loopback listener.
type serving struct {
	addr string
	stop context.CancelFunc
	done chan struct{} // closed when Serve has returned err
	err  error
}

// serveFast runs s.Serve until the test ends or stop is called.
func serveFast(t *testing.T, s *sidecar.Server) *serving {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv := &serving{addr: ln.Addr().String(), stop: cancel, done: make(chan struct{})}
	go func() {
		sv.err = s.Serve(ctx, s.ServeFastHTTP, ln)
		close(sv.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-sv.done
	})
	return sv
}

// rawExchange writes req on a new connection to addr and reads one answer.
func rawExchange(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

// TestServeRefusesUnreadableRequests: a request fasthttp cannot read gets
// a problem naming what was wrong, not fasthttp's plain text.
func TestServeRefusesUnreadableRequests(t *testing.T) {
	t.Parallel()
	s := sidecar.New(sidecar.Config{Client: newFake()})
	addr := serveFast(t, s).addr
	huge := `{"hostnames":["` + strings.Repeat("a", sidecar.MaxBatchBody) + `"]}`
	for _, tc := range []struct {
		name, req string
		status    int
		typ       string
	}{
		{"body too large", "POST /v1/lookup:batch HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(huge)) + "\r\n\r\n" + huge, 413, "request_too_large"},
		{"headers too large", "GET /v1/lookup/a.example.com HTTP/1.1\r\nHost: s\r\nX-Big: " + strings.Repeat("b", sidecar.MaxHeaderBytes) + "\r\n\r\n", 431, "request_header_too_large"},
		{"malformed", "GET /v1/lookup/a.example.com HTTP/1.1\r\nHost: s\r\nContent-Length: x\r\n\r\n", 400, "malformed_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := rawExchange(t, addr, tc.req)
			if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, `"urn:tcs:problem:`+tc.typ+`"`) {
				t.Errorf("%s %s\n%s, want %d %s", res.Status, res.Header, body, tc.status, tc.typ)
			}
		})
	}
}

// TestServeShutsDownGracefully: Serve answers a lookup (GET and HEAD) on
// a kept-alive connection; when its context ends it stops accepting, finishes the lookup
// in flight (not cancelled) and returns nil.
func TestServeShutsDownGracefully(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: f})
	sv := serveFast(t, s)
	url := "http://" + sv.addr + "/v1/lookup/acme.example.com"
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("ETag") != `"7"` || res.Header.Get("TCS-Region") != "eu-west-1" || res.Header.Get("Server") != "" {
		t.Fatalf("GET: %s %v %s", res.Status, res.Header, body)
	}
	head, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	headBody, _ := io.ReadAll(head.Body)
	head.Body.Close()
	if head.StatusCode != 200 || head.ContentLength != int64(len(body)) || len(headBody) != 0 || head.Header.Get("ETag") != `"7"` {
		t.Errorf("HEAD: %s, Content-Length %d (GET's body: %d bytes), %d bytes of body, %v", head.Status, head.ContentLength, len(body), len(headBody), head.Header)
	}

	f.block, f.ctxErr = make(chan struct{}), make(chan error, 2)
	inFlight := make(chan error, 1)
	go func() {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != 200 {
				err = fmt.Errorf("status %s", res.Status)
			}
		}
		inFlight <- err
	}()
	<-f.ctxErr // the lookup has started
	sv.stop()
	select {
	case <-sv.done:
		t.Fatalf("Serve returned %v with a lookup in flight", sv.err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.block)
	if err := <-f.ctxErr; err != nil {
		t.Errorf("the lookup in flight at shutdown was cancelled: %v", err)
	}
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight at shutdown: %v", err)
	}
	if <-sv.done; sv.err != nil {
		t.Errorf("Serve after shutdown: %v, want nil", sv.err)
	}
	if _, err := net.Dial("tcp", sv.addr); err == nil {
		t.Error("the listener still accepts after shutdown")
	}
}
