package kinesis

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/streamer"
)

// Append stores records in rounds of PutRecords calls, each carrying at most
// one Kinesis record per partition key: a key's next record is sent only
// once the previous one is stored, so a key's records land in the order
// given even though PutRecords may fail some of a call's records and not
// others. Unless Config.DisablePacking is set, a key's consecutive records
// still to store go in one packed Kinesis record (see pack.go), up to
// Kinesis's record size, so that a backlog takes one round, not one per
// record of its busiest key. Failed
// records and failed calls (throttling, 5xx, lost connections) are retried
// with backoff until ctx ends; a permanent error (say, the stream was
// deleted) is returned at once. An invalid record rejects the whole call
// before anything is sent.
func (s *Stream) Append(ctx context.Context, records []streamer.Record) error {
	if len(records) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, r := range records {
		if err := validate(r); err != nil {
			return fmt.Errorf("kinesis append: record %d: %w", i, err)
		}
	}
	if s.isClosed() {
		return fmt.Errorf("kinesis append: %w", ErrClosed)
	}

	// queues[k] holds the indexes of key k's records still to store, in
	// order; keys lists the keys with records left, in order of first
	// appearance, so that every round serves them in the same order.
	queues := map[string][]int{}
	var keys []string
	for i, r := range records {
		if _, ok := queues[r.PartitionKey]; !ok {
			keys = append(keys, r.PartitionKey)
		}
		queues[r.PartitionKey] = append(queues[r.PartitionKey], i)
	}

	b := backoff.New(50*time.Millisecond, maxBackoff, backoff.Around)
	failures := 0 // in a row
	entries := make([]ktypes.PutRecordsRequestEntry, 0, min(len(keys), maxRecordsPerCall))
	sent := make([]string, 0, cap(entries)) // the key of each entry
	counts := make([]int, 0, cap(entries))  // how many of the key's records it holds
	for len(keys) > 0 {
		entries, sent, counts = entries[:0], sent[:0], counts[:0]
		size := 0
		for _, k := range keys {
			data, count := s.next(records, queues[k])
			n := len(k) + len(data)
			if len(entries) == maxRecordsPerCall || size+n > maxBytesPerCall {
				break
			}
			size += n
			entries = append(entries, ktypes.PutRecordsRequestEntry{PartitionKey: aws.String(k), Data: data})
			sent = append(sent, k)
			counts = append(counts, count)
		}

		out, err := s.kin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: s.stream, Records: entries}, oneAttempt)
		if err != nil {
			if ctx.Err() != nil {
				return wrap(ctx, err, "kinesis append")
			}
			// A call that timed out (its outcome is unknown: its records
			// may be stored) is retried like any transient failure: a
			// record stored twice is delivered twice, which consumers
			// tolerate, and the key's next record still goes after it.
			kind := classify(err)
			if kind == permanent {
				return fmt.Errorf("kinesis append %d records to %s: %w", len(entries), *s.stream, err)
			}
			if kind == throttled {
				s.m.throttles.WithLabelValues("PutRecords").Inc()
			}
			s.m.retries.WithLabelValues("PutRecords").Inc()
			failures++
			s.logRetry(failures, "PutRecords failed; retrying", "records", len(entries), "err", err)
			if err := b.Wait(ctx); err != nil {
				return err
			}
			continue
		}
		if len(out.Records) != len(entries) {
			return fmt.Errorf("kinesis append: PutRecords answered %d results for %d records", len(out.Records), len(entries))
		}
		failed, stored := 0, 0
		for i, res := range out.Records {
			if res.ErrorCode != nil {
				failed++
				if *res.ErrorCode == "ProvisionedThroughputExceededException" {
					s.m.throttles.WithLabelValues("PutRecords").Inc()
				}
				s.m.retries.WithLabelValues("PutRecords").Inc()
				continue
			}
			queues[sent[i]] = queues[sent[i]][counts[i]:]
			stored += counts[i]
		}
		s.m.appended.Add(float64(stored))
		keys = keysLeft(keys, queues)
		if failed > 0 {
			failures++
			s.logRetry(failures, "PutRecords stored only some records; retrying the others", "failed", failed, "of", len(entries))
			if err := b.Wait(ctx); err != nil {
				return err
			}
			continue
		}
		b.Reset()
		failures = 0
	}
	return nil
}

// next returns the Kinesis record data that stores the first records of a
// key's queue (indexes into records, in order), and how many it holds: the
// first record alone, or with packing on, as many of the queue's records as
// fit in one packed record (one alone is never packed).
func (s *Stream) next(records []streamer.Record, queue []int) ([]byte, int) {
	first := records[queue[0]]
	if s.disablePacking || len(queue) == 1 {
		return first.Data, 1
	}
	limit := maxRecordBytes - len(first.PartitionKey)
	n, size := 0, 0
	for _, i := range queue {
		if packedSize(size+len(records[i].Data), n+1) > limit {
			break
		}
		n++
		size += len(records[i].Data)
	}
	if n <= 1 {
		return first.Data, 1
	}
	datas := make([][]byte, n)
	for j := range n {
		datas[j] = records[queue[j]].Data
	}
	return pack(datas), n
}

// keysLeft drops from keys, in place, the keys whose queue is empty.
func keysLeft(keys []string, queues map[string][]int) []string {
	left := keys[:0]
	for _, k := range keys {
		if len(queues[k]) > 0 {
			left = append(left, k)
		}
	}
	return left
}

func validate(r streamer.Record) error {
	switch n := utf8.RuneCountInString(r.PartitionKey); {
	case n == 0:
		return errors.New("partition key is empty")
	case n > maxPartitionKeyChars:
		return fmt.Errorf("partition key has %d characters, the limit is %d", n, maxPartitionKeyChars)
	}
	if n := len(r.PartitionKey) + len(r.Data); n > maxRecordBytes {
		return fmt.Errorf("partition key %q: key and data are %d bytes, the Kinesis limit is %d (1 MiB)", r.PartitionKey, n, maxRecordBytes)
	}
	return nil
}

func (s *Stream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
