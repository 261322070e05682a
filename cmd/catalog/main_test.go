package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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

	body := `{"id":"acme","hostnames":["acme.example.com","www.acme.example.com"]}`
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/tenants", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer dev-admin-token")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", res.StatusCode, b)
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/v1/hostnames/www.acme.example.com", nil)
	req.Header.Set("Authorization", "Bearer dev-reader-token")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("lookup: %d", res.StatusCode)
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
