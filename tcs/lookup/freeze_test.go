package lookup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// TestReplicaFreeze is issue 17's target for a lookup node: during a
// replica freeze, at least 99% of lookups of hostnames looked up in the
// previous minute are answered, with their age, and marked stale unless
// still fresh: tenants, unknown hostnames, and tenants a write invalidated
// just before the freeze (while fresh by their TTL). Here every one of them
// is.
func TestReplicaFreeze(t *testing.T) {
	t.Parallel()
	const (
		tenants  = 300
		unknown  = 100
		written  = 30 // tenants changed just before the freeze
		interval = 150 * time.Millisecond
	)
	replica := newFakeReplica()
	var hosts []string
	for i := range tenants {
		h := fmt.Sprintf("t%03d.example.com", i)
		replica.set(makeTenant(fmt.Sprintf("t%03d", i), 1, h))
		hosts = append(hosts, h)
	}
	for i := range unknown {
		hosts = append(hosts, fmt.Sprintf("unknown%03d.example.com", i))
	}
	e := start(t, lookup.Config{Replica: replica, Cache: cache.Options{ReadTimeout: 20 * time.Millisecond}}, lookup.ServeOptions{})
	ctx := testwait.Context(t)

	// A minute of traffic: each hostname looked up once, 150 ms apart.
	readAt := map[string]time.Time{}
	for _, h := range hosts {
		_, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h})
		if code := status.Code(err); code != codes.OK && code != codes.NotFound {
			t.Fatalf("Lookup(%s) before the freeze: %v", h, err)
		}
		readAt[h] = e.clock.Now()
		e.clock.Advance(interval)
	}
	// Writes just before the freeze, to tenants whose entries are still
	// fresh: the replica has the new versions, and the invalidations
	// arrive, but nobody reads them before it freezes.
	invalidated := map[string]bool{}
	for i := tenants - written; i < tenants; i++ {
		invalidated[hosts[i]] = true
		id := fmt.Sprintf("t%03d", i)
		replica.set(makeTenant(id, 2, hosts[i]))
		if err := e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: id, Version: 2, Hostnames: []string{hosts[i]}}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, "the invalidations", func() bool {
		return gather(t, e.srv.Registry())["tcs_lookup_invalidations_total"] == written
	})
	release := replica.block()
	defer release()
	e.clock.Advance(10 * time.Second)
	now := e.clock.Now()
	readsBefore := replica.calls.Load()

	answered := 0
	check := func(h string, code codes.Code, tenantID string, version int64, stale bool, age time.Duration) {
		t.Helper()
		i := len(h) // unknown hostnames are longer
		wantCode, wantID, wantVersion := codes.OK, "", int64(1)
		if i == len("t000.example.com") {
			wantID = h[:4]
		} else {
			wantCode = codes.NotFound
		}
		wantStale := wantCode == codes.NotFound || invalidated[h] || now.Sub(readAt[h]) >= cache.DefaultTTL
		ok := code == wantCode && tenantID == wantID && stale == wantStale && age == now.Sub(readAt[h])
		if ok && wantCode == codes.OK && version != wantVersion {
			ok = false
		}
		if !ok {
			t.Errorf("%s during the freeze: %v %s@%d stale %v age %v; want %v %s@%d, stale %v, %v old",
				h, code, tenantID, version, stale, age, wantCode, wantID, wantVersion, wantStale, now.Sub(readAt[h]))
			return
		}
		answered++
	}
	for _, h := range hosts {
		var trailer metadata.MD
		res, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h}, grpc.Trailer(&trailer))
		code := status.Code(err)
		stale, age := res.GetStale(), res.GetAge().AsDuration()
		if code == codes.NotFound {
			stale = len(trailer.Get(lookup.TrailerStale)) == 1 && trailer.Get(lookup.TrailerStale)[0] == "true"
			if v := trailer.Get(lookup.TrailerAge); len(v) == 1 {
				age, _ = time.ParseDuration(v[0])
			}
		}
		check(h, code, res.GetTenant().GetId(), res.GetTenant().GetVersion(), stale, age)
	}
	for i := 0; i < len(hosts); i += lookup.MaxBatch {
		batch, err := e.client.BatchLookup(ctx, &tcsv1.BatchLookupRequest{Hostnames: hosts[i:min(i+lookup.MaxBatch, len(hosts))]})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range batch.GetResults() {
			check(r.GetHostname(), codes.Code(r.GetCode()), r.GetTenant().GetId(), r.GetTenant().GetVersion(), r.GetStale(), r.GetAge().AsDuration())
		}
	}
	total := 2 * len(hosts)
	t.Logf("answered %d of %d lookups during the freeze (%.1f%%), each with its age, stale-marked unless fresh", answered, total, 100*float64(answered)/float64(total))
	if answered*100 < total*99 {
		t.Errorf("answered %d of %d lookups during the freeze, want at least 99%%", answered, total)
	}
	// Once the replica counts as failing, lookups do not wait for reads:
	// only one probe at a time reads it.
	if reads := replica.calls.Load() - readsBefore; reads > int64(total/10) {
		t.Errorf("%d replica reads for %d lookups during the freeze: the failing replica was not short-circuited", reads, total)
	}
	stale := gather(t, e.srv.Registry())
	t.Logf("%v stale answers, %v of them without waiting for a read", stale["tcs_lookup_cache_stale_serves_total"], stale["tcs_lookup_cache_stale_at_once_total"])

	// The replica thaws: once a probe (which lookups start) has seen it,
	// the written tenants' new versions are read.
	release()
	testwait.For(t, "the replica to stop counting as failing", func() bool {
		_, _ = e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: hosts[0]})
		return gather(t, e.srv.Registry())["tcs_lookup_cache_replica_failing"] == 0
	})
	res, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: hosts[tenants-1]})
	if err != nil || res.GetStale() || res.GetTenant().GetVersion() != 2 {
		t.Errorf("after the freeze: %v, %v; want version 2, not stale", res, err)
	}
}

// TestFallbackReplica: with a fallback replica configured, a miss whose
// replica read fails is answered from it, marked stale, and not cached.
func TestFallbackReplica(t *testing.T) {
	t.Parallel()
	fallback := newFakeReplica(makeTenant("acme", 4, host))
	replica := newFakeReplica()
	replica.setErr(context.DeadlineExceeded)
	e := start(t, lookup.Config{Replica: replica, Cache: cache.Options{Fallback: fallback}}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	for range 2 {
		res, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
		if err != nil || !res.GetStale() || res.GetTenant().GetVersion() != 4 {
			t.Fatalf("Lookup = %v, %v; want version 4 from the fallback, stale", res, err)
		}
	}
	if n := fallback.calls.Load(); n != 2 {
		t.Errorf("fallback reads = %d, want 2 (its answers are not cached)", n)
	}
	if got := gather(t, e.srv.Registry())[`tcs_lookup_cache_fallback_reads_total{result="served"}`]; got != 2 {
		t.Errorf(`tcs_lookup_cache_fallback_reads_total{result="served"} = %v, want 2`, got)
	}
}
