package kinesis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/internal/dynamotable"
)

// provisionTimeout bounds how long CreateStream and CreateLeaseTable wait
// for what they created to become ACTIVE.
const provisionTimeout = 5 * time.Minute

// CreateStreamAPI is what CreateStream needs; *kinesis.Client implements it.
type CreateStreamAPI interface {
	CreateStream(ctx context.Context, in *kinesis.CreateStreamInput, optFns ...func(*kinesis.Options)) (*kinesis.CreateStreamOutput, error)
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
}

// StreamSpec is the stream TCS expects: provisioned mode with a fixed shard
// count (resharding is an operator's decision; consumers follow splits and
// merges).
func StreamSpec(name string, shards int) *kinesis.CreateStreamInput {
	return &kinesis.CreateStreamInput{
		StreamName:        aws.String(name),
		ShardCount:        aws.Int32(int32(shards)),
		StreamModeDetails: &ktypes.StreamModeDetails{StreamMode: ktypes.StreamModeProvisioned},
	}
}

// CreateStream creates the stream with StreamSpec and waits until it is
// ACTIVE. A stream that already exists is left as it is (whatever its shard
// count); CreateStream still waits for it to be usable.
func CreateStream(ctx context.Context, client CreateStreamAPI, name string, shards int) error {
	if shards < 1 {
		return fmt.Errorf("kinesis create stream %s: %d shards, want at least 1", name, shards)
	}
	_, err := client.CreateStream(ctx, StreamSpec(name, shards))
	var inUse *ktypes.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("kinesis create stream %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	b := backoff.New(100*time.Millisecond, 2*time.Second, backoff.Around)
	for {
		out, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		var missing *ktypes.ResourceNotFoundException
		switch {
		case errors.As(err, &missing):
			// Not visible yet (eventual consistency); wait.
		case err != nil:
			return fmt.Errorf("kinesis wait for stream %s: %w", name, err)
		case out.StreamDescriptionSummary != nil:
			switch out.StreamDescriptionSummary.StreamStatus {
			case ktypes.StreamStatusActive, ktypes.StreamStatusUpdating:
				return nil
			case ktypes.StreamStatusDeleting:
				return fmt.Errorf("kinesis create stream %s: the stream is being deleted", name)
			}
		}
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("kinesis wait for stream %s: %w", name, err)
		}
	}
}

// CreateLeaseTableAPI is what CreateLeaseTable needs; *dynamodb.Client
// implements it.
type CreateLeaseTableAPI interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

// LeaseTableInput is the lease table (see the package comment): hash key
// group, range key shard, both strings; on-demand capacity.
func LeaseTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName: aws.String(name),
		AttributeDefinitions: []dtypes.AttributeDefinition{
			{AttributeName: aws.String(attrGroup), AttributeType: dtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrShard), AttributeType: dtypes.ScalarAttributeTypeS},
		},
		KeySchema: []dtypes.KeySchemaElement{
			{AttributeName: aws.String(attrGroup), KeyType: dtypes.KeyTypeHash},
			{AttributeName: aws.String(attrShard), KeyType: dtypes.KeyTypeRange},
		},
		BillingMode: dtypes.BillingModePayPerRequest,
	}
}

// CreateLeaseTable creates the lease table with LeaseTableInput and waits
// until it is active. A table that already exists is left as it is.
func CreateLeaseTable(ctx context.Context, client CreateLeaseTableAPI, name string) error {
	if _, err := dynamotable.Create(ctx, client, LeaseTableInput(name)); err != nil {
		return fmt.Errorf("kinesis lease table: %w", err)
	}
	return nil
}
