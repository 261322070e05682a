package dynamo_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
)

// legacyTable makes a table in the unsharded layout of TCS 0.x holding n
// tenants: it writes them with the store, then moves each tenant item to
// partition TENANTS, drops the shard heads and outbox entries, and puts the
// single counter META OUTBOX_SEQ and one undrained entry in OUTBOX.
func legacyTable(t *testing.T, n int) (*dynamodb.Client, string) {
	t.Helper()
	c, table := newTable(t)
	s, err := dynamo.Open(t.Context(), dynamo.Config{Client: c, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("t-%02d", i)
		if _, err := s.Create(t.Context(), storetest.NewTenant(id), "admin"); err != nil {
			t.Fatal(err)
		}
	}
	scan, err := c.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	put := func(item map[string]types.AttributeValue) {
		t.Helper()
		if _, err := c.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
			t.Fatal(err)
		}
	}
	for _, item := range scan.Items {
		pk := item["PK"].(*types.AttributeValueMemberS).Value
		switch {
		case strings.HasPrefix(pk, "TENANTS#"):
			moved := map[string]types.AttributeValue{}
			for k, v := range item {
				moved[k] = v
			}
			moved["PK"] = &types.AttributeValueMemberS{Value: "TENANTS"}
			put(moved)
		case strings.HasPrefix(pk, "OUTBOX#"):
		default:
			continue
		}
		if _, err := c.DeleteItem(t.Context(), &dynamodb.DeleteItemInput{TableName: aws.String(table),
			Key: map[string]types.AttributeValue{"PK": item["PK"], "SK": item["SK"]}}); err != nil {
			t.Fatal(err)
		}
	}
	put(map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: "META"}, "SK": &types.AttributeValueMemberS{Value: "OUTBOX_SEQ"}, "seq": &types.AttributeValueMemberN{Value: fmt.Sprint(n)}})
	put(map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: "OUTBOX"}, "SK": &types.AttributeValueMemberS{Value: fmt.Sprintf("%020d", n)}, "doc": &types.AttributeValueMemberS{Value: "{}"}})
	return c, table
}

// TestMigrateLayout: Open refuses a table of the unsharded layout, naming
// the migration; MigrateLayout refuses while the old outbox holds an entry,
// then moves every tenant; the store then serves them (reads, lookups,
// history, writes that continue their versions), and a second migration
// moves nothing.
func TestMigrateLayout(t *testing.T) {
	t.Parallel()
	const n = 5
	c, table := legacyTable(t, n)
	_, err := dynamo.Open(t.Context(), dynamo.Config{Client: c, Table: table})
	if err == nil || !strings.Contains(err.Error(), "--migrate-layout") {
		t.Fatalf("Open of a table of the old layout: %v; want an error naming --migrate-layout", err)
	}
	if _, err := dynamo.MigrateLayout(t.Context(), c, table); err == nil || !strings.Contains(err.Error(), "drain") {
		t.Fatalf("MigrateLayout with an entry in the old outbox: %v; want an error saying to drain it", err)
	}
	if _, err := c.DeleteItem(t.Context(), &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: map[string]types.AttributeValue{
		"PK": &types.AttributeValueMemberS{Value: "OUTBOX"}, "SK": &types.AttributeValueMemberS{Value: fmt.Sprintf("%020d", n)}}}); err != nil {
		t.Fatal(err)
	}
	moved, err := dynamo.MigrateLayout(t.Context(), c, table)
	if err != nil || moved != n {
		t.Fatalf("MigrateLayout = %d, %v; want %d moved", moved, err, n)
	}
	s, err := dynamo.Open(t.Context(), dynamo.Config{Client: c, Table: table})
	if err != nil {
		t.Fatalf("Open after the migration: %v", err)
	}
	page, err := s.List(t.Context(), catalog.ListOptions{})
	if err != nil || len(page.Tenants) != n {
		t.Fatalf("List after the migration: %d tenants, %v; want %d", len(page.Tenants), err, n)
	}
	got, err := s.LookupHostname(t.Context(), "t-03.example.com")
	if err != nil || got.ID != "t-03" {
		t.Fatalf("LookupHostname after the migration = %v, %v", got, err)
	}
	next := got.Clone()
	next.Labels = map[string]string{"migrated": "yes"}
	up, err := s.Update(t.Context(), next, got.Version, "admin")
	if err != nil || up.Version != 2 {
		t.Fatalf("Update after the migration = %v, %v; want version 2", up, err)
	}
	recs, err := s.History(t.Context(), "t-03", catalog.HistoryOptions{})
	if err != nil || len(recs) != 2 || recs[0].PrevHash != recs[1].Hash {
		t.Fatalf("History after the migration = %+v, %v; want 2 chained records", recs, err)
	}
	entries, err := s.ReadOutbox(t.Context(), catalog.OutboxShard("t-03", dynamo.Shards), 0, 10)
	if err != nil || len(entries) != 1 || entries[0].Seq != 1 || entries[0].Event.Version != 2 {
		t.Fatalf("outbox after the migration = %+v, %v; want the update at seq 1", entries, err)
	}
	if _, err := s.Create(t.Context(), storetest.NewTenant("t-99"), "admin"); err != nil {
		t.Fatalf("Create after the migration: %v", err)
	}
	if moved, err := dynamo.MigrateLayout(t.Context(), c, table); err != nil || moved != 0 {
		t.Fatalf("second MigrateLayout = %d, %v; want nothing moved", moved, err)
	}
}
