package client

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// DefaultAckInterval is WithAckInterval's default.
const DefaultAckInterval = 100 * time.Millisecond

// ackAttempts is how many times one ack is sent while the region answers
// NotFound: with round-robin balancing over a region's nodes (see
// WithBalancing) a unary call may reach another node than the one holding
// the Watch stream, which does not know its session; each attempt goes to
// the next node. A region of more nodes than this may lose acks (its
// node then counts the client as lagging, or as not acknowledging).
const ackAttempts = 8

// ackTimeout bounds one Ack call.
const ackTimeout = 2 * time.Second

// WithAckInterval sets how often, at most, the client acknowledges the
// messages of its Watch stream that it has applied (TenantContextService.Ack),
// so that the catalog's propagation status can tell when this cache has
// seen a change. An ack is sent only when something new was applied.
// Negative turns acks off (the node then counts the client as not
// acknowledging). Default DefaultAckInterval (100 ms).
func WithAckInterval(d time.Duration) Option {
	return func(c *config) { c.ackInterval = d }
}

// acker acknowledges one Watch stream's messages: applied is the seq of the
// last message applied; a goroutine sends it at most every interval, when
// it advanced, until the stream's context ends or the node refuses acks.
type acker struct {
	api      tcsv1.TenantContextServiceClient
	session  string
	interval time.Duration
	applied  atomic.Uint64
	wake     chan struct{}
}

// startAcker starts acking session on api until ctx ends; nil when acks are
// off or the server names no session (it takes no acks).
func (c *Client) startAcker(ctx context.Context, api tcsv1.TenantContextServiceClient, session string) *acker {
	if c.cfg.ackInterval < 0 || session == "" {
		return nil
	}
	a := &acker{api: api, session: session, interval: c.cfg.ackInterval, wake: make(chan struct{}, 1)}
	if a.interval == 0 {
		a.interval = DefaultAckInterval
	}
	go a.run(ctx)
	return a
}

// ack records that every message up to seq has been applied. Safe on a nil
// acker.
func (a *acker) ack(seq uint64) {
	if a == nil || seq == 0 {
		return
	}
	a.applied.Store(seq)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *acker) run(ctx context.Context) {
	var sent uint64
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
		seq := a.applied.Load()
		if seq <= sent {
			continue
		}
		if !a.send(ctx, seq) {
			return
		}
		sent = seq
		// At most one ack per interval: what is applied meanwhile goes
		// in the next.
		t.Reset(a.interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// send sends one ack, and reports whether to go on acking: a node that
// does not take acks (Unimplemented: built before them) or never knows the
// session ends it.
func (a *acker) send(ctx context.Context, seq uint64) bool {
	for range ackAttempts {
		cctx, cancel := context.WithTimeout(ctx, ackTimeout)
		_, err := a.api.Ack(cctx, &tcsv1.AckRequest{SessionId: a.session, Seq: seq})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return true
		case codes.NotFound:
			continue // another node of the region: try the next
		case codes.Unimplemented:
			return false
		default:
			return ctx.Err() == nil // a failed ack is covered by the next
		}
	}
	return true
}
