package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testnet"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// TestFrozenDynamoDB runs the catalog on DynamoDB Local behind a proxy and
// freezes the proxy: writes answer 503 "outcome unknown" and reads 503
// within the deadline, /healthz stays 200 and /readyz turns 503; after the
// thaw the catalog serves again. Once with the catalog's store deadline
// shorter than the SDK's, once the other way round (the SDK's timeout
// error is mapped the same way).
func TestFrozenDynamoDB(t *testing.T) {
	emu := emulators.SharedAWS(t)
	ctx := context.Background()
	prefix := emulators.Name("frozen") // the catalog's table is <prefix>-catalog
	if err := catalogdynamo.CreateTable(ctx, emulators.SharedDynamoDBClient(t), prefix+"-catalog"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		args         []string
		storeTimeout time.Duration
		detail       string // what the problems' detail says
	}{
		{"store deadline first", []string{"--store-timeout", "1s"}, time.Second, "did not answer"},
		{"sdk deadline first", []string{"--store-timeout", "3s", "--aws-timeout", "1s", "--aws-header-timeout", "400ms"}, 3 * time.Second, "timed out on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testnet.NewFreezer(t, strings.TrimPrefix(emu.DynamoDB, "http://"))
			emu.Setenv(t)
			t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.URL())
			env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_READER_TOKEN": "dev-reader-token"}
			args := append([]string{"--addr", "127.0.0.1:0", "--backend", "aws", "--aws-prefix", prefix}, tc.args...)
			addr := startCatalog(t, args, func(k string) string {
				if v, ok := env[k]; ok {
					return v
				}
				return os.Getenv(k)
			})
			id := fmt.Sprintf("%s-%d", strings.ReplaceAll(tc.name, " ", "-"), time.Now().UnixNano())
			do := func(method, path, token, body string) (int, http.Header, map[string]any) {
				t.Helper()
				req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				if body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				var doc map[string]any
				_ = json.Unmarshal(b, &doc)
				return res.StatusCode, res.Header, doc
			}
			// Before the freeze, as a client should: a 503 (DynamoDB Local's
			// first calls can be slow) is retried; a 409 then means an
			// earlier attempt committed.
			for attempt := 1; ; attempt++ {
				code, _, doc := do("POST", "/v1/tenants", "dev-admin-token", `{"id":"`+id+`","hostnames":["`+id+`.example.com"]}`)
				if code == http.StatusCreated || code == http.StatusConflict && attempt > 1 {
					break
				}
				if code != http.StatusServiceUnavailable || attempt == 5 {
					t.Fatalf("create before the freeze: %d %v", code, doc)
				}
			}

			proxy.Freeze()
			for _, c := range []struct {
				method, path, token, body, problem string
			}{
				{"POST", "/v1/tenants", "dev-admin-token", `{"id":"` + id + `-2","hostnames":["` + id + `-2.example.com"]}`, "urn:tcs:problem:write_outcome_unknown"},
				{"GET", "/v1/tenants/" + id, "dev-reader-token", "", "urn:tcs:problem:store_timeout"},
				{"GET", "/v1/hostnames/" + id + ".example.com", "dev-reader-token", "", "urn:tcs:problem:store_timeout"},
			} {
				start := time.Now()
				code, header, doc := do(c.method, c.path, c.token, c.body)
				took := time.Since(start)
				t.Logf("%s %s with DynamoDB frozen: %d after %v: %v", c.method, c.path, code, took.Round(time.Millisecond), doc["detail"])
				if code != http.StatusServiceUnavailable || doc["type"] != c.problem || header.Get("Retry-After") == "" {
					t.Errorf("%s %s with DynamoDB frozen: %d %v (Retry-After %q), want 503 %s with Retry-After", c.method, c.path, code, doc, header.Get("Retry-After"), c.problem)
				}
				if detail, _ := doc["detail"].(string); !strings.Contains(detail, tc.detail) {
					t.Errorf("%s %s: detail %q does not say %q", c.method, c.path, detail, tc.detail)
				}
				if took > 5*tc.storeTimeout {
					t.Errorf("%s %s answered after %v; the store deadline is %v", c.method, c.path, took, tc.storeTimeout)
				}
			}
			if code, _, _ := do("GET", "/healthz", "", ""); code != http.StatusOK {
				t.Errorf("/healthz with DynamoDB frozen: %d, want 200", code)
			}
			if code, _, doc := do("GET", "/readyz", "", ""); code != http.StatusServiceUnavailable {
				t.Errorf("/readyz with DynamoDB frozen: %d %v, want 503", code, doc)
			}

			proxy.Thaw()
			if code, _, doc := do("GET", "/v1/tenants/"+id, "dev-reader-token", ""); code != http.StatusOK {
				t.Errorf("GET after the thaw: %d %v, want 200", code, doc)
			}
		})
	}
}

// startCatalog runs the catalog with args until the test ends and returns
// its address.
func startCatalog(t testing.TB, args []string, getenv func(string) string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- runWithReady(ctx, args, getenv, io.Discard, &stderr, ready) }()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("catalog: %v", err)
			}
		})
		return addr
	case err := <-done:
		cancel()
		t.Fatalf("catalog exited early: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("catalog did not start")
	}
	return ""
}

// TestMigrateLayoutFlag: catalog --migrate-layout on a table of the
// current layout moves nothing and says so, then exits.
func TestMigrateLayoutFlag(t *testing.T) {
	emu := emulators.SharedAWS(t)
	if err := catalogdynamo.CreateTable(context.Background(), emulators.SharedDynamoDBClient(t), "migrate-catalog"); err != nil {
		t.Fatal(err)
	}
	emu.Setenv(t)
	var out strings.Builder
	err := run(t.Context(), []string{"--backend", "aws", "--aws-prefix", "migrate", "--migrate-layout"}, os.Getenv, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "table migrate-catalog has the sharded layout (0 tenants moved)") {
		t.Fatalf("catalog --migrate-layout = %v, output %q", err, out.String())
	}
}
