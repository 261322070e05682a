package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
)

// TestPublishThenApply runs the two commands one after the other against one
// data directory, as the embedded backends allow, and checks the change
// reached the region's replica.
func TestPublishThenApply(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := cmdutil.Data(dir)
	ctx := context.Background()
	store, err := bolt.Open(data.Catalog(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, storetest.NewTenant("acme", "acme.example.com"), "test"); err != nil {
		t.Fatal(err)
	}
	store.Close()

	noEnv := func(string) string { return "" }
	for _, args := range [][]string{
		{"publish", "--data", dir, "--drain"},
		{"apply", "--region", "eu-west-1", "--data", dir, "--drain"},
	} {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var stderr bytes.Buffer
		if err := run(ctx, args, noEnv, &bytes.Buffer{}, &stderr); err != nil {
			t.Fatalf("streamer %v: %v\n%s", args, err, stderr.String())
		}
		if ctx.Err() != nil {
			t.Fatalf("streamer %v did not drain in time\n%s", args, stderr.String())
		}
		cancel()
	}
	rep, err := boltreplica.Open(data.Replica("eu-west-1"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Close()
	got, err := rep.LookupHostname(ctx, "acme.example.com")
	if err != nil || got.ID != "acme" {
		t.Fatalf("replica lookup = %v, %v", got, err)
	}
}

func TestBadUsage(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"bogus"}, "unknown command"},
		{[]string{"apply", "--data", t.TempDir()}, "--region"},
		{[]string{"publish", "extra"}, "unexpected arguments"},
		{[]string{"publish", "--data", t.TempDir(), "--lease-duration", "0s"}, "--lease-duration 0s: want more than 0"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--concurrency", "0"}, "--concurrency 0: want at least 1"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--concurrency", "many"}, "invalid value \"many\" for flag -concurrency"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--feed-heartbeat", "-1s"}, "--feed-heartbeat -1s: want 0 (none) or more"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--feed-send-timeout", "0s"}, "--feed-send-timeout 0s: want more than 0"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--feed-max-pending", "0"}, "--feed-max-pending 0: want at least 1"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--feed-max-age", "-1s"}, "--feed-max-age -1s: want more than 0"},
		{[]string{"apply", "--data", t.TempDir(), "--region", "us-east-1", "--feed-senders", "0"}, "--feed-senders 0: want at least 1"},
	} {
		err := run(context.Background(), c.args, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("streamer %v = %v, want error containing %q", c.args, err, c.want)
		}
	}
	for key, val := range map[string]string{
		"TCS_APPLY_CONCURRENCY": "lots",
		"TCS_FEED_HEARTBEAT":    "often",
		"TCS_FEED_SEND_TIMEOUT": "2",
		"TCS_FEED_MAX_AGE":      "30",
		"TCS_FEED_MAX_PENDING":  "1e5",
		"TCS_FEED_SENDERS":      "four",
	} {
		badEnv := func(k string) string {
			if k == key {
				return val
			}
			return ""
		}
		err := run(context.Background(), []string{"apply", "--data", t.TempDir(), "--region", "us-east-1"}, badEnv, &bytes.Buffer{}, &bytes.Buffer{})
		if want := fmt.Sprintf("%s %q", key, val); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("streamer apply with %s=%s = %v, want an error naming it", key, val, err)
		}
	}
}
