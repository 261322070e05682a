package clienttest

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/tcs/client"
)

// CallEveryHook calls each of h's hooks (those that are set) in a fixed
// sequence, for the tests of a Hooks adapter (a metrics library's, say):
// 2 hits, 1 miss, 1 stale serve, 1 remembered, 1 invalidation; a hedge in
// eu-west-1; failovers in eu-west-1 and us-east-1; a breaker opening in
// us-east-1; a region behind in ap-southeast-2; two RPCs to eu-west-1, one
// of 3ms that succeeded and one of 2s that failed with UNAVAILABLE; and
// the Watch stream up in eu-west-1, then up and down in us-east-1.
func CallEveryHook(h client.Hooks) {
	call := func(f func()) {
		if f != nil {
			f()
		}
	}
	region := func(f func(string), r string) {
		if f != nil {
			f(r)
		}
	}
	call(h.Hit)
	call(h.Hit)
	call(h.Miss)
	call(h.StaleServe)
	call(h.Remembered)
	call(h.Invalidation)
	region(h.Hedge, "eu-west-1")
	region(h.Failover, "eu-west-1")
	region(h.Failover, "us-east-1")
	region(h.BreakerOpen, "us-east-1")
	region(h.Behind, "ap-southeast-2")
	if h.RPC != nil {
		h.RPC("eu-west-1", 3*time.Millisecond, nil)
		h.RPC("eu-west-1", 2*time.Second, status.Error(codes.Unavailable, "down"))
	}
	if h.WatchState != nil {
		h.WatchState("eu-west-1", true)
		h.WatchState("us-east-1", true)
		h.WatchState("us-east-1", false)
	}
}
