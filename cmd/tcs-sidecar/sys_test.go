package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/httpserve"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// The in-process system the end-to-end tests run tcs-sidecar against: the
// catalog's REST API over the embedded source of truth, the publisher, the
// embedded stream and, per region, an applier, a replica and a lookup
// server whose lookups need a token — the parts cmd/tcs-dev wires (its run
// cannot be called from here: it is another main package).

const (
	sysAdminToken  = "sys-admin-token-0123456789abcdef0123"
	sysReaderToken = "sys-reader-token-0123456789abcdef012"
	sysLookupToken = "sys-lookup-token-0123456789abcdef012"
)

var sysRegions = []string{"us-east-1", "eu-west-1"}

type system struct {
	catalog string // base URL
	api     *httpclient.Client
	regions string // TCS_REGIONS
	lookups map[string]tcsv1.TenantContextServiceClient
}

func startSystem(tb testing.TB) *system {
	tb.Helper()
	dir := tb.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "catalog.db"), bolt.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	stream, err := boltlog.Open(filepath.Join(dir, "stream.db"), boltlog.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	creds, err := auth.Parse(strings.NewReader(strings.Join([]string{
		auth.Line(auth.Admin, sysAdminToken, "sre"), auth.Line(auth.Reader, sysReaderToken, "reader"), auth.Line(auth.Lookup, sysLookupToken, "sidecar"),
	}, "\n")), "test credentials")
	if err != nil {
		tb.Fatal(err)
	}
	authn := auth.Static(creds)
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	s := &system{lookups: map[string]tcsv1.TenantContextServiceClient{}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.catalog = "http://" + ln.Addr().String()
	if s.api, err = httpclient.New(s.catalog, httpclient.WithToken(sysAdminToken)); err != nil {
		tb.Fatal(err)
	}
	g.Go(func() error { return httpserve.Serve(gctx, ln, httpapi.New(httpapi.Config{Store: store, Auth: authn})) })
	pub := streamer.NewPublisher(streamer.PublisherConfig{Outbox: store, Stream: stream})
	g.Go(func() error { return pub.Run(gctx) })

	var conns []*grpc.ClientConn
	var replicas []io.Closer
	var addrs []string
	for _, name := range sysRegions {
		rep, err := boltreplica.Open(filepath.Join(dir, "replica-"+name+".db"), boltreplica.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		replicas = append(replicas, rep)
		hub := fanout.New(fanout.Options{})
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: name, Stream: stream, Replica: rep, Broadcaster: hub})
		g.Go(func() error { return applier.Run(gctx) })
		srv := lookup.New(lookup.Config{Region: name, Replica: rep, Feed: hub})
		rln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		// Serve runs the server with health, as cmd/tcs does.
		g.Go(func() error { return srv.Serve(gctx, rln, lookup.ServeOptions{Auth: authn}) })
		addrs = append(addrs, name+"="+rln.Addr().String())
		conn, err := grpc.NewClient(rln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, conn)
		s.lookups[name] = tcsv1.NewTenantContextServiceClient(conn)
	}
	s.regions = strings.Join(addrs, ",")
	tb.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		cancel()
		if err := g.Wait(); err != nil {
			tb.Errorf("system: %v", err)
		}
		for _, r := range replicas {
			r.Close()
		}
		stream.Close()
		store.Close()
	})
	return s
}

// create creates a tenant through the REST API.
func (s *system) create(tb testing.TB, doc string) *tenant.Tenant {
	tb.Helper()
	t, err := s.api.Create(context.Background(), json.RawMessage(doc))
	if err != nil {
		tb.Fatalf("create %s: %v", doc, err)
	}
	return t
}

// restGet returns the REST API's body and ETag for tenant id.
func (s *system) restGet(tb testing.TB, id string) ([]byte, string) {
	tb.Helper()
	req, _ := http.NewRequest("GET", s.catalog+"/v1/tenants/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+sysReaderToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		tb.Fatalf("GET /v1/tenants/%s: %d %s %v", id, res.StatusCode, body, err)
	}
	return body, res.Header.Get("ETag")
}

// waitRegionVersion waits until region answers hostname with version v (its
// applier may be behind), and returns that answer.
func (s *system) waitRegionVersion(tb testing.TB, region, hostname string, v int64) *tcsv1.LookupResponse {
	tb.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+sysLookupToken)
	var res *tcsv1.LookupResponse
	testwait.For(tb, fmt.Sprintf("%s to answer %s at version %d", region, hostname, v), func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := s.lookups[region].Lookup(cctx, &tcsv1.LookupRequest{Hostname: hostname, MinVersion: v})
		res = r
		return err == nil && r.GetTenant().GetVersion() == v
	})
	return res
}

// httpGet GETs url with c and returns status, headers and body.
func httpGet(tb testing.TB, c *http.Client, url string) (int, http.Header, []byte) {
	tb.Helper()
	res, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, res.Header, body
}

// unixClient is an HTTP client that dials the Unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}
