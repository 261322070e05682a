package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/nodeprobe"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/httpserve"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// The in-process system the CLI tests run tcsctl against: the catalog's
// REST API over the embedded bbolt source of truth, the publisher, the
// embedded stream, and per region an applier, a bbolt replica and a gRPC
// server with Lookup and ReplicaAdmin — the same parts, wired the same way,
// as cmd/tcs-dev (whose run cannot be called from here: it is another
// main package, and its replicas cannot be reached for drift injection). Each region's replica sits behind a lock so that a test
// can stop it for a moment and edit its bbolt file directly (drift
// injection), as an outage or a bad restore would.

const (
	testToken     = "test-admin-token"
	testScanToken = "test-scan-token"
)

var testRegions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}

type system struct {
	dir      string
	store    *bolt.Store
	stream   *boltlog.Log
	catalog  string             // base URL
	api      *httpclient.Client // the catalog's API with the admin token
	regions  []region
	replicas map[string]*replicatest.LockedReplica
	lookups  map[string]tcsv1.TenantContextServiceClient
	timings  *stageTimings // see sysOptions
}

// env is the environment tcsctl runs with against this system.
func (s *system) env(extra ...string) func(string) string {
	var rs []string
	for _, r := range s.regions {
		rs = append(rs, r.Name+"="+r.Addr)
	}
	m := map[string]string{"TCS_CATALOG_URL": s.catalog, "TCS_ADMIN_TOKEN": testToken, "TCS_SCAN_TOKEN": testScanToken, "TCS_REGIONS": strings.Join(rs, ","),
		"TCS_CHECKPOINT_DIR": filepath.Join(s.dir, "checkpoints")}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return func(k string) string { return m[k] }
}

type sysOptions struct {
	// seedRaw, if not nil, writes the source of truth's bbolt file before
	// the system starts (benchmarks load many tenants this way).
	seedRaw func(tb testing.TB, path string)
	// timings, if not nil, accumulates the publisher's time in each call.
	timings *stageTimings
}

// stageTimings is where the publisher's time goes (benchmark tracing).
type stageTimings struct {
	mu                      sync.Mutex
	read, append, ack       time.Duration
	reads, appends, acks, n int
}

func (t *stageTimings) add(d *time.Duration, c *int, since time.Time, n int) {
	t.mu.Lock()
	*d += time.Since(since)
	*c++
	t.n += n
	t.mu.Unlock()
}

func (t *stageTimings) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("read %v/%d append %v/%d ack %v/%d", t.read.Round(time.Millisecond), t.reads, t.append.Round(time.Millisecond), t.appends, t.ack.Round(time.Millisecond), t.acks)
}

type timedOutbox struct {
	bolt *bolt.Store
	t    *stageTimings
}

func (o *timedOutbox) OutboxShards() int { return o.bolt.OutboxShards() }

func (o *timedOutbox) OutboxHeads(ctx context.Context) ([]uint64, error) {
	return o.bolt.OutboxHeads(ctx)
}

func (o *timedOutbox) ReadOutbox(ctx context.Context, shard int, after uint64, limit int) ([]catalog.OutboxEntry, error) {
	defer o.t.add(&o.t.read, &o.t.reads, time.Now(), 0)
	return o.bolt.ReadOutbox(ctx, shard, after, limit)
}

func (o *timedOutbox) AckOutbox(ctx context.Context, shard int, upTo uint64) error {
	defer o.t.add(&o.t.ack, &o.t.acks, time.Now(), 0)
	return o.bolt.AckOutbox(ctx, shard, upTo)
}

func (o *timedOutbox) OutboxChanged() <-chan struct{} { return o.bolt.OutboxChanged() }

type timedStream struct {
	streamer.Stream
	t *stageTimings
}

func (s *timedStream) Append(ctx context.Context, records []streamer.Record) error {
	defer s.t.add(&s.t.append, &s.t.appends, time.Now(), len(records))
	return s.Stream.Append(ctx, records)
}

// startSystem starts the system on loopback ports and stops it when the
// test ends.
func startSystem(tb testing.TB, opts sysOptions) *system {
	tb.Helper()
	dir := tb.TempDir()
	s := &system{dir: dir, replicas: map[string]*replicatest.LockedReplica{}, lookups: map[string]tcsv1.TenantContextServiceClient{}, timings: opts.timings}
	catalogPath := filepath.Join(dir, "catalog.db")
	if opts.seedRaw != nil {
		opts.seedRaw(tb, catalogPath)
	}
	var err error
	if s.store, err = bolt.Open(catalogPath, bolt.Options{}); err != nil {
		tb.Fatal(err)
	}
	if s.stream, err = boltlog.Open(filepath.Join(dir, "stream.db"), boltlog.Options{}); err != nil {
		tb.Fatal(err)
	}
	creds, err := auth.Parse(strings.NewReader(auth.Line(auth.Admin, testToken, "sre")+"\n"+auth.Line(auth.ReplicaScan, testScanToken, "verify")), "test credentials")
	if err != nil {
		tb.Fatal(err)
	}
	authn := auth.Static(creds)
	authn.Open(auth.Lookup) // the tests' lookups carry no token
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.catalog = "http://" + ln.Addr().String()
	if s.api, err = httpclient.New(s.catalog, httpclient.WithToken(testToken)); err != nil {
		tb.Fatal(err)
	}
	nodes := propagation.NewTable(0, nil) // the lookup servers, for GET …/propagation (tcsctl wait)
	local := nodeprobe.NewLocal(nodes)
	api := httpapi.New(httpapi.Config{Store: s.store, Auth: authn, Propagation: &propagation.Checker{Regions: testRegions, Registry: nodes, Prober: local}})
	g.Go(func() error { return httpserve.Serve(gctx, ln, api) })
	var outbox streamer.Outbox = s.store
	var pubStream streamer.Stream = s.stream
	if opts.timings != nil {
		outbox = &timedOutbox{bolt: s.store, t: opts.timings}
		pubStream = &timedStream{Stream: s.stream, t: opts.timings}
	}
	pub := streamer.NewPublisher(streamer.PublisherConfig{Outbox: outbox, Stream: pubStream})
	g.Go(func() error { return pub.Run(gctx) })

	var conns []*grpc.ClientConn
	for _, name := range testRegions {
		path := filepath.Join(dir, "replica-"+name+".db")
		rep, err := boltreplica.Open(path, boltreplica.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		lr := replicatest.NewLockedReplica(path, rep)
		s.replicas[name] = lr
		hub := fanout.New(fanout.Options{})
		applier := streamer.NewApplier(streamer.ApplierConfig{Region: name, Stream: s.stream, Replica: lr, Broadcaster: hub})
		g.Go(func() error { return applier.Run(gctx) })
		// No caching: lookups show what the replica holds, so that the tests
		// see drift and repair as soon as they happen.
		srv := lookup.New(lookup.Config{Region: name, Replica: lr, Feed: hub, Cache: cache.Options{TTL: time.Nanosecond, NegativeTTL: -1},
			ReplicaAdmin: true})
		gs := grpc.NewServer(authn.ServerOptions(lookup.Policy(false))...)
		srv.Register(gs) // Lookup and ReplicaAdmin
		rln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		g.Go(func() error { return srv.Run(gctx) })
		g.Go(func() error { return gs.Serve(rln) })
		g.Go(func() error {
			<-gctx.Done()
			gs.Stop()
			return nil
		})
		s.regions = append(s.regions, region{Name: name, Addr: rln.Addr().String()})
		g.Go(func() error {
			local.Serve(gctx, propagation.Node{Region: name, ID: "tcs-" + name, Addr: rln.Addr().String()}, srv, 0)
			return nil
		})
		conn, err := grpc.NewClient(rln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, conn)
		s.lookups[name] = tcsv1.NewTenantContextServiceClient(conn)
	}
	tb.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		cancel()
		if err := g.Wait(); err != nil {
			tb.Errorf("system: %v", err)
		}
		for _, r := range s.replicas {
			r.Close()
		}
		s.stream.Close()
		s.store.Close()
	})
	return s
}

// create creates a tenant through the API.
func (s *system) create(tb testing.TB, doc string) *tenant.Tenant {
	tb.Helper()
	t, err := s.api.Create(context.Background(), json.RawMessage(doc))
	if err != nil {
		tb.Fatalf("create %s: %v", doc, err)
	}
	return t
}

// patch merge-patches tenant id through the API if it is at version
// ifMatch.
func (s *system) patch(tb testing.TB, id string, ifMatch int64, patch string) error {
	tb.Helper()
	var p httpclient.MergePatch
	if err := json.Unmarshal([]byte(patch), &p); err != nil {
		tb.Fatalf("patch %s: %v", patch, err)
	}
	_, err := s.api.Patch(context.Background(), id, ifMatch, p)
	return err
}

// get reads a live tenant from the source of truth.
func (s *system) get(tb testing.TB, id string) *tenant.Tenant {
	tb.Helper()
	t, err := s.store.Get(context.Background(), id)
	if err != nil {
		tb.Fatalf("get %s: %v", id, err)
	}
	return t
}

// waitApplied waits until every region's replica holds tenant id at
// version v or later.
func (s *system) waitApplied(tb testing.TB, id string, v int64) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, name := range testRegions {
		for {
			t, err := s.replicas[name].GetTenant(context.Background(), id)
			if err == nil && t.Version >= v {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s never applied %s version %d (have %v, %v)", name, id, v, t, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// tcsctl runs the CLI against the system and returns its exit code and
// output.
func (s *system) tcsctl(tb testing.TB, ctx context.Context, args ...string) (int, string, string) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, s.env(), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func (s *system) mustTcsctl(tb testing.TB, want int, args ...string) string {
	tb.Helper()
	code, out, errOut := s.tcsctl(tb, context.Background(), args...)
	if code != want {
		tb.Fatalf("tcsctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

func sampleTenant(id string, n int) string {
	return fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com","www.%s.example.com"],"region":"us-east-1",`+
		`"products":{"jira":{"state":"ACTIVE","users":%d}},`+
		`"database":{"engine":"postgres","host":"db-%d.internal","port":5432,"name":%q}}`, id, id, id, 10+n, n%3+7, strings.ReplaceAll(id, "-", "_"))
}
