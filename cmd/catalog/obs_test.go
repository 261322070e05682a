package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/cmd/internal/obstest"
	"github.com/tcs-dev/tcs/internal/testio"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	// --version needs nothing else: no credentials, no store.
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	obstest.CheckVersion(t, "catalog", stdout.String())
}

// The metrics port serves /metrics (every series labelled
// component=catalog, tcs_build_info among them), /healthz, /readyz (the
// store's ping) and 404 elsewhere; scrapes and probes are logged at debug
// only, so absent at the default level.
func TestMetricsPort(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_READER_TOKEN": "dev-reader-token"}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr testio.SyncBuffer
	go func() {
		done <- runWithReady(ctx, []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--data", t.TempDir()},
			func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run exited early: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("catalog did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	res, err := http.Get("http://" + addr + "/v1/tenants") // one request on the API, for its metrics
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if id := res.Header.Get("X-Request-Id"); len(id) != 32 {
		t.Errorf("X-Request-Id %q, want a generated 32-character id", id)
	}
	maddr := obstest.MetricsAddr(t, stderr.String())
	obstest.CheckSurface(t, maddr, map[string]string{"component": "catalog"}, http.StatusOK,
		"tcs_catalog_http_requests_total", "tcs_catalog_store_calls_in_flight")
	if strings.Contains(stderr.String(), "/healthz") || strings.Contains(stderr.String(), "/metrics") {
		t.Errorf("probes logged at the default level (info):\n%s", stderr.String())
	}
}

// At --log-level debug the scrapes and probes are logged.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		level string
		env   string
		debug bool
	}{{"debug", "", true}, {"", "debug", true}, {"info", "debug", false}, {"warn", "", false}} {
		t.Run(c.level+"/"+c.env, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_LOG_LEVEL": c.env}
			args := []string{"--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--data", t.TempDir()}
			if c.level != "" {
				args = append(args, "--log-level", c.level)
			}
			ready := make(chan string, 1)
			done := make(chan error, 1)
			var stderr testio.SyncBuffer
			go func() {
				done <- runWithReady(ctx, args, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr, ready)
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("run exited early: %v\n%s", err, stderr.String())
			}
			if c.level == "warn" {
				// No info line at warn, so no "metrics listening" line: the
				// default scrape is all that can be checked.
				cancel()
				<-done
				if strings.Contains(stderr.String(), "level=INFO") {
					t.Errorf("info lines at --log-level warn:\n%s", stderr.String())
				}
				return
			}
			maddr := obstest.MetricsAddr(t, stderr.String())
			obstest.Get(t, maddr, "/healthz")
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(stderr.String(), `level=DEBUG msg="metrics port request" method=GET path=/healthz status=200`)
			if got != c.debug {
				t.Errorf("debug probe line present = %v, want %v; logs:\n%s", got, c.debug, stderr.String())
			}
		})
	}
	err := run(context.Background(), []string{"--log-level", "loud"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `--log-level "loud": want debug, info, warn or error`) {
		t.Errorf("--log-level loud: %v, want an error naming the flag and the choices", err)
	}
}
