package dynamo_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/tcs"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

func TestMain(m *testing.M) {
	setRapidChecks()
	os.Exit(emulators.Main(m))
}

// cleanupTB is what the helpers need from *testing.T, *testing.B and
// *rapid.T.
type cleanupTB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

var (
	clientMu sync.Mutex
	client   *dynamodb.Client
)

// newClient returns a client of the test binary's DynamoDB Local, starting
// it on first use.
func newClient(tb testing.TB) *dynamodb.Client {
	tb.Helper()
	clientMu.Lock()
	defer clientMu.Unlock()
	if client == nil {
		client = emulators.SharedDynamoDBClient(tb)
	}
	return client
}

// startedClient returns the client newClient made; a rapid.T cannot start
// the emulator, so the test that calls it must have called newClient.
func startedClient() *dynamodb.Client {
	clientMu.Lock()
	defer clientMu.Unlock()
	return client
}

// newTable creates a fresh replica table on c and deletes it when tb ends.
func newTable(tb cleanupTB, c *dynamodb.Client) string {
	tb.Helper()
	name := replicadynamo.TableName("test", emulators.Name("r"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := replicadynamo.CreateTable(ctx, c, name); err != nil {
		tb.Fatalf("CreateTable: %v", err)
	}
	tb.Cleanup(func() {
		c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return name
}

// openOn opens a replica of table through api.
func openOn(tb cleanupTB, api replicadynamo.API, table string, cfg replicadynamo.Config) *replicadynamo.Replica {
	tb.Helper()
	cfg.Client, cfg.Table = api, table
	r, err := replicadynamo.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// openFresh opens a replica on a new table.
func openFresh(tb cleanupTB, c *dynamodb.Client) *replicadynamo.Replica {
	tb.Helper()
	return openOn(tb, c, newTable(tb, c), replicadynamo.Config{})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	replicatest.Run(t, func(t *testing.T) tcs.Replica { return openFresh(t, c) })
}

// TestConvergence runs the convergence property on convergenceChecks (10)
// random histories (2 with -short), each delivered in 2 random orders to new
// tables. A history costs some 100 applies and, on its first delivery, a
// lookup of every hostname after every apply: about 2 s with -race against
// DynamoDB Local, twice that on a busy 2-core machine, so 10 keep the
// package near a minute. The rules themselves are covered with many more
// histories by tcs.TestApplyRulesConverge and boltreplica; this checks that
// the DynamoDB backend runs them. -rapid.checks=N checks N histories.
func TestConvergence(t *testing.T) {
	t.Parallel()
	newClient(t)
	replicatest.Convergence(t, func(t *rapid.T) tcs.Replica { return openFresh(t, startedClient()) },
		replicatest.ConvergenceOptions{Checks: convergenceChecks, Orders: 2})
}

func TestTableName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ prefix, region, want string }{
		{"tcs", "eu-west-1", "tcs-replica-eu-west-1"},
		{"", "us-east-1", "tcs-replica-us-east-1"},
		{"staging", "ap-southeast-2", "staging-replica-ap-southeast-2"},
	} {
		if got := replicadynamo.TableName(tt.prefix, tt.region); got != tt.want {
			t.Errorf("TableName(%q, %q) = %q, want %q", tt.prefix, tt.region, got, tt.want)
		}
	}
}

func TestOpenMissingTable(t *testing.T) {
	t.Parallel()
	_, err := replicadynamo.Open(t.Context(), replicadynamo.Config{Client: newClient(t), Table: "tcs-replica-nowhere-1"})
	if err == nil || !strings.Contains(err.Error(), `"tcs-replica-nowhere-1"`) || !strings.Contains(err.Error(), "tcsctl infra apply") {
		t.Fatalf("Open of a missing table: %v; want an error naming it and the command that creates it", err)
	}
	if tenant.ErrorCode(err) != tenant.Unavailable {
		t.Errorf("Open of a missing table: code %q, want %q", tenant.ErrorCode(err), tenant.Unavailable)
	}
}

func TestOpenWrongKeySchema(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	name := emulators.Name("not-a-replica")
	in := replicadynamo.TableInput(name)
	in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String("SK"), AttributeType: types.ScalarAttributeTypeS})
	in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String("SK"), KeyType: types.KeyTypeRange})
	if _, err := c.CreateTable(t.Context(), in); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	t.Cleanup(func() { c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)}) })
	_, err := replicadynamo.Open(t.Context(), replicadynamo.Config{Client: c, Table: name})
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "key schema") {
		t.Fatalf("Open of a table with a sort key: %v; want an error naming it and its key schema", err)
	}
}

func TestCreateTableLeavesExistingTable(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	table := newTable(t, c)
	r := openOn(t, c, table, replicadynamo.Config{})
	ev := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
	if _, err := r.Apply(t.Context(), ev); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := replicadynamo.CreateTable(t.Context(), c, table); err != nil {
		t.Fatalf("CreateTable of an existing table: %v", err)
	}
	wantLookup(t, r, "acme.example.com", ev.Tenant)
}

func TestPing(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	table := newTable(t, c)
	r := openOn(t, c, table, replicadynamo.Config{})
	if err := r.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := c.DeleteTable(t.Context(), &dynamodb.DeleteTableInput{TableName: aws.String(table)}); err != nil {
		t.Fatalf("DeleteTable: %v", err)
	}
	err := r.Ping(t.Context())
	if tenant.ErrorCode(err) != tenant.Unavailable || !strings.Contains(err.Error(), table) {
		t.Fatalf("Ping after the table was deleted: %v; want Unavailable naming the table", err)
	}
	_, err = r.LookupHostname(t.Context(), "acme.example.com")
	if tenant.ErrorCode(err) != tenant.Unavailable || !strings.Contains(err.Error(), "lookup hostname acme.example.com") {
		t.Fatalf("LookupHostname after the table was deleted: %v; want Unavailable naming the operation", err)
	}
	_, err = r.Apply(t.Context(), replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil))
	if tenant.ErrorCode(err) != tenant.Unavailable || !strings.Contains(err.Error(), `apply tenant "acme" version 1`) {
		t.Fatalf("Apply after the table was deleted: %v; want Unavailable naming the operation and tenant", err)
	}
}

// TestEventualLookups checks that the option reaches the reads it is for,
// and only those: Apply always reads strongly consistent.
func TestEventualLookups(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	table := newTable(t, c)
	for _, eventual := range []bool{false, true} {
		rec := &recorder{API: c}
		r := openOn(t, rec, table, replicadynamo.Config{EventualLookups: eventual})
		ev := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1}, nil)
		if _, err := r.Apply(t.Context(), ev); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if got, err := r.LookupHostname(t.Context(), "acme.example.com"); err != nil || got.ID != "acme" {
			t.Fatalf("LookupHostname = %v, %v", got, err)
		}
		if _, err := r.GetTenant(t.Context(), "acme"); err != nil {
			t.Fatalf("GetTenant: %v", err)
		}
		rec.mu.Lock()
		if want := []bool{!eventual, !eventual, !eventual}; !cmp.Equal(rec.getConsistent, want) {
			t.Errorf("EventualLookups %v: GetItem ConsistentRead = %v, want %v", eventual, rec.getConsistent, want)
		}
		if want := []bool{true}; !cmp.Equal(rec.batchConsistent, want) {
			t.Errorf("EventualLookups %v: Apply's BatchGetItem ConsistentRead = %v, want %v", eventual, rec.batchConsistent, want)
		}
		rec.mu.Unlock()
	}
}

// TestResyncOfStoredDocumentWritesNothing: resyncing a healthy region costs
// reads only; a resync that repairs content writes.
func TestResyncOfStoredDocumentWritesNothing(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	rec := &recorder{API: c}
	r := openOn(t, rec, newTable(t, c), replicadynamo.Config{})
	ev := replicatest.Event("acme", 2, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 3}, map[string]int64{"old.example.com": 2})
	if _, err := r.Apply(t.Context(), ev); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	before := rec.writes()
	same := *ev
	same.Tenant, same.Resync = ev.Tenant.Clone(), true
	res, err := r.Apply(t.Context(), &same)
	if err != nil || !res.Applied || len(res.Hostnames) != 0 {
		t.Fatalf("resync of the stored document: %+v, %v; want applied, no hostnames", res, err)
	}
	if n := rec.writes() - before; n != 0 {
		t.Errorf("resync of the stored document made %d TransactWriteItems calls, want 0", n)
	}
	fixed := same
	fixed.Tenant = ev.Tenant.Clone()
	fixed.Tenant.Labels = map[string]string{"rev": "repaired"}
	if res, err := r.Apply(t.Context(), &fixed); err != nil || !res.Applied || len(res.Hostnames) != 2 {
		t.Fatalf("repairing resync: %+v, %v; want applied, both hostnames", res, err)
	}
	if got, err := r.GetTenant(t.Context(), "acme"); err != nil || got.Labels["rev"] != "repaired" {
		t.Fatalf("after the repairing resync: %+v, %v", got, err)
	}
}

// recorder records the consistency of reads and counts transactions.
type recorder struct {
	replicadynamo.API
	mu              sync.Mutex
	getConsistent   []bool
	batchConsistent []bool
	transacts       int
}

func (r *recorder) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	r.mu.Lock()
	r.transacts++
	r.mu.Unlock()
	return r.API.TransactWriteItems(ctx, in, o...)
}

func (r *recorder) writes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.transacts
}

func (r *recorder) GetItem(ctx context.Context, in *dynamodb.GetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	r.mu.Lock()
	r.getConsistent = append(r.getConsistent, aws.ToBool(in.ConsistentRead))
	r.mu.Unlock()
	return r.API.GetItem(ctx, in, o...)
}

func (r *recorder) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, o ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	r.mu.Lock()
	for _, ka := range in.RequestItems {
		r.batchConsistent = append(r.batchConsistent, aws.ToBool(ka.ConsistentRead))
	}
	r.mu.Unlock()
	return r.API.BatchGetItem(ctx, in, o...)
}
