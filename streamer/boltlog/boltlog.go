// Package boltlog is the embedded streamer.Stream: an ordered, partitioned,
// durable log in one bbolt file, with checkpointed consumer groups. It is
// what the single-process deployment (make run) uses; the AWS deployment uses
// Kinesis behind the same interface.
//
// A partition key maps to one of a fixed number of partitions (FNV-1a of the
// key, mod the partition count); each partition keeps its records in append
// order under increasing sequence numbers, so records that share a partition
// key are delivered in the order they were appended.
//
// Buckets:
//
//	meta                 schema version; partition count (fixed at creation)
//	log/p<N>             big-endian sequence (bucket NextSequence, from 1) → record
//	checkpoints/<group>  "p<N>" → big-endian sequence of the last record the
//	                     group has processed in that partition
//
// A record value is a format byte (1), the appended-at time (big-endian Unix
// nanoseconds), the partition key's length (uvarint), the key, and the data.
//
// The file is locked by the process that opens it, so all appends come from
// this process: consumers are woken by Append directly, and poll only as a
// fallback.
package boltlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"

	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sync/errgroup"

	"github.com/tcs-dev/tcs/internal/boltfile"

	"github.com/tcs-dev/tcs/streamer"
)

var _ streamer.Stream = (*Log)(nil)

// Defaults for the zero fields of Options.
const (
	DefaultPartitions   = 8
	DefaultPollInterval = 20 * time.Millisecond
	DefaultBatchSize    = 256
	DefaultTimeout      = time.Second
)

// Kinesis's limits, enforced here too so that a producer that works on the
// embedded log keeps working when the deployment moves to AWS.
const (
	maxPartitionKeyChars = 256
	maxRecordBytes       = 1 << 20 // partition key + data
)

// schemaVersion is the layout described in the package comment.
const schemaVersion = "1"

// recordFormat is the first byte of every record value.
const recordFormat = 1

var (
	bucketLog         = []byte("log")
	bucketCheckpoints = []byte("checkpoints")

	keyPartitions = []byte("partitions")
)

// ErrClosed is returned by operations on a closed Log, and by a Consume that
// was running when the Log was closed.
var ErrClosed = errors.New("boltlog: log closed")

// Options configure Open. The zero value is ready to use.
type Options struct {
	// Partitions is the number of partitions of a new file; zero means
	// DefaultPartitions. It is stored in the file: reopening with a
	// different non-zero value is an error, zero means "as stored".
	Partitions int
	// PollInterval is how often an idle consumer looks for new records when
	// no Append has woken it; zero means DefaultPollInterval.
	PollInterval time.Duration
	// BatchSize is the largest batch handed to a Handler; zero means
	// DefaultBatchSize.
	BatchSize int
	// Now stamps Message.AppendedAt; nil means time.Now.
	Now func() time.Time
	// Timeout is how long Open waits for the file lock held by another
	// process; zero means DefaultTimeout.
	Timeout time.Duration
}

// Log is a streamer.Stream in a bbolt file. It is safe for concurrent use.
type Log struct {
	db          *bbolt.DB
	checkpoints *boltfile.GroupCommit // coalesces concurrent checkpoint commits
	partitions  int
	poll        time.Duration
	batchSize   int
	now         func() time.Time

	mu sync.Mutex
	// appended[p] is closed (and replaced) by every Append that wrote to
	// partition p, waking that partition's idle consumers at once.
	appended []chan struct{}
	// consuming holds the groups with a Consume in progress: two consumers
	// of one group would deliver everything twice and race on checkpoints.
	consuming map[string]bool
	closed    bool

	// closing ends when Close starts; consumers stops Close until every
	// Consume has returned, so that the file is never closed under them.
	closing   context.Context
	stop      context.CancelFunc
	consumers sync.WaitGroup
}

// Open opens (creating if needed) the log file at path. If another process
// holds the file, Open fails after opts.Timeout instead of waiting forever.
func Open(path string, opts Options) (*Log, error) {
	if opts.Partitions < 0 {
		return nil, fmt.Errorf("boltlog open %s: Options.Partitions is %d, want ≥ 0", path, opts.Partitions)
	}
	l := &Log{
		poll:      cmpOr(opts.PollInterval, DefaultPollInterval),
		batchSize: cmpOr(opts.BatchSize, DefaultBatchSize),
		now:       opts.Now,
		consuming: map[string]bool{},
	}
	if l.now == nil {
		l.now = time.Now
	}
	db, err := boltfile.Open(path, boltfile.Spec{Kind: "stream", Timeout: opts.Timeout, Schema: schemaVersion})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(boltfile.MetaBucket)
		if v := meta.Get(keyPartitions); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil || n <= 0 {
				return fmt.Errorf("stored partition count %q is corrupt", v)
			}
			if opts.Partitions != 0 && opts.Partitions != n {
				return fmt.Errorf("the file has %d partitions but Options.Partitions is %d (the partition count is fixed when the file is created)", n, opts.Partitions)
			}
			l.partitions = n
		} else {
			l.partitions = cmpOr(opts.Partitions, DefaultPartitions)
			if err := meta.Put(keyPartitions, []byte(strconv.Itoa(l.partitions))); err != nil {
				return err
			}
		}
		logs, err := tx.CreateBucketIfNotExists(bucketLog)
		if err != nil {
			return err
		}
		for p := range l.partitions {
			if _, err := logs.CreateBucketIfNotExists(partitionKey(p)); err != nil {
				return err
			}
		}
		_, err = tx.CreateBucketIfNotExists(bucketCheckpoints)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltlog open %s: %w", path, err)
	}
	l.db = db
	l.checkpoints = boltfile.NewGroupCommit(db)
	l.appended = make([]chan struct{}, l.partitions)
	for p := range l.appended {
		l.appended[p] = make(chan struct{})
	}
	l.closing, l.stop = context.WithCancel(context.Background())
	return l, nil
}

// Partitions returns the number of partitions, as stored in the file.
func (l *Log) Partitions() int { return l.partitions }

// Close stops every running Consume (they return ErrClosed), waits for them,
// and closes the file. It must not be called from a Handler.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.stop()
	l.consumers.Wait()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("boltlog close: %w", err)
	}
	return nil
}

// Append writes all records in one transaction, which is durable when Append
// returns nil. An invalid record (empty or over-long partition key, record
// over 1 MiB: Kinesis's limits) rejects the whole call and writes nothing.
func (l *Log) Append(ctx context.Context, records []streamer.Record) error {
	if len(records) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	size := 0
	for i, r := range records {
		if err := validate(r); err != nil {
			return fmt.Errorf("boltlog append: record %d: %w", i, err)
		}
		size += 8 + recordSize(r)
	}
	at := l.now().UnixNano()
	touched := make([]bool, l.partitions)
	// bbolt keeps references to keys and values until the commit, so each
	// needs its own bytes: one allocation serves them all.
	arena := make([]byte, 0, size)
	err := l.db.Update(func(tx *bbolt.Tx) error {
		logs := tx.Bucket(bucketLog)
		buckets := make([]*bbolt.Bucket, l.partitions)
		for _, r := range records {
			p := l.partition(r.PartitionKey)
			b := buckets[p]
			if b == nil {
				b = logs.Bucket(partitionKey(p))
				if b == nil {
					return fmt.Errorf("partition bucket %s missing", shardName(p))
				}
				b.FillPercent = 1 // keys only ever grow: pack the pages
				buckets[p] = b
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			start := len(arena)
			arena = binary.BigEndian.AppendUint64(arena, seq)
			key := arena[start:len(arena):len(arena)]
			start = len(arena)
			arena = appendRecord(arena, at, r)
			if err := b.Put(key, arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
			touched[p] = true
		}
		return nil
	})
	if err != nil {
		return l.wrap(err, "boltlog append")
	}
	l.mu.Lock()
	for p, ok := range touched {
		if ok {
			close(l.appended[p])
			l.appended[p] = make(chan struct{})
		}
	}
	l.mu.Unlock()
	return nil
}

// Consume runs one loop per partition, each delivering the group's records
// in order from its checkpoint, in batches of up to Options.BatchSize, and
// checkpointing each batch after h returns nil for it. It returns nil when
// ctx ends (a batch whose handler returned a context error meanwhile is not
// checkpointed), the first handler or storage error otherwise, after
// stopping the other partitions. Only one Consume per group may run at a
// time.
func (l *Log) Consume(ctx context.Context, group string, h streamer.Handler) error {
	if group == "" {
		return errors.New("boltlog consume: empty group name")
	}
	if h == nil {
		return fmt.Errorf("boltlog consume group %q: nil handler", group)
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return fmt.Errorf("boltlog consume group %q: %w", group, ErrClosed)
	case l.consuming[group]:
		l.mu.Unlock()
		return fmt.Errorf("boltlog consume group %q: another Consume of this group is running", group)
	}
	l.consuming[group] = true
	l.consumers.Add(1)
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.consuming, group)
		l.mu.Unlock()
		l.consumers.Done()
	}()

	if ctx.Err() != nil {
		return nil
	}
	// The group's bucket makes it known to Trim even before its first
	// checkpoint, so that Trim keeps what it has not read yet.
	if err := l.registerGroup(group); err != nil {
		return err
	}

	run, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopOnClose := context.AfterFunc(l.closing, func() { cancel(ErrClosed) })
	defer stopOnClose()

	g, gctx := errgroup.WithContext(run)
	for p := range l.partitions {
		g.Go(func() error { return l.consumePartition(gctx, group, p, h) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if ctx.Err() == nil && errors.Is(context.Cause(run), ErrClosed) {
		return fmt.Errorf("boltlog consume group %q: %w", group, ErrClosed)
	}
	return nil
}

func (l *Log) registerGroup(group string) error {
	exists, err := boltfile.View(context.Background(), l.db, func(tx *bbolt.Tx) (bool, error) {
		return tx.Bucket(bucketCheckpoints).Bucket([]byte(group)) != nil, nil
	})
	if err == nil && !exists {
		err = l.db.Update(func(tx *bbolt.Tx) error {
			_, err := tx.Bucket(bucketCheckpoints).CreateBucketIfNotExists([]byte(group))
			return err
		})
	}
	return l.wrap(err, fmt.Sprintf("boltlog consume group %q", group))
}

func (l *Log) consumePartition(ctx context.Context, group string, p int, h streamer.Handler) error {
	shard := shardName(p)
	op := fmt.Sprintf("boltlog consume group %q shard %s", group, shard)
	last, err := l.checkpoint(group, p)
	if err != nil {
		return l.wrap(err, op)
	}
	idle := time.NewTimer(l.poll)
	defer idle.Stop()
	for ctx.Err() == nil {
		// Take the wake-up channel before reading, so that an Append
		// committed after the read still wakes this loop.
		l.mu.Lock()
		appended := l.appended[p]
		l.mu.Unlock()

		batch, end, err := l.read(p, last)
		if err != nil {
			return l.wrap(err, op)
		}
		if len(batch) == 0 {
			idle.Reset(l.poll)
			select {
			case <-ctx.Done():
			case <-appended:
			case <-idle.C:
			}
			continue
		}
		if err := h(ctx, batch); err != nil {
			if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				return nil // stopping, not failing: the batch is delivered again
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		// The handler has made the batch durable: record that even if ctx
		// has ended meanwhile, so that a clean stop redelivers nothing.
		if err := l.saveCheckpoint(group, p, end); err != nil {
			return l.wrap(err, op)
		}
		last = end
	}
	return nil
}

// read returns up to batchSize messages of partition p after sequence
// after, and the sequence of the last one.
func (l *Log) read(p int, after uint64) ([]streamer.Message, uint64, error) {
	var msgs []streamer.Message
	end := after
	shard := shardName(p)
	err := l.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketLog).Bucket(partitionKey(p)).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(msgs) < l.batchSize; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			m, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record %s/%d: %w", shard, seq, err)
			}
			m.Shard, m.Sequence = shard, formatSequence(seq)
			if msgs == nil {
				msgs = make([]streamer.Message, 0, min(l.batchSize, 64))
			}
			msgs = append(msgs, m)
			end = seq
		}
		return nil
	})
	return msgs, end, err
}

// checkpoint returns the sequence of the last record group has processed in
// partition p, 0 if none.
func (l *Log) checkpoint(group string, p int) (uint64, error) {
	return boltfile.View(context.Background(), l.db, func(tx *bbolt.Tx) (uint64, error) { return checkpointIn(tx, group, p), nil })
}

func checkpointIn(tx *bbolt.Tx, group string, p int) uint64 {
	b := tx.Bucket(bucketCheckpoints).Bucket([]byte(group))
	if b == nil {
		return 0
	}
	if v := b.Get(partitionKey(p)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// saveCheckpoint durably records seq as group's checkpoint in partition p,
// in a commit shared with the checkpoints other partitions and groups save
// meanwhile.
func (l *Log) saveCheckpoint(group string, p int, seq uint64) error {
	return l.checkpoints.Update(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(bucketCheckpoints).CreateBucketIfNotExists([]byte(group))
		if err != nil {
			return err
		}
		if checkpointIn(tx, group, p) >= seq {
			return nil // never move a checkpoint back
		}
		return b.Put(partitionKey(p), seqKey(seq))
	})
}

// Checkpoint returns the sequence (Message.Sequence) of the last record the
// group has processed in shard, or "" if it has processed none there.
func (l *Log) Checkpoint(group, shard string) (string, error) {
	p, err := l.parseShard(shard)
	if err != nil {
		return "", fmt.Errorf("boltlog checkpoint group %q: %w", group, err)
	}
	seq, err := l.checkpoint(group, p)
	if err != nil {
		return "", l.wrap(err, fmt.Sprintf("boltlog checkpoint group %q shard %s", group, shard))
	}
	if seq == 0 {
		return "", nil
	}
	return formatSequence(seq), nil
}

// Lag returns how many stored records the group has not yet processed,
// summed over partitions. A group that never consumed lags by every record.
func (l *Log) Lag(group string) (int64, error) {
	lag, err := boltfile.View(context.Background(), l.db, func(tx *bbolt.Tx) (int64, error) {
		var lag int64
		logs := tx.Bucket(bucketLog)
		for p := range l.partitions {
			b := logs.Bucket(partitionKey(p))
			first, _ := b.Cursor().First()
			if first == nil {
				continue // empty, or trimmed to the end
			}
			// Sequences are contiguous from first to b.Sequence(): Trim
			// only ever removes a prefix.
			from := max(checkpointIn(tx, group, p), binary.BigEndian.Uint64(first)-1)
			if last := b.Sequence(); last > from {
				lag += int64(last - from)
			}
		}
		return lag, nil
	})
	return lag, l.wrap(err, fmt.Sprintf("boltlog lag group %q", group))
}

// Trim deletes, in each partition, the records that every known group has
// processed, and returns how many it deleted. A group is known from its
// first Consume until DeleteGroup; with no known group Trim deletes nothing. A group that
// first consumes after a Trim starts at the oldest remaining record. The
// file does not shrink: bbolt reuses the freed pages for new records.
func (l *Log) Trim() (int64, error) {
	var deleted int64
	for p := range l.partitions {
		err := l.db.Update(func(tx *bbolt.Tx) error {
			upTo, known := uint64(0), false
			err := tx.Bucket(bucketCheckpoints).ForEachBucket(func(group []byte) error {
				cp := checkpointIn(tx, string(group), p)
				if !known || cp < upTo {
					upTo, known = cp, true
				}
				return nil
			})
			if err != nil || upTo == 0 {
				return err
			}
			c := tx.Bucket(bucketLog).Bucket(partitionKey(p)).Cursor()
			// Seek to the first key again after each delete: a cursor's Next
			// after Delete is not reliable across bbolt versions.
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
				deleted++
			}
			return nil
		})
		if err != nil {
			return deleted, l.wrap(err, "boltlog trim "+shardName(p))
		}
	}
	return deleted, nil
}

// DeleteGroup forgets a consumer group and its checkpoints, so that it no
// longer holds back Trim. Consuming with the group again starts from the
// oldest stored record. It fails while the group is consuming.
func (l *Log) DeleteGroup(group string) error {
	l.mu.Lock()
	if l.consuming[group] {
		l.mu.Unlock()
		return fmt.Errorf("boltlog delete group %q: the group is consuming", group)
	}
	l.consuming[group] = true // no Consume of group starts meanwhile
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.consuming, group)
		l.mu.Unlock()
	}()
	err := l.db.Update(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketCheckpoints).DeleteBucket([]byte(group))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	return l.wrap(err, fmt.Sprintf("boltlog delete group %q", group))
}

// partition maps a partition key to its partition: FNV-1a (32 bit) of the
// key, mod the partition count. It must never change: records already stored
// would lose their order relative to new ones.
func (l *Log) partition(key string) int {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime32
	}
	return int(h % uint32(l.partitions))
}

func (l *Log) parseShard(shard string) (int, error) {
	if len(shard) < 2 || shard[0] != 'p' {
		return 0, fmt.Errorf("shard %q: want p<N>", shard)
	}
	p, err := strconv.Atoi(shard[1:])
	if err != nil || p < 0 || p >= l.partitions || shardName(p) != shard {
		return 0, fmt.Errorf("shard %q: want p0 to p%d", shard, l.partitions-1)
	}
	return p, nil
}

func (l *Log) wrap(err error, op string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("%s: %w", op, ErrClosed)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

func shardName(p int) string { return "p" + strconv.Itoa(p) }

func partitionKey(p int) []byte { return []byte(shardName(p)) }

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// formatSequence pads to the 20 digits of the largest uint64, so that string
// order is numeric order.
func formatSequence(seq uint64) string { return fmt.Sprintf("%020d", seq) }

func validate(r streamer.Record) error {
	switch n := utf8.RuneCountInString(r.PartitionKey); {
	case n == 0:
		return errors.New("partition key is empty")
	case n > maxPartitionKeyChars:
		return fmt.Errorf("partition key has %d characters, the limit is %d", n, maxPartitionKeyChars)
	}
	if n := len(r.PartitionKey) + len(r.Data); n > maxRecordBytes {
		return fmt.Errorf("partition key %q: key and data are %d bytes, the limit is %d", r.PartitionKey, n, maxRecordBytes)
	}
	return nil
}

func recordSize(r streamer.Record) int {
	return 1 + 8 + binary.MaxVarintLen64 + len(r.PartitionKey) + len(r.Data)
}

func appendRecord(dst []byte, at int64, r streamer.Record) []byte {
	dst = append(dst, recordFormat)
	dst = binary.BigEndian.AppendUint64(dst, uint64(at))
	dst = binary.AppendUvarint(dst, uint64(len(r.PartitionKey)))
	dst = append(dst, r.PartitionKey...)
	return append(dst, r.Data...)
}

// decodeRecord copies what it needs out of v, which bbolt owns.
func decodeRecord(v []byte) (streamer.Message, error) {
	if len(v) < 9 || v[0] != recordFormat {
		return streamer.Message{}, errors.New("unknown record format")
	}
	at := int64(binary.BigEndian.Uint64(v[1:9]))
	n, w := binary.Uvarint(v[9:])
	if w <= 0 || n > uint64(len(v)-9-w) {
		return streamer.Message{}, errors.New("corrupt record")
	}
	rest := v[9+w:]
	return streamer.Message{
		PartitionKey: string(rest[:n]),
		Data:         append([]byte(nil), rest[n:]...),
		AppendedAt:   time.Unix(0, at).UTC(),
	}, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
