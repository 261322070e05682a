package dynamo_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/infra/emulators"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// newClient returns a client of the test binary's DynamoDB Local.
func newClient(tb testing.TB) *dynamodb.Client {
	tb.Helper()
	return emulators.SharedDynamoDBClient(tb)
}

// newTable creates a fresh table and deletes it when tb ends.
func newTable(tb testing.TB) (*dynamodb.Client, string) {
	tb.Helper()
	c := newClient(tb)
	name := emulators.Name("catalog")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := dynamo.CreateTable(ctx, c, name); err != nil {
		tb.Fatalf("CreateTable: %v", err)
	}
	tb.Cleanup(func() {
		c.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return c, name
}

func open(tb testing.TB) *dynamo.Store {
	tb.Helper()
	c, table := newTable(tb)
	s, err := dynamo.Open(tb.Context(), dynamo.Config{Client: c, Table: table})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) catalog.Store { return open(t) })
}

func TestOpenMissingTable(t *testing.T) {
	t.Parallel()
	_, err := dynamo.Open(t.Context(), dynamo.Config{Client: newClient(t), Table: "no-such-table"})
	if err == nil || !strings.Contains(err.Error(), `"no-such-table"`) || !strings.Contains(err.Error(), "CreateTable") {
		t.Fatalf("Open of a missing table: %v; want an error naming it and how to create it", err)
	}
}
