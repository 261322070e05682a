package workdynamo_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/streamer/kinesis"
	"github.com/tcs-dev/tcs/tcs/work"
	"github.com/tcs-dev/tcs/tcs/work/workdynamo"
	"github.com/tcs-dev/tcs/tcs/work/worktest"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// TestSuite runs the work suite on DynamoDB Local, a table per test, with
// the default lease duration: a member alone takes 256 buckets in one
// round, which DynamoDB Local under the race detector on a busy machine may
// not finish within a shorter lease.
func TestSuite(t *testing.T) {
	db := emulators.SharedDynamoDBClient(t)
	worktest.Suite(t, work.DefaultLeaseDuration, func(t *testing.T) work.Leases {
		name := emulators.Name("work-leases")
		if err := kinesis.CreateLeaseTable(t.Context(), db, name); err != nil {
			t.Fatal(err)
		}
		leases, err := workdynamo.Open(t.Context(), db, name)
		if err != nil {
			t.Fatal(err)
		}
		return leases
	})
}

// TestOpenMissingTable: a missing table is an error naming it and the
// command that creates it.
func TestOpenMissingTable(t *testing.T) {
	db := emulators.SharedDynamoDBClient(t)
	_, err := workdynamo.Open(context.Background(), db, "no-such-work-leases")
	if err == nil || !strings.Contains(err.Error(), "work lease table no-such-work-leases does not exist: create it with tcsctl infra apply") {
		t.Fatalf("Open of a missing table = %v", err)
	}
}
