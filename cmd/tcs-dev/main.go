// Command tcs-dev runs the whole system on one machine, in one process, on
// the embedded backends: the catalog's admin REST API, the streamer (publish
// and one applier per region) and a tcs lookup server per region, with
// in-process invalidation. `make run` starts it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

func main() { cmdutil.Main("tcs-dev", run) }

// DefaultRegions are the regions `make run` serves, with their gRPC ports.
const DefaultRegions = "us-east-1=127.0.0.1:9001,eu-west-1=127.0.0.1:9002,ap-southeast-2=127.0.0.1:9003"

type regionAddr struct{ region, addr string }

func parseRegions(s string) ([]regionAddr, error) {
	var out []regionAddr
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		region, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || region == "" || addr == "" {
			return nil, fmt.Errorf("--regions: %q is not REGION=HOST:PORT", part)
		}
		if seen[region] {
			return nil, fmt.Errorf("--regions: region %s listed twice", region)
		}
		seen[region] = true
		out = append(out, regionAddr{region, addr})
	}
	return out, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

// endpoints are where a started system listens, for tests.
type endpoints struct {
	Catalog string
	Regions map[string]string
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- endpoints) error {
	fs := flag.NewFlagSet("tcs-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", cmdutil.EnvOr(getenv, "TCS_DATA_DIR", "data"), "data directory (env TCS_DATA_DIR)")
	catalogAddr := fs.String("catalog-addr", cmdutil.EnvOr(getenv, "TCS_CATALOG_ADDR", "127.0.0.1:8080"), "admin REST API listen address (env TCS_CATALOG_ADDR)")
	regionsFlag := fs.String("regions", cmdutil.EnvOr(getenv, "TCS_REGIONS", DefaultRegions), "regions and their gRPC listen addresses (env TCS_REGIONS)")
	seed := fs.Bool("seed", true, "create sample tenants when the data directory is new")
	logFormat := fs.String("log-format", cmdutil.EnvOr(getenv, "TCS_LOG_FORMAT", "text"), "log format: text or json (env TCS_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	regions, err := parseRegions(*regionsFlag)
	if err != nil {
		return err
	}
	log, err := cmdutil.NewLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	tokenList, err := httpapi.LoadTokenList(getenv("TCS_TOKENS_FILE"), getenv)
	if err != nil {
		return err
	}
	tokens, err := httpapi.NewTokens(tokenList...)
	if err != nil {
		return err
	}
	// The admin tokens of the catalog also open each region's replica admin
	// API (tcsctl verify and repair scan the replicas through it).
	var adminTokens []string
	for _, t := range tokenList {
		if t.Role == httpapi.RoleAdmin {
			adminTokens = append(adminTokens, t.Value)
		}
	}
	data := cmdutil.Data(*dataDir)
	if err := data.Ensure(); err != nil {
		return err
	}
	_, statErr := os.Stat(data.Catalog())
	fresh := errors.Is(statErr, os.ErrNotExist)

	// Open every listener first: a busy port fails the start, naming it.
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
		}
		listeners = append(listeners, ln)
		return ln, nil
	}
	catalogLn, err := listen("catalog", *catalogAddr)
	if err != nil {
		return err
	}
	regionLns := make([]net.Listener, len(regions))
	for i, r := range regions {
		if regionLns[i], err = listen("tcs "+r.region, r.addr); err != nil {
			return err
		}
	}

	store, err := bolt.Open(data.Catalog(), bolt.Options{})
	if err != nil {
		return err
	}
	defer store.Close()
	stream, err := boltlog.Open(data.Stream(), boltlog.Options{})
	if err != nil {
		return err
	}
	defer stream.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g, gctx := errgroup.WithContext(ctx)
	api := httpapi.New(httpapi.Config{Store: store, Tokens: tokens, Logger: log.With("component", "catalog"), Registry: reg})
	g.Go(func() error { return httpapi.Serve(gctx, catalogLn, api) })
	pub := streamer.NewPublisher(streamer.PublisherConfig{Outbox: store, Stream: stream, Logger: log.With("component", "publish"), Registerer: reg})
	g.Go(func() error { return pub.Run(gctx) })

	ep := endpoints{Catalog: catalogLn.Addr().String(), Regions: map[string]string{}}
	for i, r := range regions {
		rep, err := boltreplica.Open(data.Replica(r.region), boltreplica.Options{})
		if err != nil {
			return err
		}
		defer rep.Close()
		hub := fanout.New(fanout.Options{})
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: r.region, Stream: stream, Replica: rep, Broadcaster: hub,
			Logger: log.With("component", "apply"), Registerer: reg})
		g.Go(func() error { return applier.Run(gctx) })
		srv := lookup.New(lookup.Config{Region: r.region, Replica: rep, Feed: hub, Logger: log.With("component", "tcs", "region", r.region),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"region": r.region}, reg), AdminTokens: adminTokens})
		ln := regionLns[i]
		g.Go(func() error { return srv.Serve(gctx, ln, lookup.ServeOptions{}) })
		ep.Regions[r.region] = ln.Addr().String()
	}
	listeners = nil // the servers own them now

	if fresh && *seed {
		n, err := seedTenants(ctx, store)
		if err != nil {
			return fmt.Errorf("seeding sample tenants: %w", err)
		}
		log.Info("seeded sample tenants", "count", n)
	}
	banner(stdout, *dataDir, ep, regions)
	if ready != nil {
		ready <- ep
	}
	err = g.Wait()
	log.Info("tcs-dev stopped")
	return err
}

func banner(w io.Writer, dataDir string, ep endpoints, regions []regionAddr) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nTCS is running on the embedded backends (data in %s/). Ctrl-C stops it.\n\n", strings.TrimSuffix(dataDir, "/"))
	fmt.Fprintf(&b, "  catalog admin REST API  http://%s   (OpenAPI: /openapi.json, metrics: /metrics)\n", ep.Catalog)
	for _, r := range regions {
		fmt.Fprintf(&b, "  tcs %-19s gRPC %s   (tcs.v1.TenantContextService, tcs.admin.v1.ReplicaAdmin, health, reflection)\n", r.region, ep.Regions[r.region])
	}
	first := ep.Regions[regions[0].region]
	fmt.Fprintf(&b, `
Try it (tokens: dev-admin-token may write, dev-reader-token may read, unless you set your own):
  curl -s http://%[1]s/v1/tenants -H 'Authorization: Bearer dev-reader-token'
  curl -s http://%[1]s/v1/hostnames/acme.example.com -H 'Authorization: Bearer dev-reader-token'
  go run github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4 -plaintext \
    -d '{"hostname":"acme.example.com"}' %[2]s tcs.v1.TenantContextService/Lookup

`, ep.Catalog, first)
	_, _ = io.WriteString(w, b.String())
}
