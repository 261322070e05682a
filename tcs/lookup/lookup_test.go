package lookup_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

const host = "acme.example.com"

func TestLookup(t *testing.T) {
	t.Parallel()
	acme := makeTenant("acme", 3, host, "xn--bcher-kva.example.com")
	e := start(t, lookup.Config{Replica: newFakeReplica(acme)}, lookup.ServeOptions{})
	ctx := testwait.Context(t)

	want := &tcsv1.LookupResponse{
		Tenant: tcsv1.TenantToProto(acme),
		Region: "eu-west-1",
		Age:    durationpb.New(0),
	}
	for i, hostname := range []string{host, host, "ACME.Example.com.:443", "Bücher.example.com"} {
		got, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: hostname})
		if err != nil {
			t.Fatalf("Lookup(%q): %v", hostname, err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("Lookup(%q) #%d (-want +got):\n%s", hostname, i, diff)
		}
	}
	// The first lookup of each hostname read the replica; the rest hit.
	if n := e.replica.calls.Load(); n != 2 {
		t.Errorf("replica reads = %d, want 2", n)
	}

	e.clock.Advance(10 * time.Second)
	got, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if err != nil {
		t.Fatal(err)
	}
	if age := got.GetAge().AsDuration(); age != 10*time.Second || got.GetStale() {
		t.Errorf("cache hit after 10s: age %v, stale %v; want 10s, false", age, got.GetStale())
	}

	_, err = e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "nobody.example.com"})
	if code := status.Code(err); code != codes.NotFound {
		t.Errorf("unknown hostname: %v, want NOT_FOUND", err)
	}
}

// TestLookupInProcess: called directly, Lookup returns the tenant decoded.
func TestLookupInProcess(t *testing.T) {
	t.Parallel()
	acme := makeTenant("acme", 3, host)
	srv := lookup.New(lookup.Config{Region: "eu-west-1", Replica: newFakeReplica(acme), Now: newClock().Now})
	for range 2 { // a miss, then a hit
		got, err := srv.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: host})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tcsv1.TenantToProto(acme), got.GetTenant(), protocmp.Transform()); diff != "" {
			t.Errorf("tenant (-want +got):\n%s", diff)
		}
	}
}

func TestLookupInvalidArgument(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	long := strings.Repeat("a", 60) + "."
	tests := []struct {
		name     string
		hostname string
		reason   string // a part of the status message
	}{
		{"empty", "", "is required"},
		{"over the input cap", strings.Repeat("a", 2000) + ".com", "is too long: 2004 bytes"},
		{"over 253 characters", strings.Repeat(long, 5) + "com", "at most 253"},
		{"underscore", "a_b.example.com", `contains '_'`},
		{"IPv4 address", "127.0.0.1", "IP addresses are not hostnames"},
		{"IPv6 address", "[::1]:443", "IPv6"},
		{"empty label", "a..example.com", "empty label"},
		{"bad port", "acme.example.com:99999", "out of range"},
		{"whitespace", " acme.example.com", "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.client.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: tt.hostname})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.reason) {
				t.Errorf("Lookup(%.40q...) = %v %q; want INVALID_ARGUMENT naming %q", tt.hostname, st.Code(), st.Message(), tt.reason)
			}
		})
	}
	if n := e.replica.calls.Load(); n != 0 {
		t.Errorf("invalid hostnames made %d replica reads", n)
	}
}

func TestBatchLookup(t *testing.T) {
	t.Parallel()
	acme := makeTenant("acme", 3, host)
	e := start(t, lookup.Config{Replica: newFakeReplica(acme)}, lookup.ServeOptions{})
	ctx := testwait.Context(t)

	got, err := e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{
		Hostnames: []string{host, "nobody.example.com", "a_b.example.com", "ACME.example.com", host},
	})
	if err != nil {
		t.Fatal(err)
	}
	tp := tcsv1.TenantToProto(acme)
	want := &tcsv1.BatchLookupResponse{
		Region: "eu-west-1",
		Results: []*tcsv1.BatchLookupResult{
			{Hostname: host, Tenant: tp, Age: durationpb.New(0)},
			{Hostname: "nobody.example.com", Code: int32(codes.NotFound), Message: `hostname "nobody.example.com" has no tenant`},
			{Hostname: "a_b.example.com", Code: int32(codes.InvalidArgument), Message: `invalid hostname: hostname: label "a_b" contains '_'`},
			{Hostname: "ACME.example.com", Tenant: tp, Age: durationpb.New(0)},
			{Hostname: host, Code: int32(codes.InvalidArgument), Message: "duplicate of hostnames[0]: each hostname is answered once, in the result of its first entry"},
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("BatchLookup (-want +got):\n%s", diff)
	}

	// In process, the same answer.
	direct, err := e.srv.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: []string{host, "nobody.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Results[:2], direct.Results, protocmp.Transform()); diff != "" {
		t.Errorf("in-process BatchLookup (-want +got):\n%s", diff)
	}

	tooMany := make([]string, lookup.MaxBatch+1)
	for i := range tooMany {
		tooMany[i] = host
	}
	_, err = e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: tooMany})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "at most 100") {
		t.Errorf("BatchLookup of 101: %v; want INVALID_ARGUMENT saying at most 100", err)
	}
	if _, err := e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: tooMany[:100]}); err != nil {
		t.Errorf("BatchLookup of 100: %v", err)
	}
	// A cached answer reports how long ago it was read.
	e.clock.Advance(2 * time.Second)
	got, err = e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	if age := got.GetResults()[0].GetAge().AsDuration(); age != 2*time.Second {
		t.Errorf("age of a cached batch answer = %v, want 2s", age)
	}
}

func TestInvalidationMakesNextLookupNew(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 1, host))}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	watch := openWatch(t, e)

	if got, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil || got.GetTenant().GetVersion() != 1 {
		t.Fatalf("Lookup = %v, %v; want version 1", got, err)
	}
	e.replica.set(makeTenant("acme", 2, host))
	if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}}); err != nil {
		t.Fatal(err)
	}
	// The server invalidates its cache before it relays an invalidation,
	// so once the Watch stream has it, the next lookup must be new.
	watch.next(t, "invalidation")
	got, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if err != nil || got.GetTenant().GetVersion() != 2 {
		t.Fatalf("Lookup after the invalidation = %v, %v; want version 2", got, err)
	}
}

func TestStaleIfError(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 1, host))}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	e.replica.setErr(errors.New("replica down"))
	e.clock.Advance(45 * time.Second)

	got, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetStale() || got.GetAge().AsDuration() != 45*time.Second || got.GetTenant().GetId() != "acme" {
		t.Errorf("replica down: stale %v, age %v, tenant %q; want true, 45s, acme",
			got.GetStale(), got.GetAge().AsDuration(), got.GetTenant().GetId())
	}
	batch, err := e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: []string{host, "other.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := batch.Results[0]; !r.GetStale() || r.GetCode() != 0 {
		t.Errorf("batch result for a stale entry: %v; want stale, OK", r)
	}
	if r := batch.Results[1]; codes.Code(r.GetCode()) != codes.Unavailable || strings.Contains(r.GetMessage(), "replica down") {
		t.Errorf("batch result without an entry: %v; want UNAVAILABLE without the internal cause", r)
	}

	e.clock.Advance(cache.DefaultMaxStale)
	_, err = e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if st := status.Convert(err); st.Code() != codes.Unavailable || strings.Contains(st.Message(), "replica down") {
		t.Errorf("beyond max-stale: %v; want UNAVAILABLE without the internal cause", err)
	}
}

func TestContextErrorsPassThrough(t *testing.T) {
	t.Parallel()
	replica := newFakeReplica(makeTenant("acme", 1, host))
	release := replica.block()
	defer release()
	srv := lookup.New(lookup.Config{Replica: replica, Cache: cache.Options{ReadTimeout: time.Minute}})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := srv.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if code := status.Code(err); code != codes.Canceled {
		t.Errorf("cancelled: %v, want CANCELED", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = srv.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if code := status.Code(err); code != codes.DeadlineExceeded {
		t.Errorf("deadline: %v, want DEADLINE_EXCEEDED", err)
	}
}

// TestReplicaTimeoutIsUnavailable: the replica's own read deadline is not the
// caller's: it is UNAVAILABLE, not DEADLINE_EXCEEDED.
func TestReplicaTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	replica := newFakeReplica(makeTenant("acme", 1, host))
	release := replica.block()
	defer release()
	srv := lookup.New(lookup.Config{Replica: replica, Cache: cache.Options{ReadTimeout: 10 * time.Millisecond}})
	_, err := srv.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: host})
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("replica read timed out: %v, want UNAVAILABLE", err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 1, host))}, lookup.ServeOptions{})
	reg := e.srv.Registry()
	ctx := testwait.Context(t)
	watch := openWatch(t, e)
	for _, h := range []string{host, host, "nobody.example.com", "a_b.example.com"} {
		_, _ = e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h})
	}
	committed := e.clock.Now().Add(-1500 * time.Millisecond)
	if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "zeta", Version: 1, Hostnames: []string{"zeta.example.com"}, CommittedAt: committed}); err != nil {
		t.Fatal(err)
	}
	watch.next(t, "invalidation")

	got := gather(t, reg)
	want := map[string]float64{
		`tcs_lookup_lookups_total{code="OK"}`:                        2,
		`tcs_lookup_lookups_total{code="NotFound"}`:                  1,
		`tcs_lookup_lookups_total{code="InvalidArgument"}`:           1,
		`tcs_lookup_cache_hits_total{result="tenant"}`:               1,
		`tcs_lookup_cache_misses_total`:                              2,
		`tcs_lookup_cache_stale_serves_total`:                        0,
		`tcs_lookup_replication_lag_seconds`:                         1.5,
		`tcs_lookup_propagation_seconds_count`:                       1,
		`tcs_lookup_propagation_seconds_bucket{le="1"}`:              0,
		`tcs_lookup_propagation_seconds_bucket{le="2.5"}`:            1,
		`tcs_lookup_watch_streams`:                                   1,
		`tcs_lookup_invalidations_total`:                             1,
		`tcs_lookup_request_duration_seconds_count{method="Lookup"}`: 4,
		`tcs_lookup_feed_up`:                                         1,
		`tcs_lookup_feed_heartbeats_total`:                           0,
		`tcs_lookup_cache_replica_failing`:                           0,
		`tcs_lookup_cache_stale_at_once_total`:                       0,
		`tcs_lookup_cache_read_retries_total`:                        0,
		`tcs_lookup_cache_sibling_serves_total`:                      0,
		`tcs_lookup_cache_refreshes_total{result="started"}`:         0,
		`tcs_lookup_cache_fallback_reads_total{result="served"}`:     0,
	}
	if got["tcs_lookup_feed_last_message_timestamp_seconds"] != float64(e.clock.Now().Unix()) {
		t.Errorf("tcs_lookup_feed_last_message_timestamp_seconds = %v, want %v", got["tcs_lookup_feed_last_message_timestamp_seconds"], e.clock.Now().Unix())
	}
	for name, v := range want {
		if gv, ok := got[name]; !ok || gv != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}

// gather flattens a registry's metrics into name{labels} → value.
func gather(tb testing.TB, reg *prometheus.Registry) map[string]float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				base, rest, _ := strings.Cut(name, "{")
				if rest != "" {
					rest = "{" + rest
				}
				out[base+"_count"+rest] = float64(m.GetHistogram().GetSampleCount())
				for _, b := range m.GetHistogram().GetBucket() {
					le := `le="` + strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64) + `"`
					if rest != "" {
						le = rest[1:len(rest)-1] + "," + le
					}
					out[base+"_bucket{"+le+"}"] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

// A BatchLookup's misses are read concurrently: a batch of misses costs
// about one replica read, not one per hostname (a backlog's invalidations
// or a cold node would otherwise make a batch take its size times the read
// timeout).
func TestBatchLookupReadsMissesConcurrently(t *testing.T) {
	t.Parallel()
	replica := newFakeReplica(makeTenant("acme", 1, host))
	e := start(t, lookup.Config{Replica: replica, Cache: cache.Options{ReadTimeout: time.Minute}}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	release := replica.block()
	defer release()
	before := replica.calls.Load()
	names := []string{host} // a hit, answered while the misses wait
	for i := range 40 {
		names = append(names, fmt.Sprintf("nobody-%d.example.com", i))
	}
	type answer struct {
		res *tcsv1.BatchLookupResponse
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: names})
		done <- answer{res, err}
	}()
	// Every read blocks until released: only concurrent reads get past one.
	testwait.For(t, "16 replica reads in flight at once", func() bool { return replica.calls.Load()-before >= 16 })
	release()
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	if got := a.res.GetResults()[0]; got.GetCode() != 0 || got.GetTenant().GetId() != "acme" {
		t.Errorf("the hit: %v", got)
	}
	for i, r := range a.res.GetResults()[1:] {
		if r.GetHostname() != names[i+1] || codes.Code(r.GetCode()) != codes.NotFound {
			t.Errorf("result %d: %v; want %s not found, in request order", i+1, r, names[i+1])
		}
	}
	if got := replica.calls.Load() - before; got != 40 {
		t.Errorf("%d replica reads for 40 misses; want 40", got)
	}
}
