package kinesis

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/streamer"
)

// shardWorker is a shard loop and what the manager shares with it.
type shardWorker struct {
	shard  string
	token  string
	cancel context.CancelFunc // the lease is lost: stop now
	// handover receives the worker that asked for the lease: hand it over
	// after the batch in hand.
	handover chan string
	// validUntil (Unix nanoseconds, Stream.now's clock) is when another
	// worker may take the lease: LeaseDuration after the last successful
	// write to it was sent. The loop delivers nothing after it.
	validUntil atomic.Int64
	done       chan struct{}
	finished   bool // read to SHARD_END; set before done is closed

	lastRenew time.Time // manager only
}

func (w *shardWorker) extend(until time.Time) {
	n := until.UnixNano()
	for {
		old := w.validUntil.Load()
		if n <= old || w.validUntil.CompareAndSwap(old, n) {
			return
		}
	}
}

func (w *shardWorker) valid(now time.Time) bool { return now.UnixNano() < w.validUntil.Load() }

// start runs a loop for the lease l, held under token since sent.
func (c *consumer) start(ctx context.Context, l Lease, token string, sent time.Time, event string) {
	sctx, cancel := context.WithCancel(ctx)
	w := &shardWorker{shard: l.Shard, token: token, cancel: cancel, handover: make(chan string, 1), done: make(chan struct{}), lastRenew: sent}
	w.extend(sent.Add(c.s.lease))
	c.running[l.Shard] = w
	c.s.m.leaseEvents.WithLabelValues(c.group, event).Inc()
	c.log.Debug("consuming shard", "shard", l.Shard, "checkpoint", l.Checkpoint, "how", event)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.wakeUp()
		defer close(w.done)
		defer cancel()
		defer c.s.m.iteratorAge.DeleteLabelValues(c.group, l.Shard)
		defer c.s.m.lastRead.DeleteLabelValues(c.group, l.Shard)
		if err := c.consumeShard(sctx, w, l.Checkpoint); err != nil {
			c.fail(err)
		}
	}()
}

// consumeShard delivers one shard from pos (a sequence number; "" for the
// oldest record) until ctx ends, the lease goes, or the shard is read to its
// end. It returns an error only for a handler failure or a permanent AWS
// error, which stop the whole Consume.
func (c *consumer) consumeShard(ctx context.Context, w *shardWorker, pos string) error {
	op := fmt.Sprintf("kinesis consume group %q shard %s", c.group, w.shard)
	log := c.log.With("shard", w.shard)
	var iter *string
	b := backoff.New(max(c.s.poll, 50*time.Millisecond), max(c.s.poll, maxBackoff), backoff.Around)
	poll := time.NewTimer(0)
	defer poll.Stop()
	failures := 0 // GetRecords failures in a row
	for {
		if ctx.Err() != nil {
			return nil
		}
		select {
		case to := <-w.handover:
			return c.handOver(ctx, w, to)
		default:
		}
		if !w.valid(c.s.now()) {
			log.Warn("lease not renewed in time; stopping the shard until it is held again")
			c.s.m.leaseEvents.WithLabelValues(c.group, "expired_self").Inc()
			return nil
		}
		if iter == nil {
			it, err := c.iterator(ctx, w.shard, pos)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%s: %w", op, err)
			}
			iter = it
		}
		out, err := c.s.kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(c.s.maxRecords)}, oneAttempt)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A timeout (the endpoint is frozen or unreachable) is
			// retried with the same iterator, like any transient failure.
			var expiredIter *ktypes.ExpiredIteratorException
			if errors.As(err, &expiredIter) {
				// Idle for 5 minutes (or stopped that long in a handler):
				// start again after the last record processed.
				iter = nil
				continue
			}
			switch classify(err) {
			case permanent:
				return fmt.Errorf("%s: get records: %w", op, err)
			case throttled:
				c.s.m.throttles.WithLabelValues("GetRecords").Inc()
			}
			c.s.m.retries.WithLabelValues("GetRecords").Inc()
			failures++
			c.s.logRetry(failures, "GetRecords failed; retrying", "group", c.group, "shard", w.shard, "err", err)
			if b.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		b.Reset()
		failures = 0
		behind := aws.ToInt64(out.MillisBehindLatest)
		c.s.m.iteratorAge.WithLabelValues(c.group, w.shard).Set(float64(behind) / 1000)

		if len(out.Records) > 0 {
			batch := toMessages(out.Records, w.shard)
			if !w.valid(c.s.now()) {
				continue // reported at the top of the loop
			}
			start := time.Now()
			hctx, done := c.leaseContext(ctx, w)
			err := c.h(hctx, batch)
			done()
			c.s.m.handlerSeconds.WithLabelValues(c.group).Observe(time.Since(start).Seconds())
			if err != nil {
				if hctx.Err() != nil && isContextErr(err) {
					if ctx.Err() == nil {
						log.Warn("lease not renewed in time while the handler ran; it was cancelled, and the shard stops until it is held again (the batch is delivered again)")
						c.s.m.leaseEvents.WithLabelValues(c.group, "expired_self").Inc()
					}
					return nil // stopping or fenced: the batch is delivered again
				}
				return fmt.Errorf("%s: %w", op, err)
			}
			c.s.m.consumed.WithLabelValues(c.group).Add(float64(len(batch)))
			last := batch[len(batch)-1].Sequence
			if stop, err := c.saveCheckpoint(ctx, w, last); stop || err != nil {
				return err
			}
			pos = last
		}
		c.s.m.lastRead.WithLabelValues(c.group, w.shard).SetToCurrentTime()
		if out.NextShardIterator == nil {
			c.finish(ctx, w)
			return nil
		}
		iter = out.NextShardIterator
		if len(out.Records) > 0 && (len(out.Records) >= int(c.s.maxRecords) || behind > 0) {
			continue // more is waiting
		}
		poll.Reset(c.s.poll)
		select {
		case <-ctx.Done():
			return nil
		case to := <-w.handover:
			return c.handOver(ctx, w, to)
		case <-poll.C:
		}
	}
}

// leaseContext returns the context of one handler call: ctx, cancelled also
// when w's lease validity runs out before the call returns (the owner could
// not renew, so another worker may take the lease and deliver the batch
// again: this one must stop applying it). done releases it.
func (c *consumer) leaseContext(ctx context.Context, w *shardWorker) (_ context.Context, done func()) {
	hctx, cancel := context.WithCancel(ctx)
	returned := make(chan struct{})
	go func() {
		left := func() time.Duration { return time.Duration(w.validUntil.Load() - c.s.now().UnixNano()) }
		t := time.NewTimer(left())
		defer t.Stop()
		for {
			if left() <= 0 {
				cancel()
				return
			}
			t.Reset(left())
			select {
			case <-returned:
				return
			case <-hctx.Done():
				return
			case <-t.C: // renewed meanwhile? look again
			}
		}
	}()
	return hctx, func() { close(returned); cancel() }
}

func (c *consumer) iterator(ctx context.Context, shard, pos string) (*string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: c.s.stream, ShardId: aws.String(shard), ShardIteratorType: ktypes.ShardIteratorTypeTrimHorizon}
	if pos != "" {
		in.ShardIteratorType = ktypes.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(pos)
	}
	var out *kinesis.GetShardIteratorOutput
	err := c.s.retryOp(ctx, "GetShardIterator", func() (err error) {
		out, err = c.s.kin.GetShardIterator(ctx, in, oneAttempt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get shard iterator after %q: %w", pos, err)
	}
	return out.ShardIterator, nil
}

// ownerWrite runs a write the owner must make even while stopping (a
// checkpoint of a batch the handler accepted, a release, a handover),
// bounded by stopTimeout.
func (c *consumer) ownerWrite(ctx context.Context, write func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	return write(wctx)
}

// saveCheckpoint checkpoints seq. stop reports that the loop must end: the
// lease is gone, the worker crashed, or the write failed (the batch will be
// delivered again); err is set only when Consume is stopping and so cannot
// redeliver it itself.
func (c *consumer) saveCheckpoint(ctx context.Context, w *shardWorker, seq string) (stop bool, err error) {
	if c.crashed() {
		return true, nil
	}
	sent := c.s.now()
	err = c.ownerWrite(ctx, func(ctx context.Context) error { return c.leases.checkpoint(ctx, w.shard, w.token, seq) })
	switch {
	case err == nil:
		w.extend(sent.Add(c.s.lease))
		return false, nil
	case errors.Is(err, errLeaseLost):
		c.log.Info("lease lost before checkpoint; the new owner delivers the batch again", "shard", w.shard, "sequence", seq)
		return true, nil
	case ctx.Err() != nil:
		return true, fmt.Errorf("kinesis consume group %q shard %s: checkpoint at %s not saved (the batch will be delivered again): %w", c.group, w.shard, seq, err)
	default:
		c.log.Warn("checkpoint failed; stopping the shard, it starts again from the last checkpoint", "shard", w.shard, "err", err)
		return true, nil
	}
}

// finish checkpoints a shard read to its end and frees its lease, so that
// its children may be consumed.
func (c *consumer) finish(ctx context.Context, w *shardWorker) {
	if c.crashed() {
		return
	}
	err := c.ownerWrite(ctx, func(ctx context.Context) error { return c.leases.finish(ctx, w.shard, w.token) })
	switch {
	case err == nil:
		w.finished = true
		c.s.m.leaseEvents.WithLabelValues(c.group, "shard_end").Inc()
		c.log.Info("shard read to its end", "shard", w.shard)
	case errors.Is(err, errLeaseLost):
	default:
		// The next owner reads the (empty) rest again and finishes it.
		c.log.Warn("checkpointing the end of a shard failed", "shard", w.shard, "err", err)
	}
}

// handOver gives the lease to the worker that asked for it; the batch in
// hand is checkpointed already.
func (c *consumer) handOver(ctx context.Context, w *shardWorker, to string) error {
	if c.crashed() {
		return nil
	}
	err := c.ownerWrite(ctx, func(ctx context.Context) error { return c.leases.handOver(ctx, w.shard, w.token, to) })
	switch {
	case err == nil:
		c.s.m.leaseEvents.WithLabelValues(c.group, "handover").Inc()
		c.log.Info("handed a lease over", "shard", w.shard, "to", to)
	case errors.Is(err, errLeaseLost):
	default:
		c.log.Warn("handing a lease over failed", "shard", w.shard, "to", to, "err", err)
	}
	return nil
}

// toMessages returns the messages records hold, unpacking packed records
// (see pack.go): the messages of one share its Sequence and are numbered by
// Message.Sub.
func toMessages(records []ktypes.Record, shard string) []streamer.Message {
	msgs := make([]streamer.Message, 0, len(records))
	for _, r := range records {
		m := streamer.Message{
			PartitionKey: aws.ToString(r.PartitionKey),
			Data:         r.Data,
			Shard:        shard,
			Sequence:     aws.ToString(r.SequenceNumber),
			AppendedAt:   aws.ToTime(r.ApproximateArrivalTimestamp),
		}
		datas, ok := unpack(r.Data)
		if !ok {
			msgs = append(msgs, m)
			continue
		}
		for i, d := range datas {
			m.Data, m.Sub = d, i
			msgs = append(msgs, m)
		}
	}
	return msgs
}
