package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// running is a tcs-sidecar started by runWithReady.
type running struct {
	bound
	pid    int // the process of startSidecarProcess; 0: in this one
	stop   context.CancelFunc
	done   chan error
	stderr *lockedBuffer
	http   *http.Client
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSidecar runs tcs-sidecar on sys's regions with free loopback ports
// (and args), and stops it when the test ends.
func startSidecar(tb testing.TB, sys *system, args ...string) *running {
	tb.Helper()
	env := map[string]string{"TCS_REGIONS": sys.regions, "TCS_LOOKUP_TOKEN": sysLookupToken}
	args = append([]string{"--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--drain-delay", "0s"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	s := &running{stop: cancel, done: make(chan error, 1), stderr: &lockedBuffer{}, http: &http.Client{Timeout: 10 * time.Second}}
	ready := make(chan bound, 1)
	go func() {
		s.done <- runWithReady(ctx, args, func(k string) string { return env[k] }, io.Discard, s.stderr, ready)
	}()
	select {
	case s.bound = <-ready:
	case err := <-s.done:
		cancel()
		tb.Fatalf("tcs-sidecar did not start: %v\n%s", err, s.stderr)
	}
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				tb.Errorf("tcs-sidecar: %v", err)
			}
		case <-time.After(20 * time.Second):
			tb.Errorf("tcs-sidecar did not stop\n%s", s.stderr)
		}
	})
	return s
}

func (s *running) url(path string) string { return "http://" + s.HTTP + path }

func (s *running) grpcConn(tb testing.TB) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// waitReady waits for /readyz to answer 200.
func (s *running) waitReady(tb testing.TB) {
	tb.Helper()
	testwait.For(tb, "tcs-sidecar /readyz 200", func() bool {
		code, _, _ := httpGet(tb, s.http, s.url("/readyz"))
		return code == 200
	})
}

// waitVersion waits until the sidecar answers hostname with version v
// (ETag), and returns that answer.
func (s *running) waitVersion(tb testing.TB, hostname string, v int64) (http.Header, []byte) {
	tb.Helper()
	var hdr http.Header
	var body []byte
	want := fmt.Sprintf(`"%d"`, v)
	testwait.For(tb, fmt.Sprintf("the sidecar to answer %s at version %d", hostname, v), func() bool {
		var code int
		code, hdr, body = httpGet(tb, s.http, s.url("/v1/lookup/"+hostname))
		return code == 200 && hdr.Get("ETag") == want
	})
	return hdr, body
}

const hooliDoc = `{"id":"hooli","hostnames":["hooli.example.com","Bücher.example.com"],"region":"us-east-1",
	"products":{"jira":{"state":"ACTIVE","users":25,"edition":"premium"},"confluence":{"state":"DEACTIVATED","users":0}},
	"database":{"engine":"postgres","host":"db-7.internal","port":5432,"name":"hooli","secret_ref":"arn:aws:secretsmanager:us-east-1:123456789012:secret:hooli"},
	"labels":{"tier":"gold","note":"a<b&c"}}`

// TestOneJSON: a tenant read through the REST API, the sidecar's HTTP
// lookup, the sidecar's gRPC Lookup and a region's gRPC Lookup (the last
// two through tcsv1.TenantJSON) is the same document, byte for byte.
func TestOneJSON(t *testing.T) {
	t.Parallel()
	sys := startSystem(t)
	sc := startSidecar(t, sys)
	created := sys.create(t, hooliDoc)
	sc.waitReady(t)
	oneJSON(t, sys, sc, created.Version)

	// A tenant being moved (tcsctl move) carries its migration, read-only
	// flag included, the same way everywhere.
	moving, err := sys.api.Patch(t.Context(), "hooli", created.Version, httpclient.MergePatch{"migration": map[string]any{
		"step": "PREPARED", "from": created.Database, "to": map[string]any{"engine": "postgres", "host": "db-8.internal", "port": 5432, "name": "hooli"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !moving.ReadOnly() {
		t.Fatalf("PREPARED move stored as %+v, want read-only", moving.Migration)
	}
	oneJSON(t, sys, sc, moving.Version)
}

// oneJSON checks that tenant hooli at version is the same JSON, byte for
// byte, through REST, the sidecar (HTTP and gRPC) and a region.
func oneJSON(t *testing.T, sys *system, sc *running, version int64) {
	t.Helper()
	rest, etag := sys.restGet(t, "hooli")
	hdr, side := sc.waitVersion(t, "hooli.example.com", version)
	if etag != hdr.Get("ETag") {
		t.Errorf("ETag: REST %s, sidecar %s", etag, hdr.Get("ETag"))
	}
	if !bytes.Equal(rest, side) {
		t.Errorf("the sidecar's JSON is not the REST API's:\nREST    %s\nsidecar %s", rest, side)
	}
	res, err := tcsv1.NewTenantContextServiceClient(sc.grpcConn(t)).Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: "hooli.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	viaSidecarGRPC, err := tcsv1.TenantJSON(res.GetTenant())
	if err != nil {
		t.Fatal(err)
	}
	viaRegion, err := tcsv1.TenantJSON(sys.waitRegionVersion(t, "eu-west-1", "hooli.example.com", version).GetTenant())
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][]byte{"REST GET": rest, "sidecar HTTP": side, "sidecar gRPC": viaSidecarGRPC, "region gRPC": viaRegion}
	var want tenant.Tenant
	if err := json.Unmarshal(rest, &want); err != nil {
		t.Fatal(err)
	}
	for name, doc := range docs {
		var got tenant.Tenant
		if err := json.Unmarshal(doc, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s differs from REST GET (-REST +%s):\n%s", name, name, d)
		}
		if !bytes.Equal(doc, rest) {
			t.Errorf("%s is not byte for byte the REST JSON:\n%s\n%s", name, doc, rest)
		}
	}
	// And back: the one JSON converts to the very gRPC Tenant.
	back, err := tcsv1.TenantFromJSON(side)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := tcsv1.TenantJSON(back); !bytes.Equal(again, rest) {
		t.Errorf("JSON → gRPC → JSON changed it:\n%s\n%s", again, rest)
	}
}

// TestEndToEnd: lookups by both hostnames (one given in Unicode), a change
// reaching the sidecar through Watch, unknown and bad hostnames, a batch,
// read-your-writes, the Unix socket, metrics, and a clean stop that
// removes the socket.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	sys := startSystem(t)
	sock := filepath.Join(t.TempDir(), "tcs.sock")
	sc := startSidecar(t, sys, "--unix-socket", sock)
	created := sys.create(t, hooliDoc)
	sc.waitReady(t)
	hdr, _ := sc.waitVersion(t, "hooli.example.com", created.Version)
	// us-east-1 unless a hedge or failover reached eu-west-1 first.
	if !slices.Contains(sysRegions, hdr.Get("TCS-Region")) || hdr.Get("Age") == "" || hdr.Get("TCS-Stale") != "" {
		t.Errorf("headers %v", hdr)
	}
	code, _, body := httpGet(t, sc.http, sc.url("/v1/lookup/B%C3%BCcher.example.com"))
	if code != 200 || !strings.Contains(string(body), `"id":"hooli"`) {
		t.Errorf("the Unicode hostname: %d %s", code, body)
	}

	// A change reaches the sidecar's cache (Watch), not only past the TTL.
	var p map[string]any
	json.Unmarshal([]byte(`{"labels":{"tier":"platinum"}}`), &p)
	updated, err := sys.api.Patch(testwait.Context(t), "hooli", created.Version, p)
	if err != nil {
		t.Fatal(err)
	}
	_, body = sc.waitVersion(t, "hooli.example.com", updated.Version)
	if !strings.Contains(string(body), `"tier":"platinum"`) {
		t.Errorf("after the change: %s", body)
	}
	// Read-your-writes.
	code, hdr, _ = httpGet(t, sc.http, sc.url(fmt.Sprintf("/v1/lookup/hooli.example.com?min_version=%d&tenant_id=hooli", updated.Version)))
	if code != 200 || hdr.Get("ETag") != fmt.Sprintf(`"%d"`, updated.Version) {
		t.Errorf("min_version: %d %v", code, hdr)
	}

	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/v1/lookup/nobody.example.com", 404, `"type":"urn:tcs:problem:not_found"`},
		{"/v1/lookup/bad_host!.example.com", 400, `invalid hostname \"bad_host!.example.com\": label \"bad_host!\" contains '_'`},
		{"/v1/nothing", 404, "route_not_found"},
	} {
		code, hdr, body := httpGet(t, sc.http, sc.url(tc.path))
		if code != tc.status || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d %s %s, want %d with %s", tc.path, code, hdr.Get("Content-Type"), body, tc.status, tc.want)
		}
	}

	res, err := sc.http.Post(sc.url("/v1/lookup:batch"), "application/json", strings.NewReader(`{"hostnames":["hooli.example.com","nobody.example.com"]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	var batch struct {
		Results []struct {
			Hostname string          `json:"hostname"`
			Tenant   json.RawMessage `json:"tenant"`
			Error    *struct{ Status int }
		}
	}
	if err := json.Unmarshal(body, &batch); err != nil || res.StatusCode != 200 || len(batch.Results) != 2 ||
		!strings.Contains(string(batch.Results[0].Tenant), `"version":2`) || batch.Results[1].Error == nil || batch.Results[1].Error.Status != 404 {
		t.Errorf("batch: %d %s (%v)", res.StatusCode, body, err)
	}

	// The Unix socket serves the same.
	uc := unixClient(sock)
	code, _, ubody := httpGet(t, uc, "http://sidecar/v1/lookup/hooli.example.com")
	_, tcpBody := sc.waitVersion(t, "hooli.example.com", updated.Version)
	if code != 200 || !bytes.Equal(ubody, tcpBody) {
		t.Errorf("over the Unix socket: %d %s", code, ubody)
	}
	if code, _, _ := httpGet(t, uc, "http://sidecar/readyz"); code != 200 {
		t.Errorf("/readyz over the Unix socket: %d", code)
	}

	_, _, metrics := httpGet(t, sc.http, sc.url("/metrics"))
	for _, want := range []string{
		`tcs_sidecar_requests_total{api="http",component="sidecar",op="lookup",outcome="ok"}`,
		`tcs_sidecar_requests_total{api="http",component="sidecar",op="lookup",outcome="not_found"}`,
		`tcs_sidecar_requests_total{api="http",component="sidecar",op="lookup",outcome="invalid"} 1`,
		`tcs_sidecar_requests_total{api="http",component="sidecar",op="batch",outcome="ok"} 1`,
		`tcs_sidecar_ready{component="sidecar"} 1`,
		`tcs_sidecar_watching{component="sidecar"} 1`,
		`tcs_client_cache_hits_total{component="sidecar"}`,
		`tcs_client_watch_up{component="sidecar",region=`,
		`tcs_build_info{`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// --probe asks the running sidecar, over TCP and over the socket.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--probe", "/readyz", "--http-addr", sc.HTTP}, func(string) string { return "" }, &out, io.Discard); err != nil || out.String() != "ok\n" {
		t.Errorf("--probe /readyz: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"--probe", "/readyz", "--http-addr", "none", "--unix-socket", sock}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Errorf("--probe /readyz over the socket: %v", err)
	}

	sc.stop()
	if err := <-sc.done; err != nil {
		t.Fatalf("stop: %v", err)
	}
	sc.done <- nil // for the cleanup
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is left after a clean stop: %v", err)
	}
}

// TestDrain: on SIGTERM (ctx ending) the sidecar reports unready at once,
// on /readyz and gRPC health, keeps answering lookups for --drain-delay,
// then stops.
func TestDrain(t *testing.T) {
	t.Parallel()
	sys := startSystem(t)
	sc := startSidecar(t, sys, "--drain-delay", "3s")
	created := sys.create(t, hooliDoc)
	sc.waitReady(t)
	sc.waitVersion(t, "hooli.example.com", created.Version)
	health := healthpb.NewHealthClient(sc.grpcConn(t))
	testwait.For(t, "gRPC health SERVING", func() bool {
		res, err := health.Check(testwait.Context(t), &healthpb.HealthCheckRequest{})
		return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	start := time.Now()
	sc.stop()
	testwait.For(t, "/readyz 503 while draining", func() bool {
		code, _, _ := httpGet(t, sc.http, sc.url("/readyz"))
		return code == 503
	})
	// Drain sets health at once, before /readyz can fail.
	if res, err := health.Check(testwait.Context(t), &healthpb.HealthCheckRequest{}); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while draining: %v %v", res, err)
	}
	if code, _, _ := httpGet(t, sc.http, sc.url("/v1/lookup/hooli.example.com")); code != 200 {
		t.Errorf("a lookup while draining: %d", code)
	}
	if err := <-sc.done; err != nil {
		t.Fatalf("stop: %v", err)
	}
	sc.done <- nil
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("stopped %v after the signal, before --drain-delay 3s", d)
	}
	if _, err := http.Get(sc.url("/readyz")); err == nil {
		t.Error("still listening after the drain")
	}
	err := run(context.Background(), []string{"--probe", "/readyz", "--http-addr", sc.HTTP}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--probe /readyz") {
		t.Errorf("--probe of a stopped sidecar: %v", err)
	}
}

// TestNotReadyWithoutRegions: with no region reachable the sidecar starts,
// is not ready, and answers lookups 503.
func TestNotReadyWithoutRegions(t *testing.T) {
	t.Parallel()
	sys := &system{regions: "us-east-1=127.0.0.1:1"}
	sc := startSidecar(t, sys, "--lookup-timeout", "200ms")
	code, _, body := httpGet(t, sc.http, sc.url("/readyz"))
	if code != 503 || !strings.Contains(string(body), "not up yet") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	err := run(context.Background(), []string{"--probe", "/readyz", "--http-addr", sc.HTTP}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: the tcs client's invalidation stream is not up yet") {
		t.Errorf("--probe of an unready sidecar: %v", err)
	}
	code, hdr, body := httpGet(t, sc.http, sc.url("/v1/lookup/acme.example.com"))
	if code != 503 || hdr.Get("Retry-After") != "1" || !strings.Contains(string(body), "urn:tcs:problem:unavailable") {
		t.Errorf("lookup with no region: %d %v %s", code, hdr, body)
	}
}

// TestBusyPoll: with --busy-poll the HTTP API answers as without, over TCP
// and the Unix socket, and its connections' reads catch back-to-back
// requests spinning (tcs_sidecar_busy_poll_reads_total).
func TestBusyPoll(t *testing.T) {
	t.Parallel()
	sys := startSystem(t)
	sock := filepath.Join(t.TempDir(), "tcs.sock")
	sc := startSidecar(t, sys, "--busy-poll", "1ms", "--unix-socket", sock)
	created := sys.create(t, hooliDoc)
	sc.waitReady(t)
	sc.waitVersion(t, "hooli.example.com", created.Version)
	want := fmt.Sprintf(`"%d"`, created.Version)
	for _, c := range []struct {
		name string
		http *http.Client
		url  string
	}{
		{"tcp", sc.http, sc.url("/v1/lookup/hooli.example.com")},
		{"unix", unixClient(sock), "http://sidecar/v1/lookup/hooli.example.com"},
	} {
		for i := range 201 {
			code, hdr, body := httpGet(t, c.http, c.url)
			if code != 200 || hdr.Get("ETag") != want || !strings.Contains(string(body), `"id":"hooli"`) {
				t.Fatalf("%s lookup %d: %d %v %s", c.name, i, code, hdr, body)
			}
			if i == 0 {
				// A connection spins once no other has read for four
				// spin times.
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	reads := busyPollReads(t, sc)
	// 400 lookups back to back on two kept-alive connections: the reads
	// of the next request are caught spinning (the gap between requests is
	// well under 1 ms); some park (the first of each connection, the
	// probes and this scrape's).
	// (A loaded machine can delay a request past the spin time: a quarter
	// caught is enough to show the spinning.)
	if reads[0] < 100 {
		t.Errorf("tcs_sidecar_busy_poll_reads_total: caught, missed, parked %v; want 100 or more of 400 caught", reads)
	}
}
