package sns

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/tcs"
)

// maxMessage is the most bytes of JSON one published message holds: SNS
// takes 256 KiB including the message attributes, and this leaves them
// ample room. A larger invalidation is split by hostnames.
const maxMessage = 200 << 10

// Broadcaster publishes a region's invalidations to its topic. It implements
// tcs.Broadcaster and is safe for concurrent use.
type Broadcaster struct {
	sns   SNSAPI
	topic *string

	published prometheus.Counter
	failed    prometheus.Counter
}

var _ tcs.Broadcaster = (*Broadcaster)(nil)

// OpenBroadcaster checks that the topic exists and returns a Broadcaster to
// it. It uses cfg.SNS, TopicARN, Region (a metric label) and Registerer; it
// does not log (the applier logs what Broadcast returns). A missing topic is
// an error wrapping ErrNoTopic that names it and the command that creates
// it. It panics if the metrics cannot be registered.
func OpenBroadcaster(ctx context.Context, cfg Config) (*Broadcaster, error) {
	cfg, err := cfg.withDefaults("broadcaster")
	if err != nil {
		return nil, err
	}
	if err := checkTopic(ctx, cfg.SNS, cfg.TopicARN); err != nil {
		return nil, fmt.Errorf("sns open broadcaster: %w", err)
	}
	return &Broadcaster{
		sns:       cfg.SNS,
		topic:     aws.String(cfg.TopicARN),
		published: counter(cfg.Registerer, cfg.Region, "tcs_sns_published_total", "Invalidation messages (heartbeats included) published to the region's SNS topic."),
		failed:    counter(cfg.Registerer, cfg.Region, "tcs_sns_publish_errors_total", "Invalidation messages (heartbeats included) that could not be published (after the SDK's retries)."),
	}, nil
}

// Broadcast publishes inv as JSON to the topic, with the tenant id and
// version as message attributes (for filter policies and debugging); a
// heartbeat (inv.Heartbeat()) is a message of its own kind, with the
// attribute kind=heartbeat. An invalidation too large for one message is
// split by hostnames into several, each a valid invalidation of the same
// tenant and version. The SNS client's retryer retries throttling and server
// errors within ctx, and Broadcast returns once ctx ends (the SDK honours
// it), so a frozen endpoint costs the caller no more than its deadline; what
// still fails is returned, and a missing topic is an error wrapping
// ErrNoTopic. Delivery is best effort (see tcs.Broadcaster).
func (b *Broadcaster) Broadcast(ctx context.Context, inv tcs.Invalidation) error {
	what := fmt.Sprintf("invalidation %s@%d", inv.TenantID, inv.Version)
	attrs := map[string]snstypes.MessageAttributeValue{
		"tenant_id": {DataType: aws.String("String"), StringValue: aws.String(inv.TenantID)},
		"version":   {DataType: aws.String("Number"), StringValue: aws.String(strconv.FormatInt(inv.Version, 10))},
	}
	if inv.Heartbeat() {
		// SNS rejects an empty attribute value: a heartbeat has no tenant.
		what = "heartbeat"
		attrs = map[string]snstypes.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String(kindHeartbeat)}}
	}
	body, err := encode(inv)
	if err != nil {
		return fmt.Errorf("sns encode %s: %w", what, err)
	}
	if len(body) > maxMessage && len(inv.Hostnames) > 1 {
		half := len(inv.Hostnames) / 2
		first, second := inv, inv
		first.Hostnames, second.Hostnames = inv.Hostnames[:half], inv.Hostnames[half:]
		if err := b.Broadcast(ctx, first); err != nil {
			return err
		}
		return b.Broadcast(ctx, second)
	}
	_, err = b.sns.Publish(ctx, &awssns.PublishInput{
		TopicArn:          b.topic,
		Message:           aws.String(string(body)),
		MessageAttributes: attrs,
	})
	if err != nil {
		b.failed.Inc()
		if isNotFound(err) {
			err = noTopic(*b.topic)
		}
		return fmt.Errorf("sns publish %s: %w", what, err)
	}
	b.published.Inc()
	return nil
}
