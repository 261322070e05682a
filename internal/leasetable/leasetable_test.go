package leasetable_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/leasetest"
	"github.com/tcs-dev/tcs/internal/leasetable"
	"github.com/tcs-dev/tcs/streamer/kinesis"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// TestConformance runs the lease suite against DynamoDB Local: one table,
// a group per test.
func TestConformance(t *testing.T) {
	db := emulators.SharedDynamoDBClient(t)
	name := emulators.Name("leasetable")
	if err := kinesis.CreateLeaseTable(t.Context(), db, name); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	leasetest.Run(t, func(t *testing.T) leasetest.Opener {
		group := fmt.Sprintf("group-%d", n.Add(1))
		return func(owner string) lease.Store {
			return &leasetable.Table{DB: db, Name: name, Group: group, Owner: owner}
		}
	})
}
