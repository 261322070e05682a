package sns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Sweep removes what crashed nodes of the Feed's region left behind:
//
//   - each queue named with QueueNamePrefix(Prefix, Region) and tagged with
//     the Feed's topic and region whose heartbeat tag is more than
//     StaleAfter old (by Config.Now) is unsubscribed and deleted;
//   - each SQS subscription of the topic whose queue bears the region's
//     prefix but does not exist any more is unsubscribed.
//
// It never touches a queue of a running Subscribe of this Feed, nor a queue
// without the tags (made by something else). It carries on past failures
// and returns them joined, with the names of the queues it removed.
// Subscribe runs it every SweepInterval; a node may also call it itself.
func (f *Feed) Sweep(ctx context.Context) (removed []string, err error) {
	f.m.sweeps.Inc()
	removed, errs := f.sweep(ctx)
	if len(errs) > 0 {
		f.m.sweepErrors.Inc()
	}
	return removed, errors.Join(errs...)
}

func (f *Feed) sweep(ctx context.Context) (removed []string, errs []error) {
	prefix := QueueNamePrefix(f.cfg.Prefix, f.cfg.Region)
	// Subscriptions first: a node creates its queue before subscribing it,
	// so every subscription listed here has its queue created already.
	subs, err := f.subscriptionsByQueue(ctx, prefix)
	if err != nil {
		return nil, []error{err}
	}
	var urls []string
	p := awssqs.NewListQueuesPaginator(f.cfg.SQS, f.listQueuesInput())
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, []error{fmt.Errorf("sqs list queues %s*: %w", prefix, err)}
		}
		urls = append(urls, page.QueueUrls...)
	}

	now := f.cfg.Now()
	listed := make(map[string]bool, len(urls))
	for _, url := range urls {
		name := url[strings.LastIndexByte(url, '/')+1:]
		listed[name] = true
		if f.owns(url) {
			continue
		}
		stale, err := f.stale(ctx, url, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !stale {
			continue
		}
		if err := f.remove(ctx, url, subs[name]); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(subs, name)
		f.m.removedQueues.Inc()
		f.log.Info("swept the invalidation queue of a crashed node", "queue", name)
		removed = append(removed, name)
	}

	for name, arns := range subs {
		if listed[name] {
			continue
		}
		// Not listed: gone, or too new for the listing (SQS lists queues
		// eventually consistently). GetQueueUrl tells which.
		_, err := f.cfg.SQS.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err == nil {
			continue
		}
		if !isQueueGone(err) {
			errs = append(errs, fmt.Errorf("sqs get queue url %s: %w", name, err))
			continue
		}
		for _, arn := range arns {
			if err := f.unsubscribe(ctx, arn); err != nil {
				errs = append(errs, err)
				continue
			}
			f.m.removedSubscriptions.Inc()
			f.log.Info("swept a subscription whose invalidation queue is gone", "queue", name, "subscription", arn)
		}
	}
	return removed, errs
}

// queuesPerPage is the most queue URLs one ListQueues call returns.
const queuesPerPage = 1000

// listQueuesInput lists the node queues of the Feed's region, a full page
// at a time.
func (f *Feed) listQueuesInput() *awssqs.ListQueuesInput {
	return &awssqs.ListQueuesInput{
		QueueNamePrefix: aws.String(QueueNamePrefix(f.cfg.Prefix, f.cfg.Region)),
		MaxResults:      aws.Int32(queuesPerPage),
	}
}

// subscriptionsByQueue returns the ARNs of the topic's SQS subscriptions
// whose queue name starts with prefix, by queue name.
func (f *Feed) subscriptionsByQueue(ctx context.Context, prefix string) (map[string][]string, error) {
	subs := make(map[string][]string)
	p := awssns.NewListSubscriptionsByTopicPaginator(f.cfg.SNS, &awssns.ListSubscriptionsByTopicInput{TopicArn: aws.String(f.cfg.TopicARN)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if isNotFound(err) {
			return nil, noTopic(f.cfg.TopicARN)
		}
		if err != nil {
			return nil, fmt.Errorf("sns list subscriptions of %s: %w", f.cfg.TopicARN, err)
		}
		for _, s := range page.Subscriptions {
			name := nameOfARN(aws.ToString(s.Endpoint))
			arn := aws.ToString(s.SubscriptionArn)
			// "PendingConfirmation" and "Deleted" are not ARNs; SQS
			// subscriptions of one account are confirmed at once.
			if aws.ToString(s.Protocol) != "sqs" || !strings.HasPrefix(name, prefix) || !strings.HasPrefix(arn, "arn:") {
				continue
			}
			subs[name] = append(subs[name], arn)
		}
	}
	return subs, nil
}

func (f *Feed) owns(url string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.own[url]
}

// stale reports whether the queue at url is a node queue of the Feed's
// topic and region whose heartbeat is older than StaleAfter.
func (f *Feed) stale(ctx context.Context, url string, now time.Time) (bool, error) {
	out, err := f.cfg.SQS.ListQueueTags(ctx, &awssqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
	if isQueueGone(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqs list tags of %s: %w", url, err)
	}
	tags := out.Tags
	if tags[TagRole] != roleQueue || tags[TagTopic] != f.cfg.TopicARN || tags[TagRegion] != f.cfg.Region {
		return false, nil
	}
	hb := tags[TagHeartbeat]
	if hb == "" {
		hb = tags[TagCreated]
	}
	at, err := time.Parse(timeFormat, hb)
	if err != nil {
		return false, fmt.Errorf("sqs queue %s: heartbeat tag %q: %w", url, hb, err)
	}
	return now.Sub(at) > f.cfg.StaleAfter, nil
}

// remove unsubscribes and deletes a crashed node's queue. What another
// sweeper removed first counts as removed.
func (f *Feed) remove(ctx context.Context, url string, subscriptions []string) error {
	for _, arn := range subscriptions {
		if err := f.unsubscribe(ctx, arn); err != nil {
			return err
		}
	}
	return f.deleteQueue(ctx, url)
}
