package lookup_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// atLeastOutcomes reads tcs_lookup_min_version_lookups_total by outcome.
func atLeastOutcomes(tb testing.TB, e *env) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for name, v := range gather(tb, e.srv.Registry()) {
		if o, ok := strings.CutPrefix(name, `tcs_lookup_min_version_lookups_total{outcome="`); ok {
			out[strings.TrimSuffix(o, `"}`)] = v
		}
	}
	return out
}

// lookupAtLeast makes a Lookup with min_version (and tenant_id) and returns
// its response, error and trailer.
func lookupAtLeast(tb testing.TB, e *env, hostname, tenantID string, min int64) (*tcsv1.LookupResponse, metadata.MD, error) {
	tb.Helper()
	var md metadata.MD
	resp, err := e.client.Lookup(testwait.Context(tb), &tcsv1.LookupRequest{Hostname: hostname, TenantId: tenantID, MinVersion: min}, grpc.Trailer(&md))
	return resp, md, err
}

// wantBehind checks that err is the answer of a region behind min_version
// at version have: UNAVAILABLE naming it in its message, its trailer and
// its ErrorInfo.
func wantBehind(tb testing.TB, err error, md metadata.MD, id string, have, min int64) {
	tb.Helper()
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		tb.Fatalf("error %v, want UNAVAILABLE (retryable)", err)
	}
	for _, s := range []string{"eu-west-1", "min_version " + itoa(min)} {
		if !strings.Contains(st.Message(), s) {
			tb.Errorf("message %q does not name %q", st.Message(), s)
		}
	}
	if got := md.Get(lookup.TrailerVersion); len(got) != 1 || got[0] != itoa(have) {
		tb.Errorf("trailer %s = %q, want %d", lookup.TrailerVersion, got, have)
	}
	if got := md.Get(lookup.TrailerRegion); len(got) != 1 || got[0] != "eu-west-1" {
		tb.Errorf("trailer %s = %q, want eu-west-1", lookup.TrailerRegion, got)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil {
		tb.Fatalf("no ErrorInfo detail in %v", st.Details())
	}
	want := map[string]string{"version": itoa(have), "min_version": itoa(min), "tenant_id": id, "region": "eu-west-1"}
	if info.GetReason() != lookup.ReasonVersionNotReached || info.GetDomain() != lookup.ErrorDomain {
		tb.Errorf("ErrorInfo reason %q domain %q", info.GetReason(), info.GetDomain())
	}
	for k, v := range want {
		if info.GetMetadata()[k] != v {
			tb.Errorf("ErrorInfo metadata %q = %q, want %q", k, info.GetMetadata()[k], v)
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestMinVersionFromCache: a cached answer at min_version or newer is
// served without a replica read.
func TestMinVersionFromCache(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 3, host))}, lookup.ServeOptions{})
	if _, err := e.client.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	reads := e.replica.calls.Load()
	for _, min := range []int64{1, 3} {
		resp, _, err := lookupAtLeast(t, e, host, "acme", min)
		if err != nil || resp.GetTenant().GetVersion() != 3 {
			t.Fatalf("min_version %d: v%d, %v; want v3", min, resp.GetTenant().GetVersion(), err)
		}
	}
	if n := e.replica.calls.Load() - reads; n != 0 {
		t.Errorf("cache hits read the replica %d times", n)
	}
	if got := atLeastOutcomes(t, e); got["cache"] != 2 || got["read"] != 0 {
		t.Errorf("outcomes = %v, want cache 2", got)
	}
}

// TestMinVersionReadsThrough: a cached answer older than min_version is
// read again from the replica (whose invalidation has not arrived yet);
// the newer answer is served and refreshes the cache for every lookup.
func TestMinVersionReadsThrough(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 3, host))}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	e.replica.set(makeTenant("acme", 4, host))
	resp, _, err := lookupAtLeast(t, e, host, "", 4)
	if err != nil || resp.GetTenant().GetVersion() != 4 || resp.GetStale() {
		t.Fatalf("min_version 4: v%d stale %v, %v; want v4 fresh", resp.GetTenant().GetVersion(), resp.GetStale(), err)
	}
	reads := e.replica.calls.Load()
	resp, err = e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
	if err != nil || resp.GetTenant().GetVersion() != 4 {
		t.Fatalf("plain lookup after it: v%d, %v; want v4 from the cache", resp.GetTenant().GetVersion(), err)
	}
	if n := e.replica.calls.Load() - reads; n != 0 {
		t.Errorf("the plain lookup read the replica %d times; the read through should have refreshed the cache", n)
	}
	if got := atLeastOutcomes(t, e); got["read"] != 1 {
		t.Errorf("outcomes = %v, want read 1", got)
	}
}

// TestMinVersionTooOld: a replica behind min_version too gives a retryable
// error naming the version it has (message, trailer, ErrorInfo), and the
// cache keeps serving what it has to plain lookups.
func TestMinVersionTooOld(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 41, host))}, lookup.ServeOptions{})
	_, md, err := lookupAtLeast(t, e, host, "", 42)
	wantBehind(t, err, md, "acme", 41, 42)
	_, md, err = lookupAtLeast(t, e, host, "acme", 42)
	wantBehind(t, err, md, "acme", 41, 42)
	if got := atLeastOutcomes(t, e); got["too_old"] != 2 {
		t.Errorf("outcomes = %v, want too_old 2", got)
	}
	// In process the error is the same status.
	_, err = e.srv.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: host, MinVersion: 42})
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "version 41") {
		t.Errorf("in process: %v, want UNAVAILABLE naming version 41", err)
	}
}

// TestMinVersionStaleRefused: when the replica cannot be read, an answer
// kept for stale-if-error is served only if its version reaches
// min_version; otherwise the region says it is behind, naming the version
// it kept.
func TestMinVersionStaleRefused(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{
		Replica: newFakeReplica(makeTenant("acme", 4, host)),
		Cache:   cache.Options{TTL: time.Second},
	}, lookup.ServeOptions{})
	if _, err := e.client.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	e.replica.setErr(errors.New("replica down"))

	_, md, err := lookupAtLeast(t, e, host, "acme", 5)
	wantBehind(t, err, md, "acme", 4, 5)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "could not be read") {
		t.Errorf("message %q does not say the replica could not be read", msg)
	}
	resp, _, err := lookupAtLeast(t, e, host, "acme", 4)
	if err != nil || !resp.GetStale() || resp.GetTenant().GetVersion() != 4 {
		t.Fatalf("min_version 4 with v4 kept: v%d stale %v, %v; want v4 stale", resp.GetTenant().GetVersion(), resp.GetStale(), err)
	}
}

// TestMinVersionTenantID: with tenant_id, an answer of another tenant or
// NOT_FOUND is checked against the replica's document of the tenant: below
// min_version the region is behind (version 0 when it has none); at or
// above, the answer is what it is.
func TestMinVersionTenantID(t *testing.T) {
	t.Parallel()
	const other = "globex.example.com"
	tests := []struct {
		name     string
		setup    func(r *fakeReplica)
		hostname string
		wantID   string     // the tenant answered, when not an error
		wantCode codes.Code // OK, NOT_FOUND, UNAVAILABLE (behind)
		have     int64      // the version named, when behind
	}{
		{"moved to another tenant", func(r *fakeReplica) {
			r.set(makeTenant("globex", 2, host))
			r.setDoc(makeTenant("acme", 5, other))
		}, host, "globex", codes.OK, 0},
		{"another tenant, the region behind", func(r *fakeReplica) {
			r.set(makeTenant("globex", 2, host))
			r.setDoc(makeTenant("acme", 4, other))
		}, host, "", codes.Unavailable, 4},
		{"the tenant unknown to the region", func(r *fakeReplica) {
			r.set(makeTenant("globex", 2, host))
		}, host, "", codes.Unavailable, 0},
		{"released", func(r *fakeReplica) { r.setDoc(makeTenant("acme", 5, other)) }, host, "", codes.NotFound, 0},
		{"not found, the region behind", func(r *fakeReplica) { r.setDoc(makeTenant("acme", 3)) }, host, "", codes.Unavailable, 3},
		{"claimed", func(r *fakeReplica) { r.set(makeTenant("acme", 5, host)) }, host, "acme", codes.OK, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newFakeReplica()
			tc.setup(r)
			e := start(t, lookup.Config{Replica: r}, lookup.ServeOptions{})
			resp, md, err := lookupAtLeast(t, e, tc.hostname, "acme", 5)
			switch tc.wantCode {
			case codes.Unavailable:
				wantBehind(t, err, md, "acme", tc.have, 5)
			case codes.OK:
				if err != nil || resp.GetTenant().GetId() != tc.wantID {
					t.Fatalf("got %q, %v; want %s", resp.GetTenant().GetId(), err, tc.wantID)
				}
			default:
				if status.Code(err) != tc.wantCode {
					t.Fatalf("got %v, want %v", err, tc.wantCode)
				}
			}
		})
	}
}

// TestMinVersionNotFound: without tenant_id a NOT_FOUND has no version to
// compare, and is answered as it is.
func TestMinVersionNotFound(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	_, _, err := lookupAtLeast(t, e, host, "", 7)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("got %v, want NOT_FOUND", err)
	}
	if got := atLeastOutcomes(t, e); got["read"] != 1 {
		t.Errorf("outcomes = %v, want read 1", got)
	}
}

// TestMinVersionInvalid: a negative min_version or a malformed tenant_id is
// INVALID_ARGUMENT naming the field.
func TestMinVersionInvalid(t *testing.T) {
	t.Parallel()
	e := start(t, lookup.Config{}, lookup.ServeOptions{})
	for _, tc := range []struct {
		req   *tcsv1.LookupRequest
		field string
	}{
		{&tcsv1.LookupRequest{Hostname: host, MinVersion: -1}, "min_version"},
		{&tcsv1.LookupRequest{Hostname: host, MinVersion: 1, TenantId: "AB"}, "tenant_id"},
	} {
		_, err := e.client.Lookup(testwait.Context(t), tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("%v: %v, want INVALID_ARGUMENT naming %s", tc.req, err, tc.field)
		}
	}
	if got := atLeastOutcomes(t, e); got["failed"] != 2 {
		t.Errorf("outcomes = %v, want failed 2", got)
	}
}
