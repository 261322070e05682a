package sns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/backoff"
	"github.com/tcs-dev/tcs/tcs"
)

// Backoff between receives that failed.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// queueRetention is how long SQS keeps a message nobody received. Anything
// older is of no use (the cache TTL has run out), and it bounds what a
// crashed node's queue gathers before it is swept.
const queueRetention = time.Hour

// ErrQueueGone is wrapped by the error Subscribe returns when the node's
// queue disappeared under it (deleted by a sweep that took it for a crashed
// node's, or by hand). Subscribing again makes a new queue.
var ErrQueueGone = errors.New("sns: the node's queue no longer exists")

// Feed delivers a region's invalidations to one tcs node through a queue of
// its own, subscribed to the region's topic. It implements tcs.Feed. Each
// Subscribe call has its own queue; the Feed is safe for concurrent use.
type Feed struct {
	cfg Config
	log *slog.Logger
	m   feedMetrics

	mu  sync.Mutex
	own map[string]bool // URLs of the queues of running Subscribe calls

	// leaveOnStop makes Subscribe end without removing its queue and
	// subscription, as a crashed node would (tests set it).
	leaveOnStop bool
}

var _ tcs.Feed = (*Feed)(nil)

type feedMetrics struct {
	received, undecodable, receiveErrors, gaps prometheus.Counter
	sweeps, sweepErrors, removedQueues         prometheus.Counter
	removedSubscriptions                       prometheus.Counter
}

// OpenFeed checks that the topic exists and returns a Feed of it. A missing
// topic is an error wrapping ErrNoTopic that names it and the command that
// creates it. It panics if the metrics cannot be registered.
func OpenFeed(ctx context.Context, cfg Config) (*Feed, error) {
	cfg, err := cfg.withDefaults("feed")
	if err != nil {
		return nil, err
	}
	if cfg.SQS == nil {
		return nil, errors.New("sns feed: no SQS client")
	}
	if cfg.StaleAfter < 2*cfg.HeartbeatInterval {
		return nil, fmt.Errorf("sns feed: StaleAfter (%v) must be at least twice HeartbeatInterval (%v), or a live node's queue could be swept when a heartbeat is late", cfg.StaleAfter, cfg.HeartbeatInterval)
	}
	if _, err := queueName(cfg.Prefix, cfg.Region, cfg.NodeID); err != nil {
		return nil, err
	}
	if err := checkTopic(ctx, cfg.SNS, cfg.TopicARN); err != nil {
		return nil, fmt.Errorf("sns open feed: %w", err)
	}
	reg, r := cfg.Registerer, cfg.Region
	return &Feed{
		cfg: cfg,
		log: cfg.Logger.With("region", cfg.Region, "node", cfg.NodeID),
		own: make(map[string]bool),
		m: feedMetrics{
			received:             counter(reg, r, "tcs_sns_received_total", "Invalidations received from the node's SQS queue."),
			undecodable:          counter(reg, r, "tcs_sns_undecodable_total", "Messages of the node's SQS queue that could not be decoded, and were dropped."),
			receiveErrors:        counter(reg, r, "tcs_sns_receive_errors_total", "Failed receives from the node's SQS queue."),
			gaps:                 counter(reg, r, "tcs_sns_gaps_total", "Times the feed told the node that invalidations may have been lost."),
			sweeps:               counter(reg, r, "tcs_sns_sweeps_total", "Sweeps for queues left behind by crashed nodes."),
			sweepErrors:          counter(reg, r, "tcs_sns_sweep_errors_total", "Sweeps that failed in part."),
			removedQueues:        counter(reg, r, "tcs_sns_swept_queues_total", "Queues of crashed nodes removed by sweeps."),
			removedSubscriptions: counter(reg, r, "tcs_sns_swept_subscriptions_total", "Subscriptions without a queue removed by sweeps."),
		},
	}, nil
}

// queue is one Subscribe call's queue.
type queue struct {
	name, url, arn string
	subscription   string // ARN, once subscribed
}

// Subscribe implements tcs.Feed. It creates the node's queue (tagged, with a
// policy letting the topic send), subscribes it to the topic with raw
// delivery, calls gap (nothing before this point reaches the queue), and
// then long-polls the queue, calling deliver for each invalidation (and each
// heartbeat) and deleting what it delivered. deliver and gap run on the caller's
// goroutine. Invalidations may come duplicated and in any order (see the
// package comment).
//
// A failed receive calls gap and is retried with backoff (100 ms to 5 s); an
// undecodable message is dropped and calls gap. When ctx ends, Subscribe
// unsubscribes and deletes the queue (within CleanupTimeout; the sweep of
// another node removes what that leaves behind) and returns nil. It returns
// an error if the queue cannot be set up (ErrNoTopic if the topic is
// missing) or disappears (ErrQueueGone); calling it again starts afresh.
//
// While it runs it refreshes the queue's heartbeat tag and, unless
// SweepInterval is negative, sweeps (see Sweep).
func (f *Feed) Subscribe(ctx context.Context, deliver func(tcs.Invalidation), gap func()) error {
	q, err := f.setUp(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if f.leaveOnStop {
		defer f.forget(q)
	} else {
		defer f.tearDown(ctx, q)
	}
	log := f.log.With("queue", q.name)
	log.Info("subscribed to invalidations", "topic", f.cfg.TopicARN, "subscription", q.subscription)

	mctx, stopMaintenance := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { f.maintain(mctx, q) })
	defer wg.Wait()
	defer stopMaintenance()

	f.gap(gap)
	var settled <-chan time.Time
	if f.cfg.SettleTime > 0 {
		t := time.NewTimer(f.cfg.SettleTime)
		defer t.Stop()
		settled = t.C
	}
	wait := backoff.New(minBackoff, maxBackoff, backoff.UpTo)
	for {
		select {
		case <-settled:
			settled = nil
			f.gap(gap)
		default:
		}
		out, err := f.cfg.SQS.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl:            aws.String(q.url),
			MaxNumberOfMessages: 10,
			WaitTimeSeconds:     int32(f.cfg.WaitTime / time.Second),
			VisibilityTimeout:   int32(f.cfg.RedeliverAfter / time.Second),
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isQueueGone(err) {
				return fmt.Errorf("sns receive from %s: %w", q.name, ErrQueueGone)
			}
			f.m.receiveErrors.Inc()
			log.Warn("receive from the invalidation queue failed; invalidations may be delayed", "err", err, "backoff", wait.Current())
			f.gap(gap)
			if wait.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		wait.Reset()
		if len(out.Messages) == 0 {
			continue
		}
		done := make([]sqstypes.DeleteMessageBatchRequestEntry, 0, len(out.Messages))
		for i, msg := range out.Messages {
			inv, err := decode(aws.ToString(msg.Body))
			if err != nil {
				f.m.undecodable.Inc()
				log.Warn("dropped an undecodable invalidation message", "message_id", aws.ToString(msg.MessageId), "err", err)
				f.gap(gap)
			} else {
				f.m.received.Inc()
				deliver(inv)
			}
			done = append(done, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msg.ReceiptHandle})
		}
		// A message whose delete fails comes back after the visibility
		// timeout: a duplicate, which is harmless.
		if _, err := f.cfg.SQS.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(q.url), Entries: done}); err != nil && ctx.Err() == nil {
			log.Warn("deleting received invalidation messages failed; they will be received again", "err", err)
		}
	}
}

func (f *Feed) gap(gap func()) {
	f.m.gaps.Inc()
	gap()
}

// setUp creates, tags, authorises and subscribes a new queue. If a step
// fails it removes what it made.
func (f *Feed) setUp(ctx context.Context) (q *queue, err error) {
	if err := checkTopic(ctx, f.cfg.SNS, f.cfg.TopicARN); err != nil {
		return nil, fmt.Errorf("sns subscribe: %w", err)
	}
	name, err := queueName(f.cfg.Prefix, f.cfg.Region, f.cfg.NodeID)
	if err != nil {
		return nil, err
	}
	now := f.cfg.Now().UTC().Format(timeFormat)
	created, err := f.cfg.SQS.CreateQueue(ctx, &awssqs.CreateQueueInput{
		QueueName: aws.String(name),
		Attributes: map[string]string{
			string(sqstypes.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(int(queueRetention / time.Second)),
		},
		Tags: map[string]string{
			TagRole:       roleQueue,
			TagTopic:      f.cfg.TopicARN,
			TagRegion:     f.cfg.Region,
			TagNode:       f.cfg.NodeID,
			TagCreated:    now,
			TagHeartbeat:  now,
			TagAlarmGroup: AlarmGroup(f.cfg.Prefix, f.cfg.Region),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sqs create queue %s: %w", name, err)
	}
	q = &queue{name: name, url: aws.ToString(created.QueueUrl)}
	f.mu.Lock()
	f.own[q.url] = true
	f.mu.Unlock()
	// made, not q: a failing return sets q to nil before this runs.
	made := q
	defer func() {
		if err != nil {
			f.tearDown(ctx, made)
		}
	}()

	attrs, err := f.cfg.SQS.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(q.url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return nil, fmt.Errorf("sqs get queue arn %s: %w", name, err)
	}
	q.arn = attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if q.arn == "" {
		return nil, fmt.Errorf("sqs get queue arn %s: no QueueArn in the answer", name)
	}
	if _, err := f.cfg.SQS.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{
		QueueUrl:   aws.String(q.url),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNamePolicy): queuePolicy(q.arn, f.cfg.TopicARN)},
	}); err != nil {
		return nil, fmt.Errorf("sqs set policy of %s: %w", name, err)
	}
	sub, err := f.cfg.SNS.Subscribe(ctx, &awssns.SubscribeInput{
		TopicArn:              aws.String(f.cfg.TopicARN),
		Protocol:              aws.String("sqs"),
		Endpoint:              aws.String(q.arn),
		Attributes:            map[string]string{"RawMessageDelivery": "true"},
		ReturnSubscriptionArn: true,
	})
	if isNotFound(err) {
		return nil, fmt.Errorf("sns subscribe %s: %w", name, noTopic(f.cfg.TopicARN))
	}
	if err != nil {
		return nil, fmt.Errorf("sns subscribe %s to %s: %w", name, f.cfg.TopicARN, err)
	}
	q.subscription = aws.ToString(sub.SubscriptionArn)
	return q, nil
}

// queuePolicy lets the topic, and nothing else, send to the queue.
func queuePolicy(queueARN, topicARN string) string {
	type statement struct {
		Sid       string
		Effect    string
		Principal map[string]string
		Action    string
		Resource  string
		Condition map[string]map[string]string
	}
	b, _ := json.Marshal(struct {
		Version   string
		Statement []statement
	}{
		Version: "2012-10-17",
		Statement: []statement{{
			Sid:       "tcs-invalidations",
			Effect:    "Allow",
			Principal: map[string]string{"Service": "sns.amazonaws.com"},
			Action:    "sqs:SendMessage",
			Resource:  queueARN,
			Condition: map[string]map[string]string{"ArnEquals": {"aws:SourceArn": topicARN}},
		}},
	})
	return string(b)
}

// tearDown unsubscribes and deletes q, with a context of its own: it runs
// when the caller's has ended. Failures are logged; another node's sweep
// removes what is left.
func (f *Feed) tearDown(ctx context.Context, q *queue) {
	defer f.forget(q)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.CleanupTimeout)
	defer cancel()
	log := f.log.With("queue", q.name)
	if q.subscription != "" {
		if err := f.unsubscribe(ctx, q.subscription); err != nil {
			log.Warn("unsubscribing the invalidation queue failed; a sweep will remove it", "subscription", q.subscription, "err", err)
		}
	}
	if err := f.deleteQueue(ctx, q.url); err != nil {
		log.Warn("deleting the invalidation queue failed; a sweep will remove it", "err", err)
		return
	}
	log.Info("removed the invalidation queue")
}

func (f *Feed) forget(q *queue) {
	f.mu.Lock()
	delete(f.own, q.url)
	f.mu.Unlock()
}

// unsubscribe removes a subscription; one already gone is not an error.
func (f *Feed) unsubscribe(ctx context.Context, arn string) error {
	_, err := f.cfg.SNS.Unsubscribe(ctx, &awssns.UnsubscribeInput{SubscriptionArn: aws.String(arn)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("sns unsubscribe %s: %w", arn, err)
	}
	return nil
}

// deleteQueue deletes a queue; one already gone is not an error.
func (f *Feed) deleteQueue(ctx context.Context, url string) error {
	_, err := f.cfg.SQS.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	if err != nil && !isQueueGone(err) {
		return fmt.Errorf("sqs delete queue %s: %w", url, err)
	}
	return nil
}

func isQueueGone(err error) bool {
	var gone *sqstypes.QueueDoesNotExist
	return errors.As(err, &gone)
}

// maintain refreshes q's heartbeat and sweeps until ctx ends.
func (f *Feed) maintain(ctx context.Context, q *queue) {
	heartbeat := time.NewTicker(f.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	var sweep <-chan time.Time // nil: never
	var timer *time.Timer
	if f.cfg.SweepInterval > 0 {
		timer = time.NewTimer(jitter(f.cfg.SweepInterval))
		defer timer.Stop()
		sweep = timer.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			f.beat(ctx, q)
		case <-sweep:
			f.sweepTick(ctx)
			timer.Reset(jitter(f.cfg.SweepInterval))
		}
	}
}

// fleetSweeps is about how many sweeps the nodes of a region make together
// per SweepInterval, however many they are.
const fleetSweeps = 3

// sweepTick is one tick of a subscribed node's sweep timer. A sweep costs
// calls in proportion to the number of nodes (a tag read per queue), so if
// every node swept at every tick a fleet of n nodes would make n² calls per
// interval. Instead the node counts the region's queues (one ListQueues
// call: a page holds up to 1000) and sweeps with probability fleetSweeps/n:
// the region gets about fleetSweeps sweeps per interval, and a crashed
// node's queue goes within a few intervals of StaleAfter.
func (f *Feed) sweepTick(ctx context.Context) {
	page, err := f.cfg.SQS.ListQueues(ctx, f.listQueuesInput())
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("counting the region's invalidation queues before a sweep failed", "err", err)
		}
		return
	}
	n := len(page.QueueUrls)
	if page.NextToken != nil {
		n = max(n, queuesPerPage)
	}
	if !shouldSweep(n, rand.N[int]) {
		return
	}
	if _, err := f.Sweep(ctx); err != nil && ctx.Err() == nil {
		f.log.Warn("sweep for queues of crashed nodes failed", "err", err)
	}
}

// shouldSweep decides whether one of n nodes sweeps at this tick: always
// when there are at most fleetSweeps, else with probability fleetSweeps/n
// (roll(n) returns a uniform number in [0, n)).
func shouldSweep(n int, roll func(int) int) bool {
	return n <= fleetSweeps || roll(n) < fleetSweeps
}

// jitter returns a duration between d/2 and d, so that nodes started
// together do not sweep together.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// beat refreshes q's heartbeat tag.
func (f *Feed) beat(ctx context.Context, q *queue) {
	_, err := f.cfg.SQS.TagQueue(ctx, &awssqs.TagQueueInput{
		QueueUrl: aws.String(q.url),
		Tags:     map[string]string{TagHeartbeat: f.cfg.Now().UTC().Format(timeFormat)},
	})
	if err != nil && ctx.Err() == nil {
		f.log.Warn("refreshing the invalidation queue's heartbeat failed", "queue", q.name, "err", err)
	}
}
