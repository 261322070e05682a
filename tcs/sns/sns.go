// Package sns is the distributed invalidation broadcast: one SNS topic per
// region, to which the region's applier publishes (Broadcaster), and one SQS
// queue per tcs node, subscribed to the topic with raw message delivery and
// long-polled by the node (Feed). It is the AWS counterpart of package
// fanout (docs/architecture.md, "Two families of backends").
//
// # Names and tags
//
// The topic of a region is TopicName(prefix, region), for example
// "tcs-invalidations-eu-west-1"; the infrastructure code creates it
// (CreateTopic does the same, idempotently). A node's queue lives only as
// long as one Subscribe call: it is created when Subscribe starts and
// removed (unsubscribed, then deleted) when it ends cleanly. Its name is
//
//	<prefix>-inv-<region>-<node id>-<8 random hex digits>
//
// at most 80 characters of [A-Za-z0-9_-] (the node id is cleaned and
// shortened to fit); QueueNamePrefix(prefix, region) is the part every queue
// of a region shares. The random suffix keeps two processes that share a
// node id (or a restarted one) apart, since CreateQueue of an existing name
// returns the existing queue. The queue carries the tags
//
//	tcs:role       invalidation-queue
//	tcs:topic      the topic ARN it is subscribed to
//	tcs:region     the region
//	tcs:node       the node id
//	tcs:created    creation time (RFC 3339, milliseconds, UTC)
//	tcs:heartbeat  refreshed every HeartbeatInterval while the node runs
//	tcs_alarm_group  AlarmGroup(prefix, region), "<prefix>-inv-<region>"
//
// The last one is what the region template's CloudWatch alarm on the age of
// the oldest message selects the region's queues by (a Metrics Insights
// query, WHERE tag.tcs_alarm_group = '…'): the names are generated, and
// Metrics Insights matches dimensions by equality only. Its key has only
// letters and underscores, so the query needs no quoting.
// and a policy allowing the topic (and nothing else) to send to it.
//
// # Crashed nodes
//
// A node that dies without a clean stop leaves its queue and subscription
// behind; SNS would keep filling the queue. Feeds sweep: about three times
// per SweepInterval one of the region's nodes (chosen at random, see
// Config.SweepInterval) lists the queues named with its region's prefix, and
// removes each one tagged with its topic and region whose heartbeat is older
// than StaleAfter — never a queue of its own. It also removes subscriptions
// of the topic whose queue (named with the region's prefix) no longer
// exists. Several nodes sweeping at once is harmless: removing what is
// already gone counts as done.
//
// # Delivery
//
// SNS to SQS delivery is at least once and SQS standard queues do not keep
// order, so invalidations may arrive duplicated and out of order; the cache
// compares versions and does not care (see tcs.Feed). Lost or delayed
// messages only delay freshness up to the cache TTL (invariant 5); the Feed
// calls gap when it starts, when a receive fails, when a message cannot be
// decoded, and once more SettleTime after the start, because on AWS a new
// queue's policy takes up to a minute to apply and SNS drops what it cannot
// deliver meanwhile.
//
// The applier's feed heartbeats (tcs.Invalidation's Heartbeat) travel the
// same way, as messages of kind "heartbeat", and are delivered like
// invalidations. A lookup server built before heartbeats existed cannot
// decode them, and calls gap for each one: upgrade the tcs nodes before the
// appliers, or run the appliers with heartbeats off until then.
//
// A received message is invisible to further receives until the Feed
// deletes it, or RedeliverAfter has passed. SQS's own default (30 s) is too
// long for a cache: a receive whose response is lost on the way (the SDK
// then retries the call, and the retry does not see the message) would
// delay that invalidation by the full timeout. The Feed asks for
// RedeliverAfter on every receive instead; a node that is slower than that
// to hand a batch to the cache gets the batch twice, which is harmless.
//
// # Permissions
//
// The applier needs sns:Publish and sns:GetTopicAttributes on the topic. A
// node needs sns:GetTopicAttributes, sns:Subscribe, sns:Unsubscribe and
// sns:ListSubscriptionsByTopic on the topic, and sqs:CreateQueue,
// sqs:TagQueue, sqs:ListQueueTags, sqs:GetQueueAttributes,
// sqs:SetQueueAttributes, sqs:GetQueueUrl, sqs:ReceiveMessage,
// sqs:DeleteMessage, sqs:DeleteQueue and sqs:ListQueues on the queues named
// "<prefix>-inv-<region>-*".
package sns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// Defaults of Config.
const (
	DefaultPrefix            = "tcs"
	DefaultWaitTime          = 20 * time.Second
	DefaultRedeliverAfter    = 5 * time.Second
	DefaultHeartbeatInterval = time.Minute
	DefaultStaleAfter        = 5 * time.Minute
	DefaultSweepInterval     = 5 * time.Minute
	DefaultSettleTime        = time.Minute
	DefaultCleanupTimeout    = 10 * time.Second
)

// ErrNoTopic is wrapped by the errors reporting that the region's topic does
// not exist.
var ErrNoTopic = errors.New("sns: invalidation topic does not exist")

// Tag keys of a node's queue; see the package comment.
const (
	TagRole      = "tcs:role"
	TagTopic     = "tcs:topic"
	TagRegion    = "tcs:region"
	TagNode      = "tcs:node"
	TagCreated   = "tcs:created"
	TagHeartbeat = "tcs:heartbeat"
	// TagAlarmGroup is the tag the CloudWatch queue-age alarm selects
	// queues by; its value is AlarmGroup(prefix, region).
	TagAlarmGroup = "tcs_alarm_group"

	roleQueue = "invalidation-queue"
)

// timeFormat is the format of the time tags: sortable, and fine enough for
// short bounds in tests.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// maxQueueName is SQS's limit on a queue name.
const maxQueueName = 80

// SNSAPI is the part of the SNS client this package uses; *sns.Client
// implements it. The Broadcaster uses only Publish and GetTopicAttributes.
type SNSAPI interface {
	Publish(ctx context.Context, in *awssns.PublishInput, optFns ...func(*awssns.Options)) (*awssns.PublishOutput, error)
	GetTopicAttributes(ctx context.Context, in *awssns.GetTopicAttributesInput, optFns ...func(*awssns.Options)) (*awssns.GetTopicAttributesOutput, error)
	Subscribe(ctx context.Context, in *awssns.SubscribeInput, optFns ...func(*awssns.Options)) (*awssns.SubscribeOutput, error)
	Unsubscribe(ctx context.Context, in *awssns.UnsubscribeInput, optFns ...func(*awssns.Options)) (*awssns.UnsubscribeOutput, error)
	ListSubscriptionsByTopic(ctx context.Context, in *awssns.ListSubscriptionsByTopicInput, optFns ...func(*awssns.Options)) (*awssns.ListSubscriptionsByTopicOutput, error)
}

// SQSAPI is the part of the SQS client the Feed uses; *sqs.Client
// implements it.
type SQSAPI interface {
	CreateQueue(ctx context.Context, in *awssqs.CreateQueueInput, optFns ...func(*awssqs.Options)) (*awssqs.CreateQueueOutput, error)
	DeleteQueue(ctx context.Context, in *awssqs.DeleteQueueInput, optFns ...func(*awssqs.Options)) (*awssqs.DeleteQueueOutput, error)
	GetQueueAttributes(ctx context.Context, in *awssqs.GetQueueAttributesInput, optFns ...func(*awssqs.Options)) (*awssqs.GetQueueAttributesOutput, error)
	SetQueueAttributes(ctx context.Context, in *awssqs.SetQueueAttributesInput, optFns ...func(*awssqs.Options)) (*awssqs.SetQueueAttributesOutput, error)
	GetQueueUrl(ctx context.Context, in *awssqs.GetQueueUrlInput, optFns ...func(*awssqs.Options)) (*awssqs.GetQueueUrlOutput, error)
	ReceiveMessage(ctx context.Context, in *awssqs.ReceiveMessageInput, optFns ...func(*awssqs.Options)) (*awssqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *awssqs.DeleteMessageBatchInput, optFns ...func(*awssqs.Options)) (*awssqs.DeleteMessageBatchOutput, error)
	TagQueue(ctx context.Context, in *awssqs.TagQueueInput, optFns ...func(*awssqs.Options)) (*awssqs.TagQueueOutput, error)
	ListQueueTags(ctx context.Context, in *awssqs.ListQueueTagsInput, optFns ...func(*awssqs.Options)) (*awssqs.ListQueueTagsOutput, error)
	ListQueues(ctx context.Context, in *awssqs.ListQueuesInput, optFns ...func(*awssqs.Options)) (*awssqs.ListQueuesOutput, error)
}

// Config configures OpenBroadcaster and OpenFeed. Zero durations take the
// defaults named.
type Config struct {
	// SNS talks to SNS in the region. Required. Throttling and 5xx
	// responses are retried by its retryer (the SDK's standard retryer
	// backs off and retries them).
	SNS SNSAPI
	// SQS talks to SQS in the region. Required by OpenFeed; the
	// Broadcaster does not use it.
	SQS SQSAPI
	// TopicARN is the region's invalidation topic (TopicName names it;
	// LookupTopic finds its ARN). Required.
	TopicARN string
	// Region is the region whose invalidations the topic carries; it names
	// and tags the node's queue. Required.
	Region string
	// Prefix starts the queue names (see the package comment); empty means
	// DefaultPrefix. It must be the prefix the topic was named with.
	Prefix string
	// NodeID names this tcs node in its queue's name and tags; empty means
	// the host name.
	NodeID string
	// WaitTime is the long-poll wait of each receive, rounded to whole
	// seconds from 1 to 20. Default DefaultWaitTime (20 s).
	WaitTime time.Duration
	// RedeliverAfter is how long a received message stays invisible to
	// further receives before SQS delivers it again if the Feed has not
	// deleted it (the receive's visibility timeout), rounded to whole
	// seconds from 1 s to 12 h. Default DefaultRedeliverAfter (5 s).
	RedeliverAfter time.Duration
	// HeartbeatInterval is how often a subscribed node refreshes its
	// queue's heartbeat tag. Default DefaultHeartbeatInterval (1 min).
	HeartbeatInterval time.Duration
	// StaleAfter is how old a queue's heartbeat must be for a sweep to
	// remove it: at least twice HeartbeatInterval. Default
	// DefaultStaleAfter (5 min).
	StaleAfter time.Duration
	// SweepInterval is how often the region's nodes together sweep about
	// three times: each subscribed node wakes up every SweepInterval
	// (jittered) and sweeps with a probability that shrinks as the fleet
	// grows, so the calls sweeping costs grow with the number of nodes, not
	// its square. Default DefaultSweepInterval (5 min); negative means never
	// (Sweep can still be called).
	SweepInterval time.Duration
	// SettleTime is how long after subscribing the Feed calls gap once
	// more (see the package comment). Default DefaultSettleTime (1 min);
	// negative means never.
	SettleTime time.Duration
	// CleanupTimeout bounds the clean stop (unsubscribe, delete the queue)
	// once Subscribe's context has ended. Default DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics (tcs_sns_*, labelled with the
	// region); nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of the time tags and of the sweep; nil means
	// time.Now.
	Now func() time.Time
}

// withDefaults checks the fields both sides need and fills in defaults.
func (cfg Config) withDefaults(what string) (Config, error) {
	switch {
	case cfg.SNS == nil:
		return cfg, fmt.Errorf("sns %s: no SNS client", what)
	case cfg.TopicARN == "":
		return cfg, fmt.Errorf("sns %s: no topic ARN", what)
	case cfg.Region == "":
		return cfg, fmt.Errorf("sns %s: no region", what)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.NodeID == "" {
		cfg.NodeID, _ = os.Hostname()
		if cfg.NodeID == "" {
			cfg.NodeID = "node"
		}
	}
	if cfg.WaitTime <= 0 {
		cfg.WaitTime = DefaultWaitTime
	}
	// SQS waits whole seconds, 1 to 20 (0 would be a busy loop).
	cfg.WaitTime = min(max(cfg.WaitTime.Round(time.Second), time.Second), 20*time.Second)
	if cfg.RedeliverAfter <= 0 {
		cfg.RedeliverAfter = DefaultRedeliverAfter
	}
	// SQS's visibility timeout is whole seconds, 0 to 12 h; 0 would hand
	// every unfinished batch to the next receive again.
	cfg.RedeliverAfter = min(max(cfg.RedeliverAfter.Round(time.Second), time.Second), 12*time.Hour)
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.SettleTime == 0 {
		cfg.SettleTime = DefaultSettleTime
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = DefaultCleanupTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

// TopicName is the name of a region's invalidation topic.
func TopicName(prefix, region string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "-invalidations-" + region
}

// QueueNamePrefix is what the names of all node queues of a region start
// with.
func QueueNamePrefix(prefix, region string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "-inv-" + region + "-"
}

// AlarmGroup is the value of a region's queues' TagAlarmGroup tag:
// "<prefix>-inv-<region>".
func AlarmGroup(prefix, region string) string {
	return strings.TrimSuffix(QueueNamePrefix(prefix, region), "-")
}

// queueName returns a fresh queue name for node: the region's prefix, the
// node id cleaned to SQS's alphabet and shortened to fit, and a random
// suffix.
func queueName(prefix, region, node string) (string, error) {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", err
	}
	head := QueueNamePrefix(prefix, region)
	room := maxQueueName - len(head) - 1 - 2*len(suffix)
	if room < 1 {
		return "", fmt.Errorf("sns: queue name prefix %q leaves no room for a node id in %d characters", head, maxQueueName)
	}
	clean := []byte(node)
	for i, c := range clean {
		if !validQueueChar(c) {
			clean[i] = '-'
		}
	}
	if len(clean) > room {
		clean = clean[:room]
	}
	if len(clean) == 0 {
		clean = []byte("node")
	}
	name := head + string(clean) + "-" + hex.EncodeToString(suffix[:])
	for i := 0; i < len(head); i++ {
		if !validQueueChar(head[i]) {
			return "", fmt.Errorf("sns: queue name %q: prefix and region may hold only A-Z, a-z, 0-9, '-' and '_'", name)
		}
	}
	return name, nil
}

func validQueueChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// nameOfARN returns the last field of an ARN: a queue's or topic's name.
func nameOfARN(arn string) string {
	return arn[strings.LastIndexByte(arn, ':')+1:]
}

// noTopic is the error for a topic that does not exist.
func noTopic(arn string) error {
	return fmt.Errorf("%w: %s (create the region's topics with `tcsctl infra apply`)", ErrNoTopic, arn)
}

// checkTopic returns an error wrapping ErrNoTopic, naming the topic and the
// command that creates it, if the topic does not exist.
func checkTopic(ctx context.Context, client SNSAPI, arn string) error {
	_, err := client.GetTopicAttributes(ctx, &awssns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
	if isNotFound(err) {
		return noTopic(arn)
	}
	if err != nil {
		return fmt.Errorf("sns get topic attributes %s: %w", arn, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf *snstypes.NotFoundException
	return errors.As(err, &nf)
}

// CreateTopicAPI is what CreateTopic needs; *sns.Client implements it.
type CreateTopicAPI interface {
	CreateTopic(ctx context.Context, in *awssns.CreateTopicInput, optFns ...func(*awssns.Options)) (*awssns.CreateTopicOutput, error)
}

// CreateTopic creates the topic named name, or finds it if it exists, and
// returns its ARN. Production topics come from the infrastructure code
// (`tcsctl infra apply`), which adds encryption and access policies.
func CreateTopic(ctx context.Context, client CreateTopicAPI, name string) (arn string, err error) {
	out, err := client.CreateTopic(ctx, &awssns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("sns create topic %s: %w", name, err)
	}
	return aws.ToString(out.TopicArn), nil
}

// ListTopicsAPI is what LookupTopic needs; *sns.Client implements it.
type ListTopicsAPI interface {
	ListTopics(ctx context.Context, in *awssns.ListTopicsInput, optFns ...func(*awssns.Options)) (*awssns.ListTopicsOutput, error)
}

// LookupTopic returns the ARN of the topic named name, or an error wrapping
// ErrNoTopic that says how to create it.
func LookupTopic(ctx context.Context, client ListTopicsAPI, name string) (arn string, err error) {
	p := awssns.NewListTopicsPaginator(client, &awssns.ListTopicsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("sns list topics: %w", err)
		}
		for _, t := range page.Topics {
			if a := aws.ToString(t.TopicArn); nameOfARN(a) == name {
				return a, nil
			}
		}
	}
	return "", noTopic(name)
}

// message is an Invalidation on the wire: the SNS message, delivered raw as
// the SQS message body. Kind says which: an invalidation of a tenant, or a
// feed heartbeat (tcs.Invalidation's Heartbeat), which carries only kind and
// committed_at (heartbeat). traceparent and tracestate, set only for a
// traced change, are the W3C trace context of its apply (receivers before
// them ignore them, as they ignore any unknown field).
type message struct {
	Kind        string    `json:"kind"`
	TenantID    string    `json:"tenant_id"`
	Version     int64     `json:"version"`
	Hostnames   []string  `json:"hostnames"`
	CommittedAt time.Time `json:"committed_at,omitzero"`
	Traceparent string    `json:"traceparent,omitempty"`
	Tracestate  string    `json:"tracestate,omitempty"`
}

type heartbeat struct {
	Kind        string    `json:"kind"`
	CommittedAt time.Time `json:"committed_at"`
}

const (
	kindInvalidation = "invalidation"
	kindHeartbeat    = "heartbeat"
)

func encode(inv tcs.Invalidation) ([]byte, error) {
	if inv.Heartbeat() {
		return json.Marshal(heartbeat{Kind: kindHeartbeat, CommittedAt: inv.CommittedAt})
	}
	hs := inv.Hostnames
	if hs == nil {
		hs = []string{}
	}
	return json.Marshal(message{Kind: kindInvalidation, TenantID: inv.TenantID, Version: inv.Version, Hostnames: hs, CommittedAt: inv.CommittedAt,
		Traceparent: inv.Trace.Parent, Tracestate: inv.Trace.State})
}

// decode parses a message body. Unknown fields are ignored, so that a newer
// publisher can add some.
func decode(body string) (tcs.Invalidation, error) {
	var m message
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return tcs.Invalidation{}, err
	}
	switch m.Kind {
	case kindInvalidation:
		if m.TenantID == "" {
			return tcs.Invalidation{}, errors.New("invalidation with no tenant_id")
		}
		return tcs.Invalidation{TenantID: m.TenantID, Version: m.Version, Hostnames: m.Hostnames, CommittedAt: m.CommittedAt,
			Trace: tenant.TraceContext{Parent: m.Traceparent, State: m.Tracestate}}, nil
	case kindHeartbeat:
		switch {
		case m.TenantID != "" || len(m.Hostnames) > 0:
			return tcs.Invalidation{}, errors.New("heartbeat with a tenant_id or hostnames")
		case m.CommittedAt.IsZero():
			return tcs.Invalidation{}, errors.New("heartbeat with no committed_at")
		}
		return tcs.Invalidation{CommittedAt: m.CommittedAt}, nil
	}
	return tcs.Invalidation{}, fmt.Errorf("kind %q, want %q or %q", m.Kind, kindInvalidation, kindHeartbeat)
}

// counter makes a counter labelled with the region and registers it with
// reg (if not nil), reusing one already registered under the same name.
func counter(reg prometheus.Registerer, region, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"region": region}})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("sns: register metric %s: %v", name, err))
	}
	return c
}
