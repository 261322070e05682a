package dynamo_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// faulty fails the next transactions with cancel (counting them down) and
// passes everything else to the emulator.
type faulty struct {
	*dynamodb.Client
	cancel   *types.TransactionCanceledException
	failNext atomic.Int32
	txCalls  atomic.Int32
}

func (f *faulty) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	f.txCalls.Add(1)
	if f.failNext.Add(-1) >= 0 {
		return nil, f.cancel
	}
	return f.Client.TransactWriteItems(ctx, in, o...)
}

func cancelled(code string) *types.TransactionCanceledException {
	return &types.TransactionCanceledException{
		Message:             aws.String("Transaction cancelled"),
		CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String(code)}},
	}
}

func TestCancelledTransactions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		code      string
		failures  int32
		wantCode  tenant.Code
		wantCalls int32
	}{
		{"conflict is retried", "TransactionConflict", 3, "", 4},
		{"failed condition is retried", "ConditionalCheckFailed", 1, "", 2},
		{"validation error is not retried", "ValidationError", 1, tenant.Internal, 1},
		{"endless conflicts give up as unavailable", "TransactionConflict", 100, tenant.Unavailable, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, table := newTable(t)
			f := &faulty{Client: c, cancel: cancelled(tt.code)}
			f.failNext.Store(tt.failures)
			s, err := dynamo.Open(t.Context(), dynamo.Config{Client: f, Table: table, MaxAttempts: 5})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			_, err = s.Create(t.Context(), storetest.NewTenant("acme"), "test")
			if got := tenant.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("Create: %v (code %q), want code %q", err, got, tt.wantCode)
			}
			if n := f.txCalls.Load(); n != tt.wantCalls {
				t.Fatalf("%d transactions sent, want %d", n, tt.wantCalls)
			}
			_, getErr := s.Get(t.Context(), "acme")
			if (getErr == nil) != (tt.wantCode == "") {
				t.Fatalf("Get after Create (%v): %v", err, getErr)
			}
		})
	}
}
