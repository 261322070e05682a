package lookup_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

var (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

// healthOf is the server's gRPC health for service, by Check.
func healthOf(t *testing.T, e *env, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(e.conn).Check(testwait.Context(t), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health Check %q: %v", service, err)
	}
	return resp.GetStatus()
}

// wantHealth checks that Check reports want for the whole server and for
// the TenantContextService.
func wantHealth(t *testing.T, e *env, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for _, svc := range []string{"", serviceName} {
		if got := healthOf(t, e, svc); got != want {
			t.Fatalf("health of %q = %v, want %v (Ready: %v)", svc, got, want, e.srv.Ready())
		}
	}
}

// healthWatch is a grpc.health.v1 Watch stream's statuses.
type healthWatch chan healthpb.HealthCheckResponse_ServingStatus

func watchHealth(t *testing.T, e *env, service string) healthWatch {
	t.Helper()
	stream, err := healthpb.NewHealthClient(e.conn).Watch(testwait.Context(t), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(healthWatch, 100)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				close(ch)
				return
			}
			ch <- m.GetStatus()
		}
	}()
	return ch
}

// until reads statuses until want arrives.
func (w healthWatch) until(t *testing.T, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got, ok := <-w:
			if !ok {
				t.Fatalf("health Watch ended before %v", want)
			}
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("health Watch did not report %v", want)
		}
	}
}

// TestHealthReplicaUnreadable: a replica unreadable for longer than
// max-stale makes the node NOT_SERVING (Check and Watch, for the whole
// server and the service; tcs_lookup_ready 0), not before; its probes find
// it back without any lookup, and it is SERVING again. Liveness holds
// throughout: a dependency down is not a wedged process.
func TestHealthReplicaUnreadable(t *testing.T) {
	t.Parallel()
	var logs testio.SyncBuffer
	rep := newFakeReplica(makeTenant("acme", 1, host))
	e := start(t, lookup.Config{
		Replica:        rep,
		Cache:          cache.Options{MaxStale: time.Minute},
		HealthInterval: 5 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(&logs, nil)),
	}, lookup.ServeOptions{})
	whole, svc := watchHealth(t, e, ""), watchHealth(t, e, serviceName)
	whole.until(t, serving)
	svc.until(t, serving)
	ctx := testwait.Context(t)
	if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}

	rep.setErr(errors.New("replica table unreachable"))
	e.clock.Advance(time.Hour) // the cached answer expires; stale answers are older than max-stale
	for range 3 {
		_, _ = e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "nobody.example.com"})
	}
	// Unreadable, but not yet for max-stale: still serving.
	e.clock.Advance(59 * time.Second)
	time.Sleep(20 * time.Millisecond) // several health loop turns; nothing must change
	wantHealth(t, e, serving)
	if err := e.srv.Ready(); err != nil {
		t.Fatalf("Ready within max-stale: %v", err)
	}

	e.clock.Advance(2 * time.Second)
	whole.until(t, notServing)
	svc.until(t, notServing)
	wantHealth(t, e, notServing)
	if err := e.srv.Ready(); err == nil || !strings.Contains(err.Error(), "unreadable") || !strings.Contains(err.Error(), "max-stale (1m0s)") {
		t.Fatalf("Ready = %v, want the replica unreadable past max-stale (1m0s)", err)
	}
	if v := gather(t, e.srv.Registry())["tcs_lookup_ready"]; v != 0 {
		t.Fatalf("tcs_lookup_ready = %v, want 0", v)
	}
	if err := e.srv.Live(); err != nil {
		t.Fatalf("Live with the replica down: %v, want nil", err)
	}

	reads := rep.calls.Load()
	rep.setErr(nil) // healed; no lookup comes: the probe finds out
	whole.until(t, serving)
	svc.until(t, serving)
	wantHealth(t, e, serving)
	if rep.calls.Load() == reads {
		t.Fatal("no replica read found the replica back")
	}
	if v := gather(t, e.srv.Registry())["tcs_lookup_ready"]; v != 1 {
		t.Fatalf("tcs_lookup_ready = %v, want 1", v)
	}
	if n := logs.Count("lookup server not ready (NOT_SERVING)"); n != 1 {
		t.Fatalf("%d not-ready warnings, want 1; logs:\n%s", n, logs.String())
	}
}

// writeHotKeys writes a hot-keys file of hostnames and returns its path.
func writeHotKeys(t *testing.T, hostnames ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hot-keys")
	if err := cache.WriteHotKeys(path, hostnames); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHealthStartup: a node is NOT_SERVING until its feed has delivered a
// message (heartbeat) and then until its warm-up from the hot-keys file
// has read the replica (blocked here); then SERVING, and lookups of the
// warmed hostnames are hits that read nothing.
func TestHealthStartup(t *testing.T) {
	t.Parallel()
	hosts := []string{"a.example.com", "b.example.com", "c.example.com"}
	rep := newFakeReplica(makeTenant("a", 1, hosts[0]), makeTenant("b", 1, hosts[1]), makeTenant("c", 1, hosts[2]))
	release := rep.block()
	t.Cleanup(release)
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{
		Replica:        rep,
		Feed:           feed,
		FeedTimeout:    time.Hour,
		HotKeysFile:    writeHotKeys(t, hosts...),
		HealthInterval: 5 * time.Millisecond,
		Cache:          cache.Options{ReadTimeout: time.Minute},
	}, lookup.ServeOptions{})
	w := watchHealth(t, e, "")
	sub := <-feed.subscribed
	w.until(t, notServing)
	wantHealth(t, e, notServing)
	if err := e.srv.Ready(); err == nil || !strings.Contains(err.Error(), "feed is not subscribed") {
		t.Fatalf("Ready before the feed delivered = %v, want not subscribed", err)
	}
	if n := rep.calls.Load(); n != 0 {
		t.Fatalf("%d replica reads before the feed is subscribed, want none (they could miss invalidations)", n)
	}

	sub.deliver(tcs.Invalidation{CommittedAt: e.clock.Now()}) // a heartbeat
	testwait.For(t, "the warm-up's reads", func() bool { return rep.calls.Load() == 3 })
	wantHealth(t, e, notServing)
	if err := e.srv.Ready(); err == nil || !strings.Contains(err.Error(), "warming") {
		t.Fatalf("Ready during the warm-up = %v, want warming", err)
	}

	release()
	w.until(t, serving)
	wantHealth(t, e, serving)
	if v := gather(t, e.srv.Registry())["tcs_lookup_warmup_entries_loaded"]; v != 3 {
		t.Fatalf("tcs_lookup_warmup_entries_loaded = %v, want 3", v)
	}
	ctx := testwait.Context(t)
	for _, h := range hosts {
		resp, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h})
		if err != nil || resp.GetStale() {
			t.Fatalf("Lookup %s: %v, %v", h, resp, err)
		}
	}
	if n := rep.calls.Load(); n != 3 {
		t.Fatalf("%d replica reads, want 3 (the warm-up's; lookups of warmed hostnames are hits)", n)
	}
	if s := e.srv.Cache().Stats(); s.PositiveHits != 3 || s.Misses != 0 {
		t.Fatalf("cache stats %+v, want 3 hits, no miss", s)
	}
}

// TestHealthStartupFeedSilent: a feed that delivers nothing for the feed
// timeout after the start counts as down, and the node becomes ready all
// the same (serving with shortened TTLs) rather than staying out of
// service for as long as the appliers are.
func TestHealthStartupFeedSilent(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{Feed: feed, FeedTimeout: 15 * time.Second, HealthInterval: 5 * time.Millisecond}, lookup.ServeOptions{})
	<-feed.subscribed
	w := watchHealth(t, e, "")
	w.until(t, notServing)
	e.clock.Advance(14 * time.Second)
	time.Sleep(20 * time.Millisecond) // several health loop turns; nothing must change
	wantHealth(t, e, notServing)
	e.clock.Advance(2 * time.Second)
	w.until(t, serving)
	if up := gather(t, e.srv.Registry())["tcs_lookup_feed_up"]; up != 0 {
		t.Fatalf("tcs_lookup_feed_up = %v, want 0 (the feed counts as down)", up)
	}
}

// TestHotKeysCarryOver: a node that stops cleanly leaves its most used
// hostnames in its hot-keys file; the next node started with that file
// answers them from its cache at once.
func TestHotKeysCarryOver(t *testing.T) {
	t.Parallel()
	var tenants []string
	rep := newFakeReplica()
	for i := range 20 {
		h := fmt.Sprintf("t%02d.example.com", i)
		rep.set(makeTenant(fmt.Sprintf("t%02d", i), 1, h))
		tenants = append(tenants, h)
	}
	path := filepath.Join(t.TempDir(), "hot-keys")
	first := start(t, lookup.Config{Replica: rep, HotKeysFile: path, HotKeysInterval: time.Hour}, lookup.ServeOptions{})
	ctx := testwait.Context(t)
	for _, h := range tenants {
		if _, err := first.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	saved, err := cache.ReadHotKeys(path, 0)
	if err != nil {
		t.Fatalf("after a clean stop: %v", err)
	}
	if len(saved) != len(tenants) {
		t.Fatalf("hot-keys file holds %d hostnames, want %d", len(saved), len(tenants))
	}

	reads := rep.calls.Load()
	second := start(t, lookup.Config{Replica: rep, HotKeysFile: path}, lookup.ServeOptions{})
	testwait.For(t, "the second node to be ready", func() bool { return second.srv.Ready() == nil })
	warmReads := rep.calls.Load() - reads
	for _, h := range tenants {
		if _, err := second.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: h}); err != nil {
			t.Fatal(err)
		}
	}
	if n := rep.calls.Load() - reads; warmReads != int64(len(tenants)) || n != warmReads {
		t.Fatalf("second node: %d warm-up reads, %d reads in all; want %d, all of them the warm-up's", warmReads, n, len(tenants))
	}
}

// TestHotKeysWrittenPeriodically: the hot-keys file is rewritten every
// HotKeysInterval while the node runs.
func TestHotKeysWrittenPeriodically(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hot-keys")
	e := start(t, lookup.Config{Replica: newFakeReplica(makeTenant("acme", 1, host)), HotKeysFile: path, HotKeysInterval: 10 * time.Millisecond}, lookup.ServeOptions{})
	if _, err := e.client.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: host}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, "the hot-keys file to list "+host, func() bool {
		got, err := cache.ReadHotKeys(path, 0)
		return err == nil && len(got) == 1 && got[0] == host
	})
}

// TestWarmupBadFile: a missing or corrupt hot-keys file is logged, naming
// the file, and the node starts cold and becomes ready; its clean stop
// writes a usable file.
func TestWarmupBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt")
	if err := os.WriteFile(corrupt, []byte("# tcs hot keys v1\nok.example.com\nNOT A HOSTNAME\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), `level=INFO msg="no hot-keys file: starting with a cold cache"`},
		{"corrupt", corrupt, `level=WARN msg="hot-keys file unusable: starting with a cold cache"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs testio.SyncBuffer
			rep := newFakeReplica()
			e := start(t, lookup.Config{Replica: rep, HotKeysFile: tc.path, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, lookup.ServeOptions{})
			testwait.For(t, "the node to be ready", func() bool { return e.srv.Ready() == nil })
			if !strings.Contains(logs.String(), tc.want) || !strings.Contains(logs.String(), "hot-keys file "+tc.path) {
				t.Fatalf("logs do not say %q naming %s:\n%s", tc.want, tc.path, logs.String())
			}
			if n := rep.calls.Load(); n != 0 {
				t.Fatalf("%d replica reads, want none (a cold start)", n)
			}
			if err := e.stop(); err != nil {
				t.Fatal(err)
			}
			if _, err := cache.ReadHotKeys(tc.path, 0); err != nil {
				t.Fatalf("after a clean stop the hot-keys file is still unusable: %v", err)
			}
		})
	}
}

// TestWarmupTimeout: a warm-up whose reads never return ends after
// WarmTimeout, and the node becomes ready, logging why.
func TestWarmupTimeout(t *testing.T) {
	t.Parallel()
	var logs testio.SyncBuffer
	rep := newFakeReplica()
	t.Cleanup(rep.block())
	began := time.Now()
	e := start(t, lookup.Config{
		Replica:        rep,
		HotKeysFile:    writeHotKeys(t, "a.example.com", "b.example.com"),
		WarmTimeout:    200 * time.Millisecond,
		HealthInterval: 5 * time.Millisecond,
		Cache:          cache.Options{ReadTimeout: time.Hour},
		Logger:         slog.New(slog.NewTextHandler(&logs, nil)),
	}, lookup.ServeOptions{})
	w := watchHealth(t, e, serviceName)
	w.until(t, serving)
	if d := time.Since(began); d < 200*time.Millisecond {
		t.Fatalf("ready after %v, before the warm timeout (200ms) with reads blocked", d)
	}
	if !strings.Contains(logs.String(), "cache warm-up cut short by the warm timeout") {
		t.Fatalf("no warm timeout in the logs:\n%s", logs.String())
	}
	if d := gather(t, e.srv.Registry())["tcs_lookup_warmup_duration_seconds"]; d < 0.2 {
		t.Fatalf("tcs_lookup_warmup_duration_seconds = %v, want at least 0.2", d)
	}
}

// TestLiveWedged: Live fails when the feed goroutine is stuck on one
// message (here, on the lock a deadlock would hold) for LiveTimeout, and
// holds again once it moves.
func TestLiveWedged(t *testing.T) {
	t.Parallel()
	feed := &scriptedFeed{subscribed: make(chan *subscription, 10)}
	e := start(t, lookup.Config{Feed: feed, FeedTimeout: time.Hour, HealthInterval: 5 * time.Millisecond, LiveTimeout: 50 * time.Millisecond}, lookup.ServeOptions{})
	sub := <-feed.subscribed
	sub.deliver(tcs.Invalidation{CommittedAt: e.clock.Now()})
	if err := e.srv.Live(); err != nil {
		t.Fatalf("Live: %v", err)
	}
	release := e.srv.HoldLock()
	delivered := make(chan struct{})
	go func() {
		sub.deliver(tcs.Invalidation{TenantID: "acme", Version: 2, Hostnames: []string{host}})
		close(delivered)
	}()
	testwait.For(t, "Live to fail", func() bool { return e.srv.Live() != nil })
	if err := e.srv.Live(); !strings.Contains(err.Error(), "wedged") {
		t.Errorf("Live = %v, want wedged", err)
	}
	release()
	<-delivered
	testwait.For(t, "Live to hold again", func() bool { return e.srv.Live() == nil })
}
