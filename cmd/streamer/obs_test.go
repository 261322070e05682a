package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"publish", "--version"}, {"apply", "--version"}} {
		var stdout bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &stdout, io.Discard); err != nil {
			t.Fatalf("streamer %v: %v", args, err)
		}
		obstest.CheckVersion(t, "streamer", stdout.String())
	}
}

// Each command's metrics port labels every series with its component, and
// apply's with its region too.
func TestMetricsLabels(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noEnv := func(string) string { return "" }
	// One after the other: each holds a data file the other needs.
	for _, c := range []struct {
		args   []string
		labels map[string]string
		metric string
	}{
		{[]string{"publish", "--data", dir}, map[string]string{"component": "publish"}, "tcs_publish_last_read_timestamp_seconds"},
		{[]string{"apply", "--region", "eu-west-1", "--data", dir}, map[string]string{"component": "apply", "region": "eu-west-1"}, "tcs_apply_lag_seconds"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		var stderr testio.SyncBuffer
		go func() {
			done <- runWithReady(ctx, append(c.args, "--metrics-addr", "127.0.0.1:0"), noEnv, io.Discard, &stderr, ready)
		}()
		var addr string
		select {
		case addr = <-ready:
		case err := <-done:
			t.Fatalf("streamer %v: %v\n%s", c.args, err, stderr.String())
		}
		testwait.For(t, c.args[0]+" ready", func() bool {
			code, _ := obstest.Get(t, addr, "/readyz")
			return code == http.StatusOK
		})
		obstest.CheckSurface(t, addr, c.labels, http.StatusOK, c.metric)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("streamer %v: %v\n%s", c.args, err, stderr.String())
		}
	}
}
