package client

import (
	"context"
	"errors"
	"time"

	"github.com/tcs-dev/tcs/internal/backoff"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Backoff between Watch streams that ended.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

var errSilent = errors.New("watch stream silent for three heartbeat intervals")

// watch keeps a Watch stream open on the current region (the first healthy
// one, local first; the next one after a stream that failed before its
// Resync) until Close, applying what it carries to the cache.
func (c *Client) watch() {
	wait := backoff.New(minBackoff, maxBackoff, backoff.UpTo)
	next := 0
	for {
		r := c.watchRegion(next)
		resynced, err := c.watchOnce(r)
		c.setWatching(r, false, err)
		if c.ctx.Err() != nil {
			return
		}
		if resynced {
			wait.Reset()
			next = 0
		} else {
			next++
		}
		if wait.Wait(c.ctx) != nil {
			return
		}
	}
}

// watchRegion picks the region of the next stream: the first one from
// regions[from%n] on whose breaker is closed, or regions[from%n] if none is.
func (c *Client) watchRegion(from int) *region {
	n := len(c.regions)
	now := time.Now()
	for i := range n {
		if r := c.regions[(from+i)%n]; r.healthy(now) {
			return r
		}
	}
	return c.regions[from%n]
}

// watchOnce runs one Watch stream on r until it fails, and reports whether
// it got as far as its Resync.
func (c *Client) watchOnce(r *region) (resynced bool, _ error) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	defer cancel(nil)
	timeout := c.cfg.heartbeatTimeout
	c.silence.Store(int64(timeout))
	dog := time.AfterFunc(timeout, func() { cancel(errSilent) })
	defer dog.Stop()
	stream, err := r.api.Watch(ctx, &tcsv1.WatchRequest{})
	if err != nil {
		return false, err
	}
	var acks *acker // see ack.go
	for {
		msg, err := stream.Recv()
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errSilent) {
				err = errSilent
			}
			return resynced, err
		}
		switch k := msg.GetKind().(type) {
		case *tcsv1.WatchResponse_Resync:
			c.cache.resync()
			if acks == nil {
				acks = c.startAcker(ctx, r.api, k.Resync.GetSessionId())
			}
			acks.ack(msg.GetSeq())
			if !resynced {
				resynced = true
				c.setWatching(r, true, nil)
			}
		case *tcsv1.WatchResponse_Invalidation:
			inv := k.Invalidation
			c.cache.invalidate(inv.GetTenantId(), inv.GetVersion(), inv.GetHostnames())
			acks.ack(msg.GetSeq())
			c.hooks.Invalidation()
		case *tcsv1.WatchResponse_Heartbeat:
			if iv := k.Heartbeat.GetInterval().AsDuration(); iv > 0 && 3*iv != timeout {
				timeout = 3 * iv
				c.silence.Store(int64(timeout))
			}
		}
		if msg.GetAckNow() {
			acks.ackNow()
		}
		dog.Reset(timeout)
	}
}

// setWatching records whether the stream on r is up.
func (c *Client) setWatching(r *region, up bool, err error) {
	changed := c.cache.setWatching(up)
	c.ready.set(up, err)
	if !changed {
		return
	}
	c.hooks.WatchState(r.label(), up)
	if up {
		c.log.Info("tcs watch stream up", "region", r.label())
	} else if c.ctx.Err() == nil {
		c.log.Warn("tcs watch stream lost; cache TTL shortened until it is back",
			"region", r.label(), "ttl", c.cfg.disconnectedTTL, "err", err)
	}
}
