package sns_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/sns"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// clients are an SNS and an SQS client of one region, on the test binary's
// fauxqs (which keeps resources per region, by the request signature).
type clients struct {
	sns *awssns.Client
	sqs *awssqs.Client
}

var (
	clientsMu sync.Mutex
	byRegion  = map[string]clients{}
)

func regionClients(tb testing.TB, region string) clients {
	tb.Helper()
	endpoint := emulators.SharedSNSSQS(tb)
	clientsMu.Lock()
	defer clientsMu.Unlock()
	c, ok := byRegion[region]
	if !ok {
		creds := credentials.NewStaticCredentialsProvider("test", "test", "")
		c = clients{
			sns: awssns.New(awssns.Options{BaseEndpoint: aws.String(endpoint), Region: region, Credentials: creds}),
			sqs: awssqs.New(awssqs.Options{BaseEndpoint: aws.String(endpoint), Region: region, Credentials: creds}),
		}
		byRegion[region] = c
	}
	return c
}

// newPrefix returns a name prefix of the test's own, so that tests sharing
// the emulator do not see each other's topics and queues.
func newPrefix() string { return emulators.Name("t") }

// newTopic creates the region's topic for prefix and deletes it when tb
// ends.
func newTopic(tb testing.TB, prefix, region string) string {
	tb.Helper()
	c := regionClients(tb, region)
	arn, err := sns.CreateTopic(testwait.Context(tb), c.sns, sns.TopicName(prefix, region))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.sns.DeleteTopic(context.Background(), &awssns.DeleteTopicInput{TopicArn: aws.String(arn)})
	})
	return arn
}

// config returns a Config for a node of region on topic, with short waits
// and no periodic sweeping or settle gap.
func config(tb testing.TB, prefix, region, topic, node string) sns.Config {
	tb.Helper()
	c := regionClients(tb, region)
	return sns.Config{
		SNS:               c.sns,
		SQS:               c.sqs,
		TopicARN:          topic,
		Region:            region,
		Prefix:            prefix,
		NodeID:            node,
		WaitTime:          time.Second,
		HeartbeatInterval: time.Minute,
		StaleAfter:        5 * time.Minute,
		SweepInterval:     -1,
		SettleTime:        -1,
		CleanupTimeout:    5 * time.Second,
		Registerer:        prometheus.NewRegistry(),
		Logger:            slog.New(slog.NewTextHandler(tb.Output(), nil)),
	}
}

func openFeed(tb testing.TB, cfg sns.Config) *sns.Feed {
	tb.Helper()
	f, err := sns.OpenFeed(testwait.Context(tb), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func openBroadcaster(tb testing.TB, cfg sns.Config) *sns.Broadcaster {
	tb.Helper()
	b, err := sns.OpenBroadcaster(testwait.Context(tb), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// event is what a subscriber saw: an invalidation, or a gap (gap true).
type event struct {
	gap bool
	inv tcs.Invalidation
}

// node runs a Feed's Subscribe and records what it delivers.
type node struct {
	mu     sync.Mutex
	events []event
	seen   chan event
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// subscribe runs f.Subscribe until the returned node is stopped (or tb
// ends), and waits for its first gap: from then on broadcasts reach it.
func subscribe(tb testing.TB, f *sns.Feed) *node {
	tb.Helper()
	n := &node{seen: make(chan event, 10000), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		n.done <- f.Subscribe(ctx,
			func(inv tcs.Invalidation) { n.record(event{inv: inv}) },
			func() { n.record(event{gap: true}) })
	}()
	tb.Cleanup(func() {
		if err := n.stop(); err != nil {
			tb.Errorf("Subscribe: %v", err)
		}
	})
	n.waitFor(tb, "the first gap", func(e event) bool { return e.gap })
	return n
}

func (n *node) record(e event) {
	n.mu.Lock()
	n.events = append(n.events, e)
	n.mu.Unlock()
	n.seen <- e
}

// stop ends the subscription and returns what Subscribe returned.
func (n *node) stop() error {
	n.once.Do(func() {
		n.cancel()
		select {
		case n.err = <-n.done:
		case <-time.After(30 * time.Second):
			n.err = errors.New("Subscribe did not return within 30 s of its context ending")
		}
	})
	return n.err
}

// waitFor blocks until the node sees an event matching ok.
func (n *node) waitFor(tb testing.TB, what string, ok func(event) bool) {
	tb.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-n.seen:
			if ok(e) {
				return
			}
		case err := <-n.done:
			n.done <- err
			tb.Fatalf("Subscribe returned %v while waiting for %s", err, what)
		case <-timeout:
			tb.Fatalf("timed out waiting for %s; saw %v", what, n.snapshot())
		}
	}
}

func (n *node) waitVersion(tb testing.TB, v int64) {
	tb.Helper()
	n.waitFor(tb, fmt.Sprintf("invalidation version %d", v), func(e event) bool { return !e.gap && e.inv.Version == v })
}

func (n *node) snapshot() []event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.events)
}

// invalidations returns the invalidations seen, by version.
func (n *node) invalidations() []tcs.Invalidation {
	var out []tcs.Invalidation
	for _, e := range n.snapshot() {
		if !e.gap {
			out = append(out, e.inv)
		}
	}
	slices.SortFunc(out, func(a, b tcs.Invalidation) int { return int(a.Version - b.Version) })
	return out
}

func (n *node) gaps() int {
	g := 0
	for _, e := range n.snapshot() {
		if e.gap {
			g++
		}
	}
	return g
}

// queues returns the URLs of the queues whose name starts with prefix.
func queues(tb testing.TB, c clients, prefix string) []string {
	tb.Helper()
	out, err := c.sqs.ListQueues(testwait.Context(tb), &awssqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix)})
	if err != nil {
		tb.Fatal(err)
	}
	return out.QueueUrls
}

// subscriptions returns the endpoints (queue ARNs) subscribed to topic.
func subscriptions(tb testing.TB, c clients, topic string) []string {
	tb.Helper()
	out, err := c.sns.ListSubscriptionsByTopic(testwait.Context(tb), &awssns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic)})
	if err != nil {
		tb.Fatal(err)
	}
	var eps []string
	for _, s := range out.Subscriptions {
		eps = append(eps, aws.ToString(s.Endpoint))
	}
	slices.Sort(eps)
	return eps
}

// nodeQueue returns the one queue of node, failing if there is not exactly
// one.
func nodeQueue(tb testing.TB, c clients, prefix, region, node string) string {
	tb.Helper()
	qs := queues(tb, c, sns.QueueNamePrefix(prefix, region)+node+"-")
	if len(qs) != 1 {
		tb.Fatalf("queues of node %s: %v, want one", node, qs)
	}
	return qs[0]
}

func queueName(url string) string { return url[strings.LastIndexByte(url, '/')+1:] }

// waitUntil polls cond every 20 ms (many conditions here cost a request to
// fauxqs) until it holds, failing after 15 s.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testwait.Until(tb, 15*time.Second, 20*time.Millisecond, what, func() (bool, string) { return cond(), "it does not hold" })
}

// counterValue returns the value of the counter name in reg (0 if absent).
func counterValue(tb testing.TB, reg prometheus.Registerer, name string) float64 {
	tb.Helper()
	mfs, err := reg.(prometheus.Gatherer).Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}
