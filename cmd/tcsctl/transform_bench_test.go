package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tcs-dev/tcs/catalog"
	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/internal/testnet"
)

// BenchmarkTransformAWS: tcsctl transform (its real command path, run
// in-process) moving every one of N tenants to another database host,
// through the catalog's REST API (httpapi, per-caller rate limits off) on
// DynamoDB Local: the AWS topology's write path, with no publisher (the
// outbox only fills). Reported: tenants/s and wall-s of the transform,
// seed-s of the seeding (catalog.Store Create calls straight on the table,
// concurrently, not timed).
//
// Environment (all optional):
//
//	TCS_BENCH_TRANSFORM_TENANTS  N (default 2000, 100 under -short: a smoke
//	                             run, its figures mean nothing; issue 12
//	                             measures 100,000)
//	TCS_BENCH_TRANSFORM_WORKERS  tcsctl --workers (default 16)
//	TCS_BENCH_TRANSFORM_LATENCY  delay added to each DynamoDB call by a
//	                             testnet.LatencyProxy (default 0; see
//	                             cmd/catalog's BenchmarkRESTCreates for why)
//	TCS_BENCH_SEED_WRITERS       concurrent creates while seeding (default 32)
//	TCS_BENCH_TRANSFORM_ONE_SHARD  1: seed only ids of outbox shard 0 of
//	                             catalog/dynamo; the catalog lists tenants
//	                             shard by shard, so this is how every
//	                             transform of more than 64 × 500 tenants
//	                             writes: each page of 500 in one shard
//
// Each iteration moves every tenant one way (db-7 → db-9, then back), so
// -benchtime Nx needs one seeding only.
func BenchmarkTransformAWS(b *testing.B) {
	n := benchEnvInt(b, "TCS_BENCH_TRANSFORM_TENANTS", benchsize.Pick(2000, 100))
	workers := benchEnvInt(b, "TCS_BENCH_TRANSFORM_WORKERS", 16)
	seeders := benchEnvInt(b, "TCS_BENCH_SEED_WRITERS", 32)
	var latency time.Duration
	if v := os.Getenv("TCS_BENCH_TRANSFORM_LATENCY"); v != "" {
		var err error
		if latency, err = time.ParseDuration(v); err != nil || latency < 0 {
			b.Fatalf("TCS_BENCH_TRANSFORM_LATENCY=%q: want a duration of 0 or more, such as 5ms", v)
		}
	}
	oneShard := os.Getenv("TCS_BENCH_TRANSFORM_ONE_SHARD") == "1"
	name := fmt.Sprintf("tenants=%d/workers=%d/latency=%v", n, workers, latency)
	if oneShard {
		name += "/one-shard"
	}
	b.Run(name, func(b *testing.B) {
		catalogURL, store, proxy := awsBenchCatalog(b, latency)
		seedStart := time.Now()
		seedDynamo(b, store, n, seeders, oneShard)
		seed := time.Since(seedStart)
		b.Logf("seeded %d tenants in %v (%.0f/s, %d writers)", n, seed.Round(time.Millisecond), float64(n)/seed.Seconds(), seeders)
		env := map[string]string{"TCS_CATALOG_URL": catalogURL, "TCS_ADMIN_TOKEN": testToken}
		getenv := func(k string) string { return env[k] }
		hosts := [2]string{"db-7.internal", "db-9.internal"}
		proxy.ResetCalls()
		b.ResetTimer()
		var total time.Duration
		for i := range b.N {
			from, to := hosts[i%2], hosts[(i+1)%2]
			var stdout, stderr strings.Builder
			start := time.Now()
			code := run(context.Background(), []string{"transform", "--where", fmt.Sprintf("database.host == %q", from),
				"--set", "database.host=" + to, "--yes", "--workers", strconv.Itoa(workers), "--checkpoint", "off", "-o", "json"},
				getenv, strings.NewReader(""), &stdout, &stderr)
			took := time.Since(start)
			total += took
			if code != 0 {
				b.Fatalf("transform: exit %d\n%s", code, head(stderr.String(), 2000))
			}
			var rep struct {
				Summary map[string]int64 `json:"summary"`
			}
			if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
				b.Fatalf("transform -o json: %v\n%s", err, head(stdout.String(), 2000))
			}
			b.Logf("transform %s → %s: %d tenants in %v, summary %v", from, to, n, took.Round(time.Millisecond), rep.Summary)
			// A PATCH that timed out (503, outcome unknown) and had committed
			// is found done by tcsctl's retry: its If-Match fails, and the
			// tenant re-read is "unchanged" or, as it no longer matches
			// --where, "skipped". Every tenant matched at the start.
			done := rep.Summary["changed"] + rep.Summary["unchanged"] + rep.Summary["skipped"]
			if rep.Summary["scanned"] != int64(n) || done != int64(n) || rep.Summary["failed"] != 0 {
				b.Fatalf("transform %s → %s: summary %v, want %d scanned and changed (or found already changed), none failed", from, to, rep.Summary, n)
			}
		}
		b.StopTimer()
		var calls int64
		for _, c := range proxy.Calls() {
			calls += c
		}
		b.Logf("DynamoDB calls per tenant: %.2f (%v)", float64(calls)/float64(n*b.N), proxy.Calls())
		b.ReportMetric(float64(calls)/float64(n*b.N), "ddb-calls/tenant")
		b.ReportMetric(float64(n*b.N)/total.Seconds(), "tenants/s")
		b.ReportMetric(total.Seconds()/float64(b.N), "wall-s")
		b.ReportMetric(seed.Seconds(), "seed-s")
	})
}

// awsBenchCatalog serves the catalog's REST API (no rate limits, testToken
// may write) on a new table of the test binary's DynamoDB Local, reached
// through a LatencyProxy, until b ends. It returns the API's URL and the
// store, for seeding, and the proxy, which counts the store's calls.
func awsBenchCatalog(b *testing.B, latency time.Duration) (string, *catalogdynamo.Store, *testnet.LatencyProxy) {
	b.Helper()
	ctx := context.Background()
	admin := emulators.SharedDynamoDBClient(b)
	table := fmt.Sprintf("bench%d-catalog", time.Now().UnixNano()%1e9)
	if err := catalogdynamo.CreateTable(ctx, admin, table); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// DynamoDB Local keeps every table in memory: free it for the next runs.
		_, _ = admin.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	proxy := testnet.NewLatencyProxy(b, emulators.SharedDynamoDB(b), latency)
	client := dynamodb.New(dynamodb.Options{
		BaseEndpoint:                    aws.String(proxy.URL()),
		Region:                          "us-east-1",
		Credentials:                     credentials.NewStaticCredentialsProvider("local", "local", ""),
		DisableValidateResponseChecksum: true, // DynamoDB Local's error answers carry no CRC32 the SDK accepts
		HTTPClient:                      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
	})
	store, err := catalogdynamo.Open(ctx, catalogdynamo.Config{Client: client, Table: table})
	if err != nil {
		b.Fatal(err)
	}
	creds, err := auth.Parse(strings.NewReader(auth.Line(auth.Admin, testToken, "sre")), "bench credentials")
	if err != nil {
		b.Fatal(err)
	}
	api := httpapi.New(httpapi.Config{Store: store, Auth: auth.Static(creds), RateLimits: &httpapi.RateLimits{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when Close closes the listener
	}()
	b.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String(), store, proxy
}

// seedDynamo creates n tenants s0000000… on database host db-7.internal,
// writers at a time; with oneShard only ids of outbox shard 0 (n of them,
// from a longer run of numbers). A create that fails is tried again (a failure under
// contention, such as the store's Unavailable after too many cancelled
// transactions, is what the old single-outbox layout does); one that finds
// its tenant already there (an earlier attempt committed) is done.
func seedDynamo(b *testing.B, store *catalogdynamo.Store, n, writers int, oneShard bool) {
	b.Helper()
	ids := make([]string, 0, n)
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("s%07d", i)
		if !oneShard || catalog.OutboxShard(id, catalogdynamo.Shards) == 0 {
			ids = append(ids, id)
		}
	}
	ctx := context.Background()
	at := time.Now().UTC()
	var next, retries atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id := ids[i]
				t := &tenant.Tenant{ID: id, Hostnames: []string{id + ".example.com", "www." + id + ".example.com"},
					Status: tenant.StatusActive, Region: "us-east-1",
					Products:  map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: int64(i % 500), Edition: "standard"}},
					Database:  &tenant.Database{Engine: "postgres", Host: "db-7.internal", Port: 5432, Name: id},
					UpdatedAt: at}
				for attempt := 1; ; attempt++ {
					_, err := store.Create(ctx, t, "seed")
					if err == nil || tenant.ErrorCode(err) == tenant.AlreadyExists {
						break
					}
					if attempt == 20 {
						errs <- fmt.Errorf("seed %s: %w (after %d attempts)", id, err, attempt)
						return
					}
					retries.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if r := retries.Load(); r > 0 {
		b.Logf("seeding retried %d failed creates", r)
	}
}

// benchEnvInt reads a positive whole number from the environment variable
// key, or def when it is unset.
func benchEnvInt(b *testing.B, key string, def int) int {
	b.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a whole number of 1 or more", key, v)
	}
	return n
}

// head is the first max bytes of s.
func head(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
