package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/move"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testwait"
)

// feedingCatalog is the catalog's REST API that, after each write, applies
// the tenant as written to the replicas of the nodes not stalled — the
// stream's job, done by hand so that the test decides who lags.
type feedingCatalog struct {
	*httpclient.Client
	t     *testing.T
	mu    sync.Mutex
	nodes map[string]*awsNode
	stall func(node string, written *tenant.Tenant) bool
}

func (c *feedingCatalog) feed(doc *tenant.Tenant, only ...string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, n := range c.nodes {
		if len(only) > 0 && !slices.Contains(only, name) || len(only) == 0 && c.stall != nil && c.stall(name, doc) {
			continue
		}
		ev := &tenant.ChangeEvent{TenantID: doc.ID, Version: doc.Version, Tenant: doc, CommittedAt: doc.UpdatedAt,
			Claims: []tenant.Claim{{Hostname: doc.Hostnames[0], Version: 1}}}
		if _, err := n.rep.Apply(context.Background(), ev); err != nil {
			c.t.Errorf("apply %s@%d to %s: %v", doc.ID, doc.Version, name, err)
		}
	}
}

func (c *feedingCatalog) Replace(ctx context.Context, id string, ifMatch int64, doc json.RawMessage) (*tenant.Tenant, error) {
	t, err := c.Client.Replace(ctx, id, ifMatch, doc)
	if err == nil {
		c.feed(t)
	}
	return t, err
}

// TestMoveAWS: a move against catalog --backend aws (DynamoDB source of
// truth), whose barrier finds the tcs nodes in the DynamoDB node registry
// and asks them over ReplicaAdmin. While eu-west-1's node lacks the COPIED
// version the move refuses to switch, naming the node, and stays COPIED on
// the old database; once the node has it, the move resumes and completes,
// and both nodes' replicas hold the new database.
func TestMoveAWS(t *testing.T) {
	emu := emulators.SharedAWS(t)
	emu.Setenv(t)
	ctx := testwait.Context(t)
	prefix, reg := awsTables(ctx, t, "move")
	nodes := map[string]*awsNode{"node-a": startAWSNode(t, reg, "us-east-1", "node-a"), "node-b": startAWSNode(t, reg, "eu-west-1", "node-b")}

	env := map[string]string{"TCS_ADMIN_TOKEN": "dev-admin-token", "TCS_READER_TOKEN": "dev-reader-token", "TCS_SCAN_TOKEN": testScanToken}
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	addr := startCatalog(t, []string{"--addr", "127.0.0.1:0", "--backend", "aws", "--aws-prefix", prefix, "--propagation-regions", "us-east-1,eu-west-1"}, getenv)
	api, err := httpclient.New("http://"+addr, httpclient.WithToken("dev-admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	cat := &feedingCatalog{Client: api, t: t, nodes: nodes, stall: func(node string, doc *tenant.Tenant) bool {
		return node == "node-b" && doc.Migration != nil && doc.Migration.Step == tenant.MoveCopied
	}}
	created, err := api.Create(ctx, json.RawMessage(`{"id":"mover","hostnames":["mover.example.com"],"database":{"engine":"postgres","host":"db-1.internal","port":5432,"name":"mover"}}`))
	if err != nil {
		t.Fatal(err)
	}
	cat.feed(created)

	m := &move.Mover{Catalog: cat, MaxLag: 3 * time.Second, Copy: func(context.Context, move.CopyJob) error { return nil }}
	_, err = m.Run(ctx, "mover", json.RawMessage(`{"host":"db-2.internal"}`))
	var lag *move.LagError
	if !errors.As(err, &lag) || lag.Step != tenant.MoveCopied || !slices.ContainsFunc(lag.Lagging, func(l string) bool {
		return strings.HasPrefix(l, "eu-west-1/node-b: replica at version 2")
	}) {
		t.Fatalf("move with node-b behind: %v, want a *LagError at COPIED naming eu-west-1/node-b", err)
	}
	cur, err := api.Get(ctx, "mover")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Migration.Step != tenant.MoveCopied || cur.Database.Host != "db-1.internal" || !cur.ReadOnly() {
		t.Fatalf("after the refusal: %+v on %+v; want COPIED, read-only, on db-1", cur.Migration, cur.Database)
	}

	cat.stall = nil
	cat.feed(cur, "node-b")
	done, err := (&move.Mover{Catalog: cat, MaxLag: 10 * time.Second}).Run(ctx, "mover", nil)
	if err != nil {
		t.Fatal(err)
	}
	if done.Migration.Step != tenant.MoveComplete || done.Database.Host != "db-2.internal" || done.ReadOnly() {
		t.Fatalf("resumed move ended %+v on %+v", done.Migration, done.Database)
	}
	for name, n := range nodes {
		got, err := n.rep.GetTenant(ctx, "mover")
		if err != nil || got.Version != done.Version || got.Database.Host != "db-2.internal" {
			t.Errorf("%s's replica: %+v, %v; want version %d on db-2", name, got, err, done.Version)
		}
	}
}
