package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/telemetry"
	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// The tokens of the tests' systems: make run's, since they run on loopback.
const (
	adm  = auth.DevAdminToken
	rdr  = auth.DevReaderToken
	lkp  = auth.DevLookupToken
	scan = auth.DevScanToken
)

// bearer sends a token with every call, over plaintext (loopback).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

type system struct {
	ep      endpoints
	clients map[string]tcsv1.TenantContextServiceClient
	stdout  *testio.SyncBuffer
}

// start runs the whole system in-process on loopback ports and stops it at
// the end of the test.
func start(t testing.TB, extra ...string) *system {
	t.Helper()
	return startWith(t, nil, extra...)
}

// startWith is start with more environment (for the AWS backends).
func startWith(t testing.TB, moreEnv map[string]string, extra ...string) *system {
	t.Helper()
	return startTraced(t, moreEnv, nil, extra...)
}

// startTraced is startWith with tracing (nil: as the environment says).
func startTraced(t testing.TB, moreEnv map[string]string, tracing *telemetry.Tracing, extra ...string) *system {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"TCS_ADMIN_TOKEN": adm, "TCS_READER_TOKEN": rdr, "TCS_LOOKUP_TOKEN": lkp, "TCS_SCAN_TOKEN": scan}
	for k, v := range moreEnv {
		env[k] = v
	}
	args := append([]string{"--data", t.TempDir(), "--catalog-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--regions", "us-east-1=127.0.0.1:0,eu-west-1=127.0.0.1:0,ap-southeast-2=127.0.0.1:0"}, extra...)
	ready := make(chan endpoints, 1)
	done := make(chan error, 1)
	sys := &system{clients: map[string]tcsv1.TenantContextServiceClient{}, stdout: &testio.SyncBuffer{}}
	stderr := &testio.SyncBuffer{}
	go func() {
		done <- runTraced(ctx, args, func(k string) string { return env[k] }, sys.stdout, stderr, ready, tracing)
	}()
	select {
	case sys.ep = <-ready:
	case err := <-done:
		t.Fatalf("tcs-dev exited: %v\n%s", err, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("tcs-dev did not start")
	}
	t.Cleanup(func() {
		cancel()
		defer func() {
			if t.Failed() {
				log := stderr.String()
				if len(log) > 20000 {
					log = "…" + log[len(log)-20000:]
				}
				t.Logf("tcs-dev's log:\n%s", log)
			}
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tcs-dev: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("tcs-dev did not stop")
		}
	})
	for region, addr := range sys.ep.Regions {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer(lkp)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sys.clients[region] = tcsv1.NewTenantContextServiceClient(conn)
		// SERVING once the region's feed has delivered (the applier's first
		// heartbeat, at most one heartbeat interval away).
		testwait.Until(t, 15*time.Second, 10*time.Millisecond, region+" to report SERVING", func() (bool, string) {
			hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil {
				return false, err.Error()
			}
			return hc.Status == healthpb.HealthCheckResponse_SERVING, hc.Status.String()
		})
	}
	return sys
}

func (s *system) rest(t testing.TB, method, path, token, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.ep.Catalog+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// api is a client of the catalog's REST API with token.
func (s *system) api(t testing.TB, token string) *httpclient.Client {
	t.Helper()
	c, err := httpclient.New("http://"+s.ep.Catalog, httpclient.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls every region until check accepts its answer.
func (s *system) eventually(t *testing.T, hostname string, check func(*tcsv1.LookupResponse, error) error) {
	t.Helper()
	for region, c := range s.clients {
		testwait.Until(t, 15*time.Second, 10*time.Millisecond, region+"'s answer for "+hostname, func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, err := c.Lookup(ctx, &tcsv1.LookupRequest{Hostname: hostname})
			cancel()
			if cerr := check(res, err); cerr != nil {
				return false, cerr.Error()
			}
			return true, ""
		})
	}
}

func atVersion(id string, v int64) func(*tcsv1.LookupResponse, error) error {
	return func(res *tcsv1.LookupResponse, err error) error {
		if err != nil {
			return err
		}
		if res.GetTenant().GetId() != id || res.GetTenant().GetVersion() != v {
			return fmt.Errorf("got %s@%d, want %s@%d", res.GetTenant().GetId(), res.GetTenant().GetVersion(), id, v)
		}
		return nil
	}
}

func notFound(res *tcsv1.LookupResponse, err error) error {
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("got %v, %v; want NOT_FOUND", res.GetTenant(), err)
	}
	return nil
}

// TestEndToEnd: a write through the REST API reaches every region's lookup
// server; an update replaces it everywhere; a delete removes it everywhere.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	endToEnd(t, start(t, "--seed=false"))
}

func endToEnd(t *testing.T, s *system) {
	ctx := context.Background()
	api := s.api(t, adm)
	if _, err := api.Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com","www.acme.example.com"]}`)); err != nil {
		t.Fatalf("create: %v", err)
	}
	s.eventually(t, "acme.example.com", atVersion("acme", 1))
	s.eventually(t, "WWW.Acme.Example.COM.", atVersion("acme", 1))

	// Cache every region's answer first, so that the update must invalidate.
	if _, err := api.Patch(ctx, "acme", 1, httpclient.MergePatch{"hostnames": []string{"acme.example.com", "new.acme.example.com"}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	s.eventually(t, "acme.example.com", atVersion("acme", 2))
	s.eventually(t, "new.acme.example.com", atVersion("acme", 2))
	s.eventually(t, "www.acme.example.com", notFound)

	if err := api.Delete(ctx, "acme", 2); err != nil {
		t.Fatalf("delete: %v", err)
	}
	s.eventually(t, "acme.example.com", notFound)
	s.eventually(t, "new.acme.example.com", notFound)
}

// TestBadLookups: invalid input is INVALID_ARGUMENT, unknown is NOT_FOUND.
func TestBadLookups(t *testing.T) {
	t.Parallel()
	s := start(t)
	c := s.clients["eu-west-1"]
	for _, tc := range []struct {
		hostname string
		want     codes.Code
	}{
		{"", codes.InvalidArgument},
		{strings.Repeat("a", 64) + ".example.com", codes.InvalidArgument},
		{strings.Repeat("abcdefgh.", 40) + "com", codes.InvalidArgument},
		{"bad_host.example.com", codes.InvalidArgument},
		{"10.0.0.1", codes.InvalidArgument},
		{"nobody.example.com", codes.NotFound},
	} {
		_, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: tc.hostname})
		if status.Code(err) != tc.want {
			t.Errorf("Lookup(%.40q) = %v, want %v", tc.hostname, err, tc.want)
		}
	}
}

// TestSeedAndBanner: a new data directory gets sample tenants, served by
// every region, and the banner says where everything listens.
func TestSeedAndBanner(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.eventually(t, "acme.example.com", atVersion("acme", 1))
	out := s.stdout.String()
	for _, want := range []string{"http://" + s.ep.Catalog, s.ep.Regions["ap-southeast-2"], "Lookup"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	code, _, body := s.rest(t, "GET", "/metrics", rdr, "")
	if code != http.StatusOK || !strings.Contains(body, `tcs_lookup_lookups_total{`) || !strings.Contains(body, `region="eu-west-1"`) {
		t.Errorf("metrics: %d, lookup metrics by region missing", code)
	}
}
