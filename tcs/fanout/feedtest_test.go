package fanout_test

import (
	"testing"

	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/fanout"
	"github.com/tcs-dev/tcs/tcs/feedtest"
)

func TestFeedConformance(t *testing.T) {
	feedtest.Run(t, func(t *testing.T) feedtest.Pair {
		h := fanout.New(fanout.Options{})
		t.Cleanup(func() { h.Close() })
		return feedtest.Pair{Broadcaster: h, NewFeed: func(*testing.T) tcs.Feed { return h }}
	})
}
