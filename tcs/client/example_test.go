package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// A compute node makes one Client at start-up, with its own region first,
// and looks the tenant up on every request.
func Example() {
	// In production these are the lookup endpoints of each region, for
	// example "tcs.eu-west-1.internal:9001"; here, one in-process region.
	local, stop := startExampleRegion()
	defer stop()

	var hits, misses atomic.Int64
	ctx := context.Background()
	tcs, err := client.New(ctx,
		client.WithRegions(local /* , "tcs.us-east-1.internal:9001", ... */),
		client.WithTTL(30*time.Second),
		client.WithMaxStale(5*time.Minute),
		client.WithHedgeDelay(20*time.Millisecond),
		client.WithLogger(slog.New(slog.DiscardHandler)),
		client.WithMetrics(client.Hooks{
			Hit:  func() { hits.Add(1) },
			Miss: func() { misses.Add(1) },
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer tcs.Close()
	// Optional readiness gate (for example before reporting ready to the
	// orchestrator): lookups work before it, but until the invalidation
	// stream is up their answers are cached for the disconnected TTL only.
	readyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tcs.WaitReady(readyCtx); err != nil {
		log.Fatal(err)
	}

	// In an HTTP handler: the hostname comes from the Host header.
	for _, host := range []string{"acme.example.com", "ACME.example.com:443", "unknown.example.com"} {
		t, meta, err := tcs.LookupMeta(ctx, host)
		switch {
		case errors.Is(err, client.ErrNotFound):
			fmt.Printf("%s: no such tenant (404)\n", host)
		case errors.Is(err, client.ErrInvalidHostname):
			fmt.Printf("%s: bad Host header (400)\n", host)
		case err != nil: // client.ErrUnavailable: TCS down and nothing cached
			fmt.Printf("%s: try later (503)\n", host)
		default:
			// t is shared with the cache: read it, do not modify it.
			fmt.Printf("%s: tenant %s version %d, database %s (cached %v, stale %v)\n",
				host, t.ID, t.Version, t.Database.Host, meta.Cached, meta.Stale)
		}
	}
	fmt.Printf("hits %d, misses %d\n", hits.Load(), misses.Load())
	// Output:
	// acme.example.com: tenant acme version 1, database db-1.internal (cached false, stale false)
	// ACME.example.com:443: tenant acme version 1, database db-1.internal (cached true, stale false)
	// unknown.example.com: no such tenant (404)
	// hits 1, misses 2
}

// A node whose requests spread over more tenants than the cache holds
// decoded (tens of thousands) reads the few fields it needs from a View:
// no decode and no allocation on a hit, for any cached tenant.
func ExampleClient_LookupView() {
	local, stop := startExampleRegion()
	defer stop()
	ctx := context.Background()
	tcs, err := client.New(ctx, client.WithRegions(local))
	if err != nil {
		log.Fatal(err)
	}
	defer tcs.Close()
	readyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tcs.WaitReady(readyCtx); err != nil { // the region is serving
		log.Fatal(err)
	}

	for _, host := range []string{"acme.example.com", "acme.example.com", "unknown.example.com"} {
		v, err := tcs.LookupView(ctx, host)
		switch {
		case errors.Is(err, client.ErrNotFound):
			fmt.Printf("%s: no such tenant (404)\n", host)
			continue
		case err != nil: // the same errors as Lookup
			fmt.Printf("%s: %v\n", host, err)
			continue
		}
		// The view's strings point into the cache: use them for this
		// request, strings.Clone what you keep (or v.Tenant(), a copy).
		db, _ := v.Database()
		fmt.Printf("%s: tenant %s version %d, %s, database %s, read-only %v\n",
			host, v.ID(), v.Version(), v.Status(), db.Host, v.ReadOnly())
	}
	// Output:
	// acme.example.com: tenant acme version 1, ACTIVE, database db-1.internal, read-only false
	// acme.example.com: tenant acme version 1, ACTIVE, database db-1.internal, read-only false
	// unknown.example.com: no such tenant (404)
}

// startExampleRegion serves one region's lookup API on loopback, over a
// replica holding tenant acme.
func startExampleRegion() (addr string, stop func()) {
	dir, err := os.MkdirTemp("", "tcs-example")
	if err != nil {
		log.Fatal(err)
	}
	rep, err := boltreplica.Open(filepath.Join(dir, "replica.db"), boltreplica.Options{})
	if err != nil {
		log.Fatal(err)
	}
	ev := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	ev.Tenant.Database.Host = "db-1.internal"
	if _, err := rep.Apply(context.Background(), ev); err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv := lookup.New(lookup.Config{Region: "eu-west-1", Replica: rep})
		if err := srv.Serve(ctx, lis, lookup.ServeOptions{}); err != nil {
			log.Print(err)
		}
	}()
	return lis.Addr().String(), func() {
		cancel()
		<-done
		rep.Close()
		os.RemoveAll(dir)
	}
}
