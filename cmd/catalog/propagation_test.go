package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

const testScanToken = "test-scan-token-0123456789"

// awsNode is a real lookup server that serves ReplicaAdmin to the scan
// token and heartbeats into the nodes table, as cmd/tcs --backend aws does.
type awsNode struct {
	propagation.Node
	rep *boltreplica.Replica
	// stop ends its heartbeats (removing its item) and its server.
	stop func()
}

// awsTables creates a catalog table and a nodes table under a fresh prefix
// named after name on the shared DynamoDB Local, and returns the prefix and
// a node registry on the nodes table.
func awsTables(ctx context.Context, t *testing.T, name string) (string, *dynamonodes.Registry) {
	t.Helper()
	db := emulators.SharedDynamoDBClient(t)
	prefix := emulators.Name(name)
	if err := catalogdynamo.CreateTable(ctx, db, prefix+"-catalog"); err != nil {
		t.Fatal(err)
	}
	if err := dynamonodes.CreateTable(ctx, db, dynamonodes.TableName(prefix)); err != nil {
		t.Fatal(err)
	}
	return prefix, dynamonodes.New(db, dynamonodes.TableName(prefix), 0, nil)
}

func startAWSNode(t *testing.T, reg *dynamonodes.Registry, region, id string) *awsNode {
	t.Helper()
	rep, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	set, err := auth.Parse(strings.NewReader(auth.Line(auth.ReplicaScan, testScanToken, "catalog")), "test")
	if err != nil {
		t.Fatal(err)
	}
	srv := lookup.New(lookup.Config{Region: region, Replica: rep, ReplicaAdmin: true, FeedTimeout: -1})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &awsNode{Node: propagation.Node{Region: region, ID: id, Addr: lis.Addr().String()}, rep: rep}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = srv.Serve(ctx, lis, lookup.ServeOptions{Auth: auth.Static(set), ShutdownTimeout: time.Second})
	})
	wg.Go(func() {
		reg.Run(ctx, n.Node, 200*time.Millisecond, func(err error) { t.Errorf("heartbeat of %s: %v", n.Node, err) })
	})
	var once sync.Once
	n.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(n.stop)
	return n
}

// propagationAnswer is what the test reads of GET /v1/tenants/{id}/propagation.
type propagationAnswer struct {
	Done    bool     `json:"done"`
	Lagging []string `json:"lagging"`
	Type    string   `json:"type"` // of a problem
	Regions []struct {
		Region string `json:"region"`
		Nodes  []struct {
			Node string `json:"node"`
		} `json:"nodes"`
	} `json:"regions"`
}

func getPropagation(t *testing.T, addr, query string) (int, propagationAnswer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/tenants/acme/propagation?"+query, nil)
	req.Header.Set("Authorization", "Bearer dev-reader-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var a propagationAnswer
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatalf("GET propagation?%s: %d, body not JSON: %v", query, res.StatusCode, err)
	}
	return res.StatusCode, a
}

// TestPropagationAWS: catalog --backend aws on DynamoDB Local with the
// scan token finds the tcs nodes in <prefix>-nodes and asks them over
// ReplicaAdmin: a node whose replica lacks the version is named, the wait
// ends done once it has it, and a node that stops cleanly leaves its
// region with no live node (--propagation-regions lists it). Without
// TCS_SCAN_TOKEN the route answers 501.
func TestPropagationAWS(t *testing.T) {
	emu := emulators.SharedAWS(t)
	emu.Setenv(t)
	ctx := testwait.Context(t)
	prefix, reg := awsTables(ctx, t, "prop")
	a := startAWSNode(t, reg, "us-east-1", "node-a")
	b := startAWSNode(t, reg, "eu-west-1", "node-b")
	if _, err := a.rep.Apply(ctx, replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}

	env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_READER_TOKEN": "dev-reader-token", "TCS_SCAN_TOKEN": testScanToken}
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	args := []string{"--addr", "127.0.0.1:0", "--backend", "aws", "--aws-prefix", prefix, "--propagation-regions", "us-east-1,eu-west-1"}
	addr := startCatalog(t, args, getenv)

	code, got := getPropagation(t, addr, "version=1")
	if code != http.StatusOK || got.Done || !slices.ContainsFunc(got.Lagging, func(l string) bool { return strings.HasPrefix(l, "eu-west-1/node-b: replica at version 0") }) {
		t.Fatalf("before node-b has version 1: %d %+v; want 200, not done, eu-west-1/node-b named", code, got)
	}
	if slices.ContainsFunc(got.Lagging, func(l string) bool { return strings.HasPrefix(l, "us-east-1") }) {
		t.Errorf("us-east-1 has version 1 but lags: %q", got.Lagging)
	}

	if _, err := b.rep.Apply(ctx, replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)); err != nil {
		t.Fatal(err)
	}
	if code, got = getPropagation(t, addr, "version=1&wait=10s"); code != http.StatusOK || !got.Done || len(got.Lagging) != 0 || len(got.Regions) != 2 {
		t.Fatalf("after node-b has version 1: %d %+v; want 200, done in two regions", code, got)
	}

	// A node that stops cleanly deletes its item: its region has no live
	// node (not a dropped one) and is not done.
	// (The catalog reads the table at most once a second: wait for it.)
	b.stop()
	testwait.For(t, "eu-west-1 to have no live node once node-b stopped", func() bool {
		code, got = getPropagation(t, addr, "version=1")
		return code == http.StatusOK && !got.Done && slices.Contains(got.Lagging, "eu-west-1: no live node")
	})

	// Without the scan token the catalog cannot ask the nodes: 501.
	env["TCS_SCAN_TOKEN"] = "" // not deleted: make test exports one, which getenv would find
	bare := startCatalog(t, args, getenv)
	if code, got := getPropagation(t, bare, "version=1"); code != http.StatusNotImplemented || got.Type != "urn:tcs:problem:not_configured" {
		t.Errorf("without TCS_SCAN_TOKEN: %d %+v; want 501 not_configured", code, got)
	}
}

// TestNodeDialOptionsCAFile: a --nodes-ca-file that cannot be read, or
// holds no certificate, is refused naming the flag.
func TestNodeDialOptionsCAFile(t *testing.T) {
	t.Parallel()
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"/nonexistent/ca.pem": "--nodes-ca-file: open /nonexistent/ca.pem",
		empty:                 "--nodes-ca-file " + empty + ": no PEM certificates",
	} {
		if _, err := nodeDialOptions(NodeTLS{CAFile: file}, testScanToken); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("nodeDialOptions(CAFile %s) = %v, want an error containing %q", file, err, want)
		}
	}
}
