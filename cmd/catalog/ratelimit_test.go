package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRateLimitFlags: --rate-limit bounds one caller (bursts of twice the
// rate, then 429 with Retry-After); --address-rate-limit bounds requests
// without credentials; bad values are refused at start.
func TestRateLimitFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_READER_TOKEN": "dev-reader-token"}
	addr := startCatalog(t, []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--rate-limit", "1", "--address-rate-limit", "2"},
		func(k string) string { return env[k] })
	get := func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	// The rates refill slowly (1 and 2 a second), so within this test
	// only the bursts count: 2 for the caller, 4 for the address.
	for i := range 2 {
		if res := get("/v1/tenants", "dev-reader-token"); res.StatusCode != http.StatusOK {
			t.Fatalf("caller request %d: %d, want 200", i+1, res.StatusCode)
		}
	}
	res := get("/v1/tenants", "dev-reader-token")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("caller request 3: %d with Retry-After %q, want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Another caller has a budget of its own.
	if res := get("/v1/tenants", "dev-admin-token"); res.StatusCode != http.StatusOK {
		t.Fatalf("another caller: %d, want 200", res.StatusCode)
	}
	limited := false
	for range 6 {
		if get("/healthz", "").StatusCode == http.StatusTooManyRequests {
			limited = true
		}
	}
	if !limited {
		t.Error("6 requests without credentials at --address-rate-limit 2: none got 429")
	}

	for _, args := range [][]string{{"--rate-limit", "-1"}, {"--address-rate-limit", "-5"}} {
		err := run(context.Background(), args, func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "want 0 (no limit) or more") {
			t.Errorf("run(%v) = %v, want a refusal", args, err)
		}
	}
	err := run(context.Background(), nil, func(k string) string {
		if k == "TCS_RATE_LIMIT" {
			return "fast"
		}
		return env[k]
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `TCS_RATE_LIMIT "fast"`) {
		t.Errorf("TCS_RATE_LIMIT=fast: %v, want an error naming it", err)
	}
}
