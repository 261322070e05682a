package dynamo_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/storetest"
)

// BenchmarkOpen measures what the conformance suite pays per store: a new
// table on DynamoDB Local and Open.
func BenchmarkOpen(b *testing.B) {
	for b.Loop() {
		open(b)
	}
}

func BenchmarkCreate(b *testing.B) {
	s := open(b)
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Create(b.Context(), storetest.NewTenant(fmt.Sprintf("t-%06d", i)), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s := open(b)
	if _, err := s.Create(b.Context(), storetest.NewTenant("acme"), "bench"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get(b.Context(), "acme"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadOutbox(b *testing.B) {
	s := open(b)
	for i := range 50 {
		if _, err := s.Create(b.Context(), storetest.NewTenant(fmt.Sprintf("t-%03d", i)), "bench"); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := s.ReadOutbox(b.Context(), 0, 0, catalog.DefaultPageSize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateWriters measures creates/s with 1, 8 and 32 concurrent
// writers on DynamoDB Local (go test -bench CreateWriters -benchtime 400x).
func BenchmarkCreateWriters(b *testing.B) {
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			storetest.BenchmarkCreates(b, open(b), writers)
		})
	}
}

// BenchmarkEmulatorTransactions is the ceiling BenchmarkCreateWriters runs
// against: TransactWriteItems of 5 puts of fresh, distinct items (what a
// create writes, with no conditions that can fail and no reads) from 1, 8
// and 32 goroutines. On DynamoDB Local it shows how many transactions the
// emulator itself commits per second on this machine.
func BenchmarkEmulatorTransactions(b *testing.B) {
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			c, table := newTable(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range writers {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						var tx []types.TransactWriteItem
						for j := range 5 {
							tx = append(tx, types.TransactWriteItem{Put: &types.Put{TableName: aws.String(table), Item: map[string]types.AttributeValue{
								"PK": &types.AttributeValueMemberS{Value: fmt.Sprintf("P#%d#%d", i, j)},
								"SK": &types.AttributeValueMemberS{Value: "X"},
							}}})
						}
						if _, err := c.TransactWriteItems(context.Background(), &dynamodb.TransactWriteItemsInput{TransactItems: tx}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tx/s")
		})
	}
}
