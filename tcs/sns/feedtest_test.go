package sns_test

import (
	"context"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/feedtest"
	"github.com/tcs-dev/tcs/tcs/sns"
)

func TestFeedConformance(t *testing.T) {
	feedtest.Run(t, func(t *testing.T) feedtest.Pair {
		ctx := context.Background()
		const region = "eu-west-1"
		c := regionClients(t, region)
		prefix := newPrefix()
		arn, err := sns.CreateTopic(ctx, c.sns, sns.TopicName(prefix, region))
		if err != nil {
			t.Fatal(err)
		}
		cfg := sns.Config{SNS: c.sns, SQS: c.sqs, TopicARN: arn, Region: region, Prefix: prefix,
			WaitTime: time.Second, SweepInterval: -1, SettleTime: -1}
		b, err := sns.OpenBroadcaster(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return feedtest.Pair{Broadcaster: b, Timeout: 15 * time.Second, NewFeed: func(t *testing.T) tcs.Feed {
			f, err := sns.OpenFeed(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}}
	})
}
