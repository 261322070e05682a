package sns_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/sns"
)

// crash runs a Subscribe of a node that then dies without cleaning up, and
// returns its queue's URL.
func crash(t *testing.T, cfg sns.Config) string {
	t.Helper()
	f := openFeed(t, cfg)
	sns.LeaveOnStop(f)
	nd := subscribe(t, f)
	if err := nd.stop(); err != nil {
		t.Fatal(err)
	}
	return nodeQueue(t, regionClients(t, cfg.Region), cfg.Prefix, cfg.Region, cfg.NodeID)
}

func queueARN(t *testing.T, c clients, url string) string {
	t.Helper()
	out, err := c.sqs.GetQueueAttributes(testwait.Context(t), &awssqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes["QueueArn"]
}

func exists(t *testing.T, c clients, url string) bool {
	t.Helper()
	return slices.Contains(queues(t, c, queueName(url)), url)
}

func TestLiveNodeSweepsACrashedNodesQueueAfterTheBound(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	short := func(node string, sweep time.Duration) sns.Config {
		cfg := config(t, prefix, region, topic, node)
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.StaleAfter = 2 * time.Second
		cfg.SweepInterval = sweep
		return cfg
	}
	sweeperCfg := short("sweeper", 200*time.Millisecond)
	sweeper := subscribe(t, openFeed(t, sweeperCfg))
	other := subscribe(t, openFeed(t, short("other", -1)))

	crashed := crash(t, short("crashed", -1))
	stopped := time.Now()
	crashedARN := queueARN(t, c, crashed)
	if !slices.Contains(subscriptions(t, c, topic), crashedARN) {
		t.Fatal("the crashed node's subscription is not there to be swept")
	}
	waitUntil(t, "the crashed node's queue to be swept", func() bool { return !exists(t, c, crashed) })
	if took := time.Since(stopped); took < 1500*time.Millisecond {
		t.Errorf("the crashed node's queue was swept %v after its last heartbeat: before the 2 s bound", took)
	}
	if slices.Contains(subscriptions(t, c, topic), crashedARN) {
		t.Error("the crashed node's subscription survived the sweep")
	}
	if v := counterValue(t, sweeperCfg.Registerer, "tcs_sns_swept_queues_total"); v != 1 {
		t.Errorf("tcs_sns_swept_queues_total = %v, want 1", v)
	}

	// Live nodes keep their queues through many more sweeps, and go on
	// receiving.
	time.Sleep(1500 * time.Millisecond)
	live := []string{nodeQueue(t, c, prefix, region, "sweeper"), nodeQueue(t, c, prefix, region, "other")}
	for _, url := range live {
		tags, err := c.sqs.ListQueueTags(testwait.Context(t), &awssqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
		if err != nil {
			t.Fatal(err)
		}
		created, _ := time.Parse(time.RFC3339, tags.Tags[sns.TagCreated])
		beat, err := time.Parse(time.RFC3339, tags.Tags[sns.TagHeartbeat])
		if err != nil || time.Since(beat) > 1500*time.Millisecond || !beat.After(created.Add(2*time.Second)) {
			t.Errorf("queue %s: created %s, heartbeat %s: want a heartbeat refreshed within the last 1.5 s", queueName(url), tags.Tags[sns.TagCreated], tags.Tags[sns.TagHeartbeat])
		}
	}
	want := []string{queueARN(t, c, live[0]), queueARN(t, c, live[1])}
	slices.Sort(want)
	if diff := cmp.Diff(want, subscriptions(t, c, topic)); diff != "" {
		t.Errorf("subscriptions (-live nodes' +got):\n%s", diff)
	}
	if err := openBroadcaster(t, config(t, prefix, region, topic, "applier")).Broadcast(testwait.Context(t), inv(9)); err != nil {
		t.Fatal(err)
	}
	sweeper.waitVersion(t, 9)
	other.waitVersion(t, 9)
}

func TestSweepRules(t *testing.T) {
	t.Parallel()
	prefix, region := newPrefix(), "eu-west-1"
	topic := newTopic(t, prefix, region)
	c := regionClients(t, region)
	clk := testclock.New(time.Now())
	withClock := func(node string) sns.Config {
		cfg := config(t, prefix, region, topic, node)
		cfg.Now = clk.Now
		cfg.HeartbeatInterval = 2 * time.Minute // in real time: the heartbeat tags stay as created
		cfg.StaleAfter = 5 * time.Minute
		return cfg
	}

	crashed := crash(t, withClock("crashed"))
	// Another node of the same topic and region whose queue is still fresh.
	clk.Advance(4 * time.Minute)
	recent := crash(t, withClock("recent"))
	clk.Advance(-4 * time.Minute)

	// A queue with the region's prefix that is not a node queue (no tags).
	foreign, err := c.sqs.CreateQueue(testwait.Context(t), &awssqs.CreateQueueInput{QueueName: aws.String(sns.QueueNamePrefix(prefix, region) + "foreign")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.sqs.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: foreign.QueueUrl}) })
	// A node queue of another topic (a second deployment with the same
	// prefix, say), long stale.
	otherTopic := newTopic(t, prefix+"x", region)
	otherCfg := withClock("elsewhere")
	otherCfg.TopicARN = otherTopic
	elsewhere := crash(t, otherCfg)
	// A subscription whose queue is gone.
	orphan, err := c.sqs.CreateQueue(testwait.Context(t), &awssqs.CreateQueueInput{QueueName: aws.String(sns.QueueNamePrefix(prefix, region) + "orphan-1")})
	if err != nil {
		t.Fatal(err)
	}
	orphanARN := queueARN(t, c, aws.ToString(orphan.QueueUrl))
	if _, err := c.sns.Subscribe(testwait.Context(t), &awssns.SubscribeInput{TopicArn: aws.String(topic), Protocol: aws.String("sqs"), Endpoint: aws.String(orphanARN)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.sqs.DeleteQueue(testwait.Context(t), &awssqs.DeleteQueueInput{QueueUrl: orphan.QueueUrl}); err != nil {
		t.Fatal(err)
	}

	sweeperCfg := withClock("sweeper")
	f := openFeed(t, sweeperCfg)
	subscribe(t, f)
	own := nodeQueue(t, c, prefix, region, "sweeper")

	clk.Advance(time.Minute)
	removed, err := f.Sweep(testwait.Context(t))
	if err != nil || len(removed) != 0 {
		t.Fatalf("Sweep 1 min after the heartbeats = %v, %v; want nothing removed", removed, err)
	}
	if slices.Contains(subscriptions(t, c, topic), orphanARN) {
		t.Error("the subscription of a deleted queue survived a sweep")
	}

	clk.Advance(7 * time.Minute) // crashed and own: 8 min; recent: 4 min
	removed, err = f.Sweep(testwait.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{queueName(crashed)}, removed); diff != "" {
		t.Errorf("Sweep removed (-want +got):\n%s", diff)
	}
	for what, url := range map[string]string{"own": own, "recent": recent, "foreign": aws.ToString(foreign.QueueUrl), "other topic's": elsewhere} {
		if !exists(t, c, url) {
			t.Errorf("the sweep removed the %s queue", what)
		}
	}
	if exists(t, c, crashed) {
		t.Error("the crashed node's queue survived the sweep")
	}
	want := []string{queueARN(t, c, own), queueARN(t, c, recent)}
	slices.Sort(want)
	if diff := cmp.Diff(want, subscriptions(t, c, topic)); diff != "" {
		t.Errorf("subscriptions after the sweep (-want +got):\n%s", diff)
	}
	if v := counterValue(t, sweeperCfg.Registerer, "tcs_sns_swept_subscriptions_total"); v != 1 {
		t.Errorf("tcs_sns_swept_subscriptions_total = %v, want 1", v)
	}

	// Clean up what the test left for the other sweepers of the binary (none
	// share these names, but the emulator is shared).
	for _, url := range []string{recent, elsewhere} {
		c.sqs.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	}
}

// TestSweepChanceShrinksWithTheFleet: up to three nodes all sweep at every
// tick; n nodes sweep with probability 3/n, so a region's fleet makes about
// three sweeps per interval whatever its size.
func TestSweepChanceShrinksWithTheFleet(t *testing.T) {
	t.Parallel()
	never := func(n int) int { return n - 1 } // the highest roll
	for n := 1; n <= 3; n++ {
		if !sns.ShouldSweep(n, never) {
			t.Errorf("%d nodes: a node skipped its sweep, want every node of a fleet of up to 3 to sweep", n)
		}
	}
	for _, roll := range []int{0, 1, 2} {
		if !sns.ShouldSweep(500, func(int) int { return roll }) {
			t.Errorf("500 nodes, roll %d: skipped, want a sweep", roll)
		}
	}
	if sns.ShouldSweep(500, func(int) int { return 3 }) {
		t.Error("500 nodes, roll 3: swept, want a skip")
	}
	const n, ticks = 300, 30000 // 100 ticks of a fleet of 300
	swept := 0
	for range ticks {
		if sns.ShouldSweep(n, rand.N[int]) {
			swept++
		}
	}
	if want := ticks * 3 / n; swept < want/2 || swept > want*2 {
		t.Errorf("%d nodes over %d ticks: %d sweeps, want about %d (3 per interval)", n, ticks, swept, want)
	}
}
