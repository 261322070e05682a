package sns_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/sns"
)

func inv(v int64) tcs.Invalidation {
	return tcs.Invalidation{
		TenantID:    "acme",
		Version:     v,
		Hostnames:   []string{"acme.example.com", fmt.Sprintf("v%d.acme.example.com", v), "xn--bcher-kva.example"},
		CommittedAt: time.Date(2026, 3, 4, 5, 6, 7, int(v)*1000, time.UTC),
	}
}

func TestEveryNodeOfTheRegionReceivesItsInvalidations(t *testing.T) {
	t.Parallel()
	prefix := newPrefix()
	const east, west = "us-east-1", "eu-west-1"
	eastTopic, westTopic := newTopic(t, prefix, east), newTopic(t, prefix, west)

	a := subscribe(t, openFeed(t, config(t, prefix, west, westTopic, "node-a")))
	b := subscribe(t, openFeed(t, config(t, prefix, west, westTopic, "node-b")))
	c := subscribe(t, openFeed(t, config(t, prefix, east, eastTopic, "node-c")))
	westB := openBroadcaster(t, config(t, prefix, west, westTopic, "applier"))
	eastB := openBroadcaster(t, config(t, prefix, east, eastTopic, "applier"))

	const n = 20
	var want []tcs.Invalidation
	for v := int64(1); v <= n; v++ {
		want = append(want, inv(v))
		if err := westB.Broadcast(testwait.Context(t), inv(v)); err != nil {
			t.Fatal(err)
		}
	}
	noHostnames := tcs.Invalidation{TenantID: "gone", Version: 7}
	if err := eastB.Broadcast(testwait.Context(t), noHostnames); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*node{a, b} {
		waitUntil(t, "every invalidation", func() bool { return len(nd.invalidations()) >= n })
	}
	c.waitVersion(t, 7)
	// Give stray deliveries a moment to show up.
	time.Sleep(200 * time.Millisecond)
	for name, nd := range map[string]*node{"node-a": a, "node-b": b} {
		if diff := cmp.Diff(want, nd.invalidations()); diff != "" {
			t.Errorf("%s received (-want +got):\n%s", name, diff)
		}
	}
	// An invalidation without hostnames decodes with none (nil or empty).
	if got := c.invalidations(); len(got) != 1 || got[0].TenantID != "gone" || got[0].Version != 7 || len(got[0].Hostnames) != 0 {
		t.Errorf("the other region's node received %+v, want only its own region's invalidation", got)
	}
}

func TestBroadcastSplitsLargeInvalidations(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	nd := subscribe(t, openFeed(t, config(t, prefix, region, topic, "node")))
	big := tcs.Invalidation{TenantID: "huge", Version: 3, CommittedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := range 4500 { // ~290 KB of JSON: over SNS's 256 KiB limit for one message
		big.Hostnames = append(big.Hostnames, fmt.Sprintf("tenant-%05d.a-rather-long-domain-name-for-testing.example.com", i))
	}
	if err := openBroadcaster(t, config(t, prefix, region, topic, "applier")).Broadcast(testwait.Context(t), big); err != nil {
		t.Fatal(err)
	}
	var got []string
	waitUntil(t, "every hostname", func() bool {
		got = got[:0]
		for _, i := range nd.invalidations() {
			if i.TenantID != big.TenantID || i.Version != big.Version || !i.CommittedAt.Equal(big.CommittedAt) {
				t.Fatalf("received %s@%d at %v, want parts of %s@%d", i.TenantID, i.Version, i.CommittedAt, big.TenantID, big.Version)
			}
			got = append(got, i.Hostnames...)
		}
		return len(got) >= len(big.Hostnames)
	})
	slices.Sort(got)
	if diff := cmp.Diff(big.Hostnames, got); diff != "" {
		t.Errorf("hostnames received (-want +got):\n%s", diff)
	}
	if parts := len(nd.invalidations()); parts < 2 {
		t.Errorf("received %d messages, want the invalidation split in several", parts)
	}
}

func TestQueueIsTaggedAuthorisedAndSubscribedRaw(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	cfg := config(t, prefix, region, topic, "node.with/odd:chars-"+strings.Repeat("x", 100))
	subscribe(t, openFeed(t, cfg))

	qs := queues(t, c, sns.QueueNamePrefix(prefix, region))
	if len(qs) != 1 {
		t.Fatalf("queues %v, want one", qs)
	}
	name := queueName(qs[0])
	if !strings.HasPrefix(name, sns.QueueNamePrefix(prefix, region)+"node-with-odd-chars-xxx") || len(name) != 80 {
		t.Errorf("queue name %q (%d characters): want the region's prefix, the cleaned node id cut to fit and a suffix, 80 characters", name, len(name))
	}
	tags, err := c.sqs.ListQueueTags(testwait.Context(t), &awssqs.ListQueueTagsInput{QueueUrl: aws.String(qs[0])})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{sns.TagRole: "invalidation-queue", sns.TagTopic: topic, sns.TagRegion: region, sns.TagNode: cfg.NodeID, sns.TagAlarmGroup: prefix + "-inv-" + region} {
		if got := tags.Tags[k]; got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{sns.TagCreated, sns.TagHeartbeat} {
		if at, err := time.Parse(time.RFC3339, tags.Tags[k]); err != nil || time.Since(at) > time.Minute {
			t.Errorf("tag %s = %q: want a recent RFC 3339 time (%v)", k, tags.Tags[k], err)
		}
	}
	attrs, err := c.sqs.GetQueueAttributes(testwait.Context(t), &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(qs[0]), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	queueARN := attrs.Attributes["QueueArn"]
	if p := attrs.Attributes["Policy"]; !strings.Contains(p, `"aws:SourceArn":"`+topic+`"`) || !strings.Contains(p, `"Resource":"`+queueARN+`"`) || !strings.Contains(p, "sns.amazonaws.com") {
		t.Errorf("queue policy %s: want SendMessage allowed to the topic", p)
	}
	out, err := c.sns.ListSubscriptionsByTopic(testwait.Context(t), &awssns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Subscriptions) != 1 || aws.ToString(out.Subscriptions[0].Endpoint) != queueARN || aws.ToString(out.Subscriptions[0].Protocol) != "sqs" {
		t.Fatalf("subscriptions %+v, want the queue's", out.Subscriptions)
	}
	sa, err := c.sns.GetSubscriptionAttributes(testwait.Context(t), &awssns.GetSubscriptionAttributesInput{SubscriptionArn: out.Subscriptions[0].SubscriptionArn})
	if err != nil {
		t.Fatal(err)
	}
	if sa.Attributes["RawMessageDelivery"] != "true" {
		t.Errorf("subscription attributes %v: want raw delivery", sa.Attributes)
	}
}

func TestCleanStopRemovesQueueAndSubscription(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	nd := subscribe(t, openFeed(t, config(t, prefix, region, topic, "node")))
	if qs, subs := queues(t, c, sns.QueueNamePrefix(prefix, region)), subscriptions(t, c, topic); len(qs) != 1 || len(subs) != 1 {
		t.Fatalf("while subscribed: queues %v, subscriptions %v; want one of each", qs, subs)
	}
	if err := nd.stop(); err != nil {
		t.Fatalf("Subscribe after its context ended: %v, want nil", err)
	}
	if qs, subs := queues(t, c, sns.QueueNamePrefix(prefix, region)), subscriptions(t, c, topic); len(qs) != 0 || len(subs) != 0 {
		t.Fatalf("after a clean stop: queues %v, subscriptions %v; want none", qs, subs)
	}
}

// faultySQS makes the next fail ReceiveMessage calls fail, and the next lose
// calls that receive messages lose their response (the messages stay in
// flight in the queue, as when a response is cut off on the way and the SDK
// retries). It records the last visibility timeout asked for.
type faultySQS struct {
	sns.SQSAPI
	fail, lose atomic.Int64
	visibility atomic.Int32
}

var errInjected = errors.New("injected receive failure")

func (f *faultySQS) ReceiveMessage(ctx context.Context, in *awssqs.ReceiveMessageInput, optFns ...func(*awssqs.Options)) (*awssqs.ReceiveMessageOutput, error) {
	f.visibility.Store(in.VisibilityTimeout)
	if takeOne(&f.fail) {
		return nil, errInjected
	}
	out, err := f.SQSAPI.ReceiveMessage(ctx, in, optFns...)
	if err == nil && len(out.Messages) > 0 && takeOne(&f.lose) {
		return &awssqs.ReceiveMessageOutput{}, nil
	}
	return out, err
}

// takeOne decrements n if it is positive and reports whether it did.
func takeOne(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

func TestLostReceiveIsRedeliveredSoon(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	cfg := config(t, prefix, region, topic, "node")
	cfg.RedeliverAfter = 2 * time.Second
	faulty := &faultySQS{SQSAPI: cfg.SQS}
	faulty.lose.Store(1)
	cfg.SQS = faulty
	nd := subscribe(t, openFeed(t, cfg))
	b := openBroadcaster(t, config(t, prefix, region, topic, "applier"))

	start := time.Now()
	if err := b.Broadcast(testwait.Context(t), inv(1)); err != nil {
		t.Fatal(err)
	}
	// waitVersion gives up long before SQS's default visibility timeout
	// (30 s) would bring the message back.
	nd.waitVersion(t, 1)
	if faulty.lose.Load() != 0 {
		t.Fatal("the invalidation arrived without its first receive being lost")
	}
	if got := faulty.visibility.Load(); got != 2 {
		t.Errorf("receives ask for a visibility timeout of %d s, want 2 (RedeliverAfter)", got)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("redelivered after %v, before the visibility timeout could have run out", took)
	}
}

func TestGapAtStartAndAfterReceiveFailures(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	cfg := config(t, prefix, region, topic, "node")
	faulty := &faultySQS{SQSAPI: cfg.SQS}
	cfg.SQS = faulty
	nd := subscribe(t, openFeed(t, cfg)) // waits for the gap at start
	b := openBroadcaster(t, config(t, prefix, region, topic, "applier"))

	if err := b.Broadcast(testwait.Context(t), inv(1)); err != nil {
		t.Fatal(err)
	}
	nd.waitVersion(t, 1)
	if g := nd.gaps(); g != 1 {
		t.Fatalf("gaps before any failure: %d, want 1 (at start)", g)
	}

	faulty.fail.Store(2)
	waitUntil(t, "two failed receives", func() bool { return faulty.fail.Load() == 0 })
	waitUntil(t, "a gap per failed receive", func() bool { return nd.gaps() == 3 })
	if err := b.Broadcast(testwait.Context(t), inv(2)); err != nil {
		t.Fatal(err)
	}
	nd.waitVersion(t, 2)

	var got []string
	for _, e := range nd.snapshot() {
		if e.gap {
			got = append(got, "gap")
		} else {
			got = append(got, fmt.Sprint(e.inv.Version))
		}
	}
	if diff := cmp.Diff([]string{"gap", "1", "gap", "gap", "2"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if v := counterValue(t, cfg.Registerer, "tcs_sns_receive_errors_total"); v != 2 {
		t.Errorf("tcs_sns_receive_errors_total = %v, want 2", v)
	}
	if v := counterValue(t, cfg.Registerer, "tcs_sns_received_total"); v != 2 {
		t.Errorf("tcs_sns_received_total = %v, want 2", v)
	}
}

func TestUndecodableMessageIsDroppedWithAGap(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	cfg := config(t, prefix, region, topic, "node")
	nd := subscribe(t, openFeed(t, cfg))
	undecodable := []string{
		"not json",
		`{"kind":"something-else","tenant_id":"acme","version":1}`,
		`{"kind":"invalidation","version":1}`,
		`{"kind":"heartbeat"}`, // no committed_at
		`{"kind":"heartbeat","tenant_id":"acme","committed_at":"2026-01-01T00:00:00Z"}`,
	}
	for _, body := range undecodable {
		if _, err := c.sns.Publish(testwait.Context(t), &awssns.PublishInput{TopicArn: aws.String(topic), Message: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := openBroadcaster(t, config(t, prefix, region, topic, "applier")).Broadcast(testwait.Context(t), inv(5)); err != nil {
		t.Fatal(err)
	}
	nd.waitVersion(t, 5)
	waitUntil(t, "a gap per undecodable message", func() bool { return nd.gaps() == 1+len(undecodable) })
	if v := counterValue(t, cfg.Registerer, "tcs_sns_undecodable_total"); v != float64(len(undecodable)) {
		t.Errorf("tcs_sns_undecodable_total = %v, want %d", v, len(undecodable))
	}
	// Dropped means deleted: nothing comes back after the visibility
	// timeout. (Deletes follow deliveries, so wait for them.)
	url := nodeQueue(t, c, prefix, region, "node")
	waitUntil(t, "every message to be deleted", func() bool {
		attrs, err := c.sqs.GetQueueAttributes(testwait.Context(t), &awssqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
		})
		if err != nil {
			t.Fatal(err)
		}
		counts := attrs.Attributes
		return counts["ApproximateNumberOfMessages"] == "0" && counts["ApproximateNumberOfMessagesNotVisible"] == "0"
	})
}

func TestSettleGap(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	cfg := config(t, prefix, region, topic, "node")
	cfg.SettleTime = 300 * time.Millisecond
	nd := subscribe(t, openFeed(t, cfg))
	waitUntil(t, "the settle gap", func() bool { return nd.gaps() == 2 })
	time.Sleep(cfg.WaitTime + 200*time.Millisecond) // a receive cycle or more
	if g := nd.gaps(); g != 2 {
		t.Errorf("gaps = %d, want 2 (start, settle)", g)
	}
}

func TestSubscribeEndsWhenItsQueueIsDeleted(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	f := openFeed(t, config(t, prefix, region, topic, "node"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gaps := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() { done <- f.Subscribe(ctx, func(tcs.Invalidation) {}, func() { gaps <- struct{}{} }) }()
	<-gaps
	url := nodeQueue(t, c, prefix, region, "node")
	if _, err := c.sqs.DeleteQueue(testwait.Context(t), &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, sns.ErrQueueGone) {
			t.Fatalf("Subscribe = %v, want ErrQueueGone", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Subscribe did not return after its queue was deleted")
	}
	if subs := subscriptions(t, c, topic); len(subs) != 0 {
		t.Errorf("subscriptions %v after the queue went: want its subscription removed", subs)
	}
}

func TestMissingTopic(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	c := regionClients(t, region)
	name := sns.TopicName(prefix, region)
	missing := "arn:aws:sns:" + region + ":000000000000:" + name
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, sns.ErrNoTopic) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "tcsctl infra apply") {
			t.Errorf("%s with a missing topic: %v; want ErrNoTopic naming the topic and `tcsctl infra apply`", what, err)
		}
	}
	cfg := config(t, prefix, region, missing, "node")
	_, err := sns.OpenFeed(testwait.Context(t), cfg)
	check("OpenFeed", err)
	_, err = sns.OpenBroadcaster(testwait.Context(t), cfg)
	check("OpenBroadcaster", err)
	_, err = sns.LookupTopic(testwait.Context(t), c.sns, name)
	check("LookupTopic", err)

	// Once created, it is found; creating it again is harmless.
	arn := newTopic(t, prefix, region)
	again, err := sns.CreateTopic(testwait.Context(t), c.sns, name)
	if err != nil || again != arn {
		t.Errorf("CreateTopic again = %q, %v; want %q", again, err, arn)
	}
	if found, err := sns.LookupTopic(testwait.Context(t), c.sns, name); err != nil || found != arn {
		t.Errorf("LookupTopic = %q, %v; want %q", found, err, arn)
	}
	f := openFeed(t, config(t, prefix, region, arn, "node"))
	b := openBroadcaster(t, config(t, prefix, region, arn, "applier"))

	// A topic deleted under a running system is reported the same way.
	if _, err := c.sns.DeleteTopic(testwait.Context(t), &awssns.DeleteTopicInput{TopicArn: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	check("Broadcast", b.Broadcast(testwait.Context(t), inv(1)))
	check("Subscribe", f.Subscribe(testwait.Context(t), func(tcs.Invalidation) {}, func() {}))
	if qs := queues(t, c, sns.QueueNamePrefix(prefix, region)); len(qs) != 0 {
		t.Errorf("queues %v left by a Subscribe that failed", qs)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	c := regionClients(t, "eu-west-1")
	base := sns.Config{SNS: c.sns, SQS: c.sqs, TopicARN: "arn:aws:sns:eu-west-1:000000000000:x", Region: "eu-west-1"}
	for name, tc := range map[string]struct {
		change func(*sns.Config)
		want   string
	}{
		"no SNS":        {func(c *sns.Config) { c.SNS = nil }, "no SNS client"},
		"no SQS":        {func(c *sns.Config) { c.SQS = nil }, "no SQS client"},
		"no topic":      {func(c *sns.Config) { c.TopicARN = "" }, "no topic ARN"},
		"no region":     {func(c *sns.Config) { c.Region = "" }, "no region"},
		"stale bound":   {func(c *sns.Config) { c.HeartbeatInterval, c.StaleAfter = time.Minute, time.Minute }, "at least twice HeartbeatInterval"},
		"bad prefix":    {func(c *sns.Config) { c.Prefix = "tcs.prod" }, "may hold only"},
		"prefix length": {func(c *sns.Config) { c.Prefix = strings.Repeat("p", 70) }, "leaves no room"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := base
			tc.change(&cfg)
			_, err := sns.OpenFeed(testwait.Context(t), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenFeed: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// failingSetUp fails GetQueueAttributes, the first call after the queue is
// created.
type failingSetUp struct{ sns.SQSAPI }

func (failingSetUp) GetQueueAttributes(context.Context, *awssqs.GetQueueAttributesInput, ...func(*awssqs.Options)) (*awssqs.GetQueueAttributesOutput, error) {
	return nil, errInjected
}

// TestFailedSetUpRemovesItsQueue: a Subscribe whose set-up fails once its
// queue exists returns the error (no panic) and removes the queue.
func TestFailedSetUpRemovesItsQueue(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	cfg := config(t, prefix, region, topic, "node")
	cfg.SQS = failingSetUp{cfg.SQS}
	f := openFeed(t, cfg)
	err := f.Subscribe(testwait.Context(t), func(tcs.Invalidation) {}, func() {})
	if !errors.Is(err, errInjected) {
		t.Fatalf("Subscribe = %v, want the injected set-up failure", err)
	}
	c := regionClients(t, region)
	if qs := queues(t, c, sns.QueueNamePrefix(prefix, region)); len(qs) != 0 {
		t.Fatalf("queues after a failed set-up: %v, want none", qs)
	}
}
