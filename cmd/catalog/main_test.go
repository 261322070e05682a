package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
)

func TestRunServesAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_READER_TOKEN": "dev-reader-token"}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- runWithReady(ctx, []string{"--addr", "127.0.0.1:0", "--data", t.TempDir()}, func(k string) string { return env[k] }, &stdout, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run exited early: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("catalog did not start")
	}

	admin, err := httpclient.New("http://"+addr, httpclient.WithToken("dev-admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com","www.acme.example.com"]}`)); err != nil {
		t.Fatalf("create: %v", err)
	}
	reader, err := httpclient.New("http://"+addr, httpclient.WithToken("dev-reader-token"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := reader.LookupHostname(ctx, "www.acme.example.com"); err != nil || got.ID != "acme" {
		t.Fatalf("lookup: %v, %v", got, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("catalog did not stop")
	}
	if !strings.Contains(stdout.String(), "admin REST API on http://"+addr) {
		t.Errorf("no banner in stdout: %q", stdout.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		env  func(string) string
		want string
	}{
		{"no tokens", []string{"--addr", "127.0.0.1:0", "--data", t.TempDir()}, noEnv, "no credentials configured"},
		{"bad log format", []string{"--log-format", "xml"}, noEnv, "--log-format"},
		{"stray argument", []string{"serve"}, noEnv, "unexpected arguments"},
		{"missing tokens file", []string{"--tokens-file", "/nonexistent/tokens"}, noEnv, "credentials file"},
		{"zero store timeout", []string{"--store-timeout", "0s"}, noEnv, "--store-timeout 0s"},
		{"migrate the embedded catalog", []string{"--migrate-layout", "--data", t.TempDir()}, noEnv, "nothing to migrate"},
		{"bad store timeout env", nil, func(k string) string {
			if k == "TCS_STORE_TIMEOUT" {
				return "5"
			}
			return ""
		}, `TCS_STORE_TIMEOUT "5"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := run(context.Background(), c.args, c.env, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("run(%v) = %v, want error containing %q", c.args, err, c.want)
			}
		})
	}
}
