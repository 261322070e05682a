// Package streamer carries committed changes from the source of truth to
// every region: Publisher reads the catalog's outbox and appends change
// events to an ordered Stream; Applier consumes the Stream and applies each
// event to one region's replica table, then queues its invalidation for
// sender goroutines that broadcast it (broadcast.go), so a slow or frozen
// broadcast never holds up applying.
//
// Stream is the seam between them. Its embedded backend (streamer/boltlog)
// is a bbolt log; the AWS backend is Kinesis. Both pass streamer/streamtest.
package streamer

import (
	"context"
	"time"
)

// Record is one message to append. Records with the same PartitionKey (the
// tenant id) are delivered in the order they were appended.
type Record struct {
	PartitionKey string
	Data         []byte
}

// Message is one delivered record.
type Message struct {
	PartitionKey string
	Data         []byte
	// Shard is the partition (Kinesis shard) the record landed in, and
	// Sequence its position there: increasing within a shard, opaque across.
	// Records a backend stored together (Kinesis packs a partition key's
	// consecutive records into one) share a Sequence and are told apart by
	// Sub, their position in it from 0; (Sequence, Sub) increases within a
	// shard.
	Shard    string
	Sequence string
	Sub      int
	// AppendedAt is when the stream accepted the record.
	AppendedAt time.Time
}

// Handler processes one batch of messages, all from one shard and in shard
// order (never empty; never two calls at once for one shard). It returns nil
// only once the batch's effects are durable; the consumer then checkpoints
// past the batch. An error stops consumption without checkpointing the
// batch, so it is delivered again on restart. Handlers for different shards
// may run concurrently.
type Handler func(ctx context.Context, batch []Message) error

// Stream is an ordered, durable, partitioned log with checkpointed consumer
// groups.
type Stream interface {
	// Append durably appends records, keeping the order of records that
	// share a partition key. When it returns nil every record is stored; on
	// error some may be (callers retry: delivery is at least once). An empty
	// slice is a no-op.
	Append(ctx context.Context, records []Record) error
	// Consume delivers messages to h for the named consumer group, from the
	// group's checkpoints (or the oldest record if it has none), until ctx
	// ends (returns nil) or h returns an error (returns it, wrapped). Each
	// group sees every record; groups are independent.
	//
	// A clean stop redelivers nothing: when Consume returns nil, every batch
	// h returned nil for is checkpointed. If ctx has ended and h returns a
	// context error, that is a stop, not a failure: Consume returns nil and
	// the batch is delivered again next time. Sequence numbers are decimal
	// and compare as numbers (Kinesis's vary in length).
	Consume(ctx context.Context, group string, h Handler) error
	Close() error
}
