package sns_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// TestLookupServerDropsCachedAnswerOnBroadcast runs the region's pipeline
// end to end: the applier consumes an event from the embedded stream,
// applies it to a bbolt replica and broadcasts through SNS (with its
// heartbeats); a lookup server subscribed through its SQS queue drops the
// cached answer, which a one-hour TTL would otherwise have kept.
func TestLookupServerDropsCachedAnswerOnBroadcast(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "ap-southeast-2"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	replica, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	stream, err := boltlog.Open(filepath.Join(t.TempDir(), "stream.db"), boltlog.Options{PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stream.Close() })
	applier := streamer.NewApplier(streamer.ApplierConfig{
		Region:      region,
		Stream:      stream,
		Replica:     replica,
		Broadcaster: openBroadcaster(t, config(t, prefix, region, topic, "applier")),
	})
	applyCtx, stopApplier := context.WithCancel(context.Background())
	applied := make(chan error, 1)
	go func() { applied <- applier.Run(applyCtx) }()
	t.Cleanup(func() {
		stopApplier()
		if err := <-applied; err != nil {
			t.Errorf("applier Run: %v", err)
		}
	})
	apply := func(version int64) {
		t.Helper()
		data, err := streamer.EncodeEvent(changeEvent("acme", version, "acme.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Append(testwait.Context(t), []streamer.Record{{PartitionKey: "acme", Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	apply(1)
	waitUntil(t, "the applier to apply version 1", func() bool {
		got, err := replica.GetTenant(testwait.Context(t), "acme")
		return err == nil && got.Version == 1
	})

	srv := lookup.New(lookup.Config{
		Region:  region,
		Replica: replica,
		Feed:    openFeed(t, config(t, prefix, region, topic, "lookup-1")),
		Cache:   cache.Options{TTL: time.Hour},
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		if qs := queues(t, c, prefix); len(qs) != 0 {
			t.Errorf("queues %v left after the server stopped", qs)
		}
	})
	// Run expires the cache once before subscribing, and the feed once
	// more when its queue is subscribed; after that, only an invalidation
	// can drop a cached answer within the hour.
	reg := srv.Registry()
	waitUntil(t, "the feed's start gap", func() bool { return counterValue(t, reg, "tcs_lookup_resyncs_total") == 2 })
	if subs := subscriptions(t, c, topic); len(subs) != 1 {
		t.Fatalf("subscriptions %v, want the server's queue", subs)
	}

	version := func() int64 {
		t.Helper()
		resp, err := srv.Lookup(testwait.Context(t), &tcsv1.LookupRequest{Hostname: "acme.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetTenant().GetVersion()
	}
	if v := version(); v != 1 {
		t.Fatalf("Lookup = version %d, want 1", v)
	}
	apply(2)
	waitUntil(t, "the invalidation to drop the cached answer", func() bool { return version() == 2 })
	if n := counterValue(t, reg, "tcs_lookup_invalidations_total"); n != 1 {
		t.Errorf("tcs_lookup_invalidations_total = %v, want 1", n)
	}
	if n := counterValue(t, reg, "tcs_lookup_resyncs_total"); n != 2 {
		t.Errorf("tcs_lookup_resyncs_total = %v, want 2: the answer must have been dropped by the invalidation, not a gap", n)
	}
}

// changeEvent returns the change event that puts tenant id at version, holding
// hostnames (each claimed once, at claim version 1).
func changeEvent(id string, version int64, hostnames ...string) *tenant.ChangeEvent {
	at := time.Date(2026, 1, 1, 0, 0, int(version), 0, time.UTC)
	ev := &tenant.ChangeEvent{
		TenantID: id,
		Version:  version,
		Tenant: &tenant.Tenant{
			ID:        id,
			Hostnames: hostnames,
			Status:    tenant.StatusActive,
			Products:  map[string]tenant.Product{"jira": {State: tenant.ProductActive, Users: 25, Edition: "premium"}},
			Database:  &tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: id, SecretRef: "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + id},
			Region:    "us-east-1",
			Version:   version,
			UpdatedAt: at,
			UpdatedBy: "sns-test",
		},
		CommittedAt: at,
	}
	for _, h := range hostnames {
		ev.Claims = append(ev.Claims, tenant.Claim{Hostname: h, Version: 1})
	}
	return ev
}
