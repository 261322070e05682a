// Package dynamotable creates DynamoDB tables the way every TCS backend
// needs them: create unless the table exists, then wait until it is active.
package dynamotable

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Timeout bounds the wait for a new table to become active.
const Timeout = 5 * time.Minute

// API is what Create needs; *dynamodb.Client implements it.
type API interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// Create creates the table in describes, unless a table of that name exists
// (which is left as it is), waits until it is active, and returns its
// description.
func Create(ctx context.Context, client API, in *dynamodb.CreateTableInput) (*types.TableDescription, error) {
	name := "<nil>"
	if in.TableName != nil {
		name = *in.TableName
	}
	_, err := client.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return nil, fmt.Errorf("create table %s: %w", name, err)
	}
	w := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
	})
	out, err := w.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, Timeout)
	if err != nil {
		return nil, fmt.Errorf("wait for table %s to be active: %w", name, err)
	}
	return out.Table, nil
}
