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
	"github.com/valyala/fasthttp"

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
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	s.ServeFastHTTP(&ctx)
	a := answer{Status: ctx.Response.StatusCode(), Header: http.Header{}, Body: string(ctx.Response.Body())}
	for k, v := range ctx.Response.Header.All() {
		if k := string(k); k != "Content-Length" && k != "Date" {
			a.Header.Add(k, string(v))
		}
	}
	return a
}

// TestFastHTTPAnswersAsServeHTTP: ServeFastHTTP (what cmd/tcs-sidecar
// serves) answers every route and outcome as ServeHTTP does (which the
// other tests check), status, headers and body.
func TestFastHTTPAnswersAsServeHTTP(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	f.meta.Stale = true
	f.errs["gone.example.com"] = client.ErrNotFound
	f.errMeta = client.Meta{Cached: true, Stale: true, Region: "us-east-1", Age: 42e9}
	f.errs["bad..host"] = fmt.Errorf("%w %q: %s", client.ErrInvalidHostname, "bad..host", "empty label")
	f.errs["down.example.com"] = fmt.Errorf("%w: connection refused", client.ErrUnavailable)
	f.errs["boom.example.com"] = errors.New("secret internal detail")
	f.errs["gone-away.example.com"] = context.Canceled
	fb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fallback " + r.URL.Path)) })
	s := sidecar.New(sidecar.Config{Client: f, Fallback: fb})
	for _, tc := range []struct {
		name, method, target, body string
		hdr                        []string
	}{
		{"hit", "GET", "/v1/lookup/acme.example.com", "", nil},
		{"hit HEAD", "HEAD", "/v1/lookup/acme.example.com", "", nil},
		{"percent-encoded", "GET", "/v1/lookup/acme%2Eexample.com", "", nil},
		{"dot segments", "GET", "/v1/lookup/x/../acme.example.com", "", nil},
		{"stale not found", "GET", "/v1/lookup/gone.example.com", "", nil},
		{"not found", "GET", "/v1/lookup/nobody.example.com", "", nil},
		{"bad hostname", "GET", "/v1/lookup/bad..host", "", nil},
		{"empty hostname", "GET", "/v1/lookup/", "", nil},
		{"unavailable", "GET", "/v1/lookup/down.example.com", "", nil},
		{"internal", "GET", "/v1/lookup/boom.example.com", "", nil},
		{"canceled", "GET", "/v1/lookup/gone-away.example.com", "", nil},
		{"min_version", "GET", "/v1/lookup/acme.example.com?min_version=7&tenant_id=acme", "", nil},
		{"bad min_version", "GET", "/v1/lookup/acme.example.com?min_version=x", "", nil},
		{"unknown parameter", "GET", "/v1/lookup/acme.example.com?verbose=1", "", nil},
		{"lookup method", "DELETE", "/v1/lookup/acme.example.com", "", nil},
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

// TestFastHTTPHitAllocs: a hit on ServeFastHTTP allocates only its URL and
// strings (net/http's server allocates some 10 objects a request).
func TestFastHTTPHitAllocs(t *testing.T) {
	f := newFake()
	f.tenants["acme.example.com"] = acme()
	s := sidecar.New(sidecar.Config{Client: f})
	var req fasthttp.Request
	req.SetRequestURI("/v1/lookup/acme.example.com")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	allocs := testing.AllocsPerRun(100, func() {
		ctx.Response.Reset()
		s.ServeFastHTTP(&ctx)
	})
	if ctx.Response.StatusCode() != 200 || allocs > 4 {
		t.Errorf("a hit: status %d, %.0f allocations, want 200 and at most 4", ctx.Response.StatusCode(), allocs)
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
