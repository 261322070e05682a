package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
)

// TestReconcileOnce: a tenant lost from a region's replica is found by
// `streamer reconcile --once`, resynced through the outbox, and back in the
// region once publish and apply have run.
func TestReconcileOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := cmdutil.Data(dir)
	ctx := context.Background()
	store, err := bolt.Open(data.Catalog(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "globex", "initech"} {
		if _, err := store.Create(ctx, storetest.NewTenant(id), "test"); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	noEnv := func(string) string { return "" }
	streamer := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		if err := run(ctx, append(args, "--data", dir, "--metrics-addr", "none"), noEnv, &stdout, &stderr); err != nil {
			t.Fatalf("streamer %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}
	streamer("publish", "--drain")
	streamer("apply", "--region", "eu-west-1", "--drain")

	db, err := bbolt.Open(data.Replica("eu-west-1"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("docs")).Delete([]byte("acme")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out := streamer("reconcile", "--regions", "eu-west-1", "--once", "--interval", "20ms", "--settle", "100ms")
	if !strings.Contains(out, "drifted tenants found: 1;") || !strings.Contains(out, "resynced: eu-west-1 1") {
		t.Errorf("reconcile --once printed %q; want acme found and resynced to eu-west-1", out)
	}
	streamer("publish", "--drain")
	streamer("apply", "--region", "eu-west-1", "--drain")
	rep, err := boltreplica.Open(data.Replica("eu-west-1"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := rep.GetTenant(ctx, "acme")
	rep.Close()
	if err != nil || got.Version != 1 {
		t.Fatalf("eu-west-1 acme after reconcile, publish, apply: %v, %v; want version 1", got, err)
	}
	if out := streamer("reconcile", "--regions", "eu-west-1", "--once", "--interval", "20ms", "--settle", "100ms"); !strings.HasPrefix(out, "buckets differing: 0;") {
		t.Errorf("second reconcile --once printed %q, want no bucket differing", out)
	}
}

func TestReconcileBadUsage(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"reconcile", "--data", t.TempDir()}, "reconcile needs --regions"},
		{[]string{"reconcile", "--data", t.TempDir(), "--regions", "us-east-1,Not A Region"}, `--regions: "Not A Region"`},
		{[]string{"reconcile", "--data", t.TempDir(), "--regions", "us-east-1", "--settle", "0s"}, "--settle 0s"},
		{[]string{"reconcile", "--data", t.TempDir(), "--regions", "us-east-1", "--repair-rate", "0"}, "--repair-rate 0"},
		{[]string{"reconcile", "--data", t.TempDir(), "--regions", "us-east-1", "extra"}, "unexpected arguments"},
	} {
		err := run(context.Background(), c.args, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("streamer %v = %v, want error containing %q", c.args, err, c.want)
		}
	}
	badEnv := func(k string) string {
		if k == "TCS_RECONCILE_INTERVAL" {
			return "often"
		}
		return ""
	}
	err := run(context.Background(), []string{"reconcile", "--data", t.TempDir(), "--regions", "us-east-1"}, badEnv, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `TCS_RECONCILE_INTERVAL "often"`) {
		t.Errorf("streamer reconcile with TCS_RECONCILE_INTERVAL=often = %v, want an error naming it", err)
	}
	// reconcile sets tracing up (its resyncs are spans) as publish and
	// apply do: a bad OTEL_ value stops it at start.
	badSampler := func(k string) string {
		if k == "OTEL_TRACES_SAMPLER" {
			return "sometimes"
		}
		return ""
	}
	err = run(context.Background(), []string{"reconcile", "--data", t.TempDir(), "--regions", "us-east-1"}, badSampler, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `OTEL_TRACES_SAMPLER="sometimes"`) {
		t.Errorf("streamer reconcile with OTEL_TRACES_SAMPLER=sometimes = %v, want an error naming it", err)
	}
}
