package client

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// DefaultAckInterval is WithAckInterval's default: acks cost the node about
// what a lookup does (a message each, on a stream of their own), so a
// client acks rarely unless asked (BenchmarkAckCost in tcs/lookup).
const DefaultAckInterval = 5 * time.Second

// ackAttempts is how many times an AckStream is opened in a row while the
// region answers NotFound: with round-robin balancing over a region's nodes
// (see WithBalancing) the AckStream may reach another node than the one
// holding the Watch stream, which does not know its session; each attempt
// goes to the next node. A region of more nodes than this may lose acks
// (its node then counts the client as not acknowledging).
const ackAttempts = 8

// ackAcceptedHeader is the header a node sends on an AckStream whose
// session it accepted (lookup.AckAcceptedHeader; the client does not link
// the server).
const ackAcceptedHeader = "tcs-ack-accepted"

// ackRetry is the pause before an AckStream that failed otherwise (the
// connection broke) is opened again; the acks pending meanwhile go in its
// first message.
const ackRetry = time.Second

// WithAckInterval sets how often, at most, the client acknowledges the
// messages of its Watch stream that it has applied (on a
// TenantContextService.AckStream, one per Watch stream), so that the
// catalog's propagation status can tell when this cache has seen a change.
// An ack is sent only when something new was applied; the first at once,
// and at once too whenever the node asks (a message with ack_now: someone
// waits for a change), so that the interval bounds only the acks nobody
// waits for. Negative turns acks off (the node then counts the client as
// not acknowledging). Default DefaultAckInterval (5 s).
func WithAckInterval(d time.Duration) Option {
	return func(c *config) { c.ackInterval = d }
}

// acker acknowledges one Watch stream's messages: applied is the seq of the
// last message applied; a goroutine sends it on an AckStream when it
// advanced, at most every interval, or at once when the node asked (urgent:
// a message with ack_now), until the stream's context ends or the node
// refuses acks.
type acker struct {
	api      tcsv1.TenantContextServiceClient
	session  string
	interval time.Duration
	applied  atomic.Uint64
	urgent   atomic.Bool
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
	a.rewake()
}

// ackNow asks for what is applied, and what is applied next if that is
// acked already (the node's request may come before the invalidation it is
// waiting for), to be acked at once. Safe on a nil acker.
func (a *acker) ackNow() {
	if a == nil {
		return
	}
	a.urgent.Store(true)
	a.rewake()
}

func (a *acker) run(ctx context.Context) {
	var (
		sent     uint64
		lastSent time.Time  // zero: the first ack goes at once
		open     *ackStream // nil: none open
		notFound int
	)
	defer func() { open.close() }()
	t := time.NewTimer(0)
	defer t.Stop()
	pause := func(d time.Duration) bool {
		t.Reset(d)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		seq := a.applied.Load()
		due := lastSent.Add(a.interval)
		if seq <= sent || (!a.urgent.Load() && time.Now().Before(due)) {
			var timer <-chan time.Time
			if seq > sent {
				t.Reset(time.Until(due))
				timer = t.C
			}
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
			case <-timer:
			}
			continue
		}
		var err error
		if open == nil {
			open, err = a.open(ctx, seq)
		} else if err = open.stream.Send(&tcsv1.AckRequest{SessionId: a.session, Seq: seq}); err != nil {
			// The node ended the stream: its status says why.
			_, err = open.stream.CloseAndRecv()
			open.close()
			open = nil
		}
		switch status.Code(err) {
		case codes.OK:
			notFound = 0
			sent, lastSent = seq, time.Now()
			a.urgent.Store(false)
			continue
		case codes.NotFound:
			// Another node of the region, or the Watch stream ended
			// (then ctx ends soon): try the next node at once.
			if notFound++; notFound >= ackAttempts {
				return
			}
		case codes.Unimplemented, codes.AlreadyExists, codes.InvalidArgument:
			return // a node without acks, or a bug: stop acking
		default:
			if !pause(ackRetry) {
				return
			}
		}
	}
}

// ackStream is an open AckStream and the cancel func of its context.
type ackStream struct {
	stream tcsv1.TenantContextService_AckStreamClient
	cancel context.CancelFunc
}

// close ends the stream. Safe on nil.
func (s *ackStream) close() {
	if s != nil {
		s.cancel()
	}
}

// open opens an AckStream with its first ack, seq, and waits for the node
// to accept the session (its headers carry ackAcceptedHeader), so that a node
// that does not know the session is found at once, not at the next ack.
func (a *acker) open(ctx context.Context, seq uint64) (*ackStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	stream, err := a.api.AckStream(sctx)
	if err == nil {
		err = stream.Send(&tcsv1.AckRequest{SessionId: a.session, Seq: seq})
	}
	var md metadata.MD
	if err == nil {
		md, err = stream.Header()
	}
	if err == nil && len(md.Get(ackAcceptedHeader)) == 0 {
		_, err = stream.CloseAndRecv() // ended without accepting: why
		if err == nil {
			err = status.Error(codes.Internal, "AckStream ended without accepting the session")
		}
	}
	if err != nil {
		cancel()
		if status.Code(err) == codes.Unknown && ctx.Err() != nil {
			err = status.FromContextError(ctx.Err()).Err()
		}
		return nil, err
	}
	return &ackStream{stream: stream, cancel: cancel}, nil
}

// rewake makes run look at applied again.
func (a *acker) rewake() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}
