package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Assignment is the set of tenants whose work this member of a pool owns
// now (tcs.v1.WorkService), each with its fencing token. Each Assignment
// Work delivers is the whole set: it replaces the one before.
type Assignment struct {
	// Tenants maps each owned tenant id to its fencing token. A token
	// grows with every change of the tenant's owner: a store that keeps
	// the highest token it saw per tenant and refuses writes with a lower
	// one refuses a former owner's late writes.
	Tenants map[string]uint64
	// MaxConcurrent is how many of them this member may run at once (its
	// share of the pool's cap); 0: no cap.
	MaxConcurrent int
	// ValidUntil is when, by this process's clock, the assignment lapses
	// unless renewed: Work delivers an empty Assignment then. Zero when
	// Tenants is empty.
	ValidUntil time.Time

	// seq is the node's assignment this one reflects on stream s (the
	// latest received when Work made it up: a lapse, a leave); dropped:
	// it dropped tenants the one before had; leave: Work's last.
	seq     uint64
	s       *session
	dropped bool
	leave   bool
}

// Applied tells the node that this member no longer counts on any tenant
// absent from a (their work has stopped), so that it hands them over to
// their new owners at once instead of about a lease duration later. Call
// it only once that is true; calling it more than once, on an older
// Assignment, or never is safe (never: the tenants a member drops stay
// unworked for up to a lease duration, and Work does not leave cleanly
// when its ctx ends). Calling it on the empty Assignment Work delivers when
// its ctx ends lets Work leave the pool cleanly: the node releases the
// member's tenants at once. RunPerTenant calls it.
func (a Assignment) Applied() {
	if a.s != nil {
		a.s.applied(a.seq, a.dropped, a.leave)
	}
}

// DefaultWorkLeaseDuration is the lease duration assumed until the node
// says its own: it paces the first heartbeats.
const DefaultWorkLeaseDuration = 10 * time.Second

// WorkOption configures Work and RunPerTenant.
type WorkOption func(*workConfig)

type workConfig struct {
	member        string
	maxConcurrent int
}

// WithMember names this member of the pool: the same id after a restart
// keeps the leases that did not lapse. Default: host name, process id and
// a random suffix.
func WithMember(id string) WorkOption { return func(c *workConfig) { c.member = id } }

// WithPoolMaxConcurrent caps the runs of the whole pool at once (members
// that disagree get the smallest cap); 0: no cap.
func WithPoolMaxConcurrent(n int) WorkOption { return func(c *workConfig) { c.maxConcurrent = n } }

var workPoolName = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

func defaultMember() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Work joins pool as a member of the given capacity (its weight: members
// own tenants in proportion; 0 means 1) and delivers the tenants it owns
// on the returned channel whenever they change (a renewal changes
// ValidUntil), until ctx ends. Then it delivers an empty Assignment and,
// once the receiver calls Applied on it (if it ever called Applied; or
// else once every assignment delivered is past its ValidUntil), leaves the
// pool cleanly, so that the node hands the member's tenants to the others
// at once; a receiver that never calls Applied leaves them unworked until
// the member's leases lapse, about a lease duration. Then it closes the
// channel; Client.Close ends it at once, without a clean leave. Heartbeats
// are sent inside; when
// the node's stream fails, or the node sends nothing for a lease duration
// (it answers at least every quarter of one while alive), it joins again
// through the next region (the same
// member id, so the leases that did not lapse are kept), and if no renewal
// arrives before the assignment's ValidUntil it delivers an empty one, so
// that no two members of the pool count on one tenant at the same time.
// The channel holds the latest value only: a slow reader misses
// intermediate sets, never the current one.
func (c *Client) Work(ctx context.Context, pool string, capacity float64, opts ...WorkOption) (<-chan Assignment, error) {
	cfg := workConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case !workPoolName.MatchString(pool):
		return nil, fmt.Errorf("tcs client work: pool %q: want [a-z0-9-]{1,63}", pool)
	case math.IsNaN(capacity) || capacity < 0 || capacity > 1e6:
		return nil, fmt.Errorf("tcs client work: capacity %v: want 0 (means 1) to 1000000", capacity)
	case cfg.maxConcurrent < 0 || cfg.maxConcurrent > math.MaxInt32:
		return nil, fmt.Errorf("tcs client work: pool max concurrent %d: want 0 (no cap) or more", cfg.maxConcurrent)
	}
	if cfg.member == "" {
		cfg.member = defaultMember()
	}
	if err := c.ctx.Err(); err != nil {
		return nil, ErrClosed
	}
	w := &worker{c: c, join: &tcsv1.Join{Pool: pool, Member: cfg.member, Capacity: capacity, MaxConcurrent: int32(cfg.maxConcurrent)},
		out: make(chan Assignment, 1), leaseDuration: DefaultWorkLeaseDuration}
	go w.run(ctx)
	return w.out, nil
}

// worker is one Work call.
type worker struct {
	c    *Client
	join *tcsv1.Join
	out  chan Assignment

	mu            sync.Mutex
	cur           Assignment
	validMax      time.Time // the latest ValidUntil delivered
	leaseDuration time.Duration
	expiry        *time.Timer
	sess          *session // the current stream's
	leaving       bool     // ctx ended: deliver nothing after the leave's
	acks          bool     // the receiver called Applied at least once
}

// session is one Join stream's acknowledgement state.
type session struct {
	w    *worker
	kick chan struct{} // send a heartbeat now

	mu       sync.Mutex
	received uint64 // the latest assignment_seq received
	echo     uint64 // the latest applied: what heartbeats echo
	left     bool   // the leave's empty assignment was applied
}

// applied records that the receiver applied assignment seq (leave: the
// empty one Work delivered when its ctx ended).
func (s *session) applied(seq uint64, dropped, leave bool) {
	s.w.mu.Lock()
	s.w.acks = true
	s.w.mu.Unlock()
	s.mu.Lock()
	kick := seq > s.echo && dropped || leave && !s.left
	s.echo = max(s.echo, seq)
	s.left = s.left || leave
	s.mu.Unlock()
	if kick {
		// Now, not on the heartbeat timer: the dropped tenants' new
		// owner waits for it.
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *session) state() (echo uint64, left bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.echo, s.left
}

// publish delivers a, replacing a value not read yet. Called with mu held.
func (w *worker) publishLocked(a Assignment) {
	select {
	case <-w.out:
	default:
	}
	w.out <- a
}

// set records a new assignment and arms its expiry. Called with mu held.
func (w *worker) setLocked(a Assignment) {
	for id, tok := range w.cur.Tenants {
		if got, ok := a.Tenants[id]; !ok || got != tok {
			a.dropped = true
			break
		}
	}
	w.cur = a
	if w.expiry != nil {
		w.expiry.Stop()
	}
	if !a.ValidUntil.IsZero() {
		w.expiry = time.AfterFunc(a.ValidUntil.Sub(w.c.cfg.now()), w.lapse)
		if a.ValidUntil.After(w.validMax) {
			w.validMax = a.ValidUntil
		}
	}
	w.publishLocked(a)
}

// madeUpLocked returns a, an assignment Work makes up (a lapse, a leave),
// acknowledging the latest one received on the current stream: a receiver
// that applied it counts on nothing received so far. Called with mu held.
func (w *worker) madeUpLocked(a Assignment) Assignment {
	if s := w.sess; s != nil {
		s.mu.Lock()
		a.s, a.seq = s, s.received
		s.mu.Unlock()
	}
	return a
}

// lapse delivers an empty assignment once the current one is past its
// ValidUntil without renewal.
func (w *worker) lapse() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.ValidUntil.IsZero() || w.c.cfg.now().Before(w.cur.ValidUntil) || len(w.cur.Tenants) == 0 {
		return
	}
	w.setLocked(w.madeUpLocked(Assignment{MaxConcurrent: w.cur.MaxConcurrent}))
}

// startLeave delivers the empty assignment that ends the work once ctx
// ended, and says how long to wait for the receiver to apply it: until
// every assignment delivered is past its ValidUntil. False: the receiver
// never called Applied, so leave without Leave.
func (w *worker) startLeave(s *session) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leaving = true
	a := w.madeUpLocked(Assignment{})
	a.s, a.leave = s, true
	w.setLocked(a)
	return max(w.validMax.Sub(w.c.cfg.now()), 0), w.acks
}

func (w *worker) run(ctx context.Context) {
	defer func() {
		w.mu.Lock()
		if w.expiry != nil {
			w.expiry.Stop()
		}
		if len(w.cur.Tenants) > 0 {
			w.setLocked(Assignment{})
		}
		w.mu.Unlock()
		close(w.out)
	}()
	done := func() bool { return ctx.Err() != nil || w.c.ctx.Err() != nil }
	wait := 100 * time.Millisecond
	for i := 0; !done(); i = (i + 1) % len(w.c.regions) {
		r := w.c.regions[i]
		began := time.Now()
		err := w.session(ctx, r)
		if done() {
			return
		}
		if time.Since(began) > time.Minute {
			wait = 100 * time.Millisecond
		}
		w.c.log.Warn("tcs work stream ended; joining again through the next region", "pool", w.join.Pool, "region", r.label(), "err", err, "backoff", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// session runs one Join stream through region r until it fails, or ctx
// ends and the member left, or the Client is closed.
func (w *worker) session(ctx context.Context, r *region) error {
	// The stream outlives ctx: when ctx ends the member leaves through
	// it. Close ends it at once.
	sctx, cancelCause := context.WithCancelCause(context.WithoutCancel(ctx))
	cancel := func() { cancelCause(nil) }
	defer cancel()
	defer context.AfterFunc(w.c.ctx, cancel)()
	// A node that stops answering (frozen, or cut off while the connection
	// stays up) would hold the stream until keepalive noticed (20 s + 10 s by
	// default). While the member heartbeats, a live node answers at least
	// once a record renewal (a quarter of the lease): a whole lease duration
	// of silence ends the session, and the member joins through the next
	// region, about when its assignment lapses anyway.
	silent := time.AfterFunc(w.silence(), func() {
		cancelCause(fmt.Errorf("%w: nothing from the node for a lease duration (%v)", errNodeSilent, w.silence()))
	})
	defer silent.Stop()
	stream, err := tcsv1.NewWorkServiceClient(r.conn).Join(sctx)
	if err != nil {
		return err
	}
	s := &session{w: w, kick: make(chan struct{}, 1)}
	w.mu.Lock()
	w.sess = s
	w.mu.Unlock()
	var (
		smu    sync.Mutex
		sentAt = map[uint64]time.Time{}
	)
	smu.Lock()
	sentAt[0] = w.c.cfg.now()
	smu.Unlock()
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: w.join}}); err != nil {
		return err
	}
	beatErr := make(chan error, 1)
	var sender sync.WaitGroup
	defer func() {
		cancel()
		sender.Wait() // it delivers the leave: not once run closed out
	}()
	sender.Go(func() { // the only sender from here on
		fail := func(err error) {
			beatErr <- err
			cancel()
		}
		var (
			seq      uint64
			ended    = ctx.Done()
			leaving  bool
			deadline <-chan time.Time
		)
		for {
			w.mu.Lock()
			every := w.leaseDuration / 6
			w.mu.Unlock()
			t := time.NewTimer(every)
			select {
			case <-sctx.Done():
				t.Stop()
				return
			case <-ended:
				ended = nil
				if sctx.Err() != nil {
					t.Stop()
					return
				}
				wait, acks := w.startLeave(s)
				if !acks {
					// The receiver may count on its tenants until
					// they lapse: no Leave, they expire.
					t.Stop()
					_ = stream.CloseSend()
					cancel()
					return
				}
				leaving, deadline = true, time.After(wait)
			case <-deadline:
				// Past every ValidUntil: the receiver counts on
				// nothing any more.
				t.Stop()
				w.leave(stream, cancel)
				return
			case <-s.kick:
			case <-t.C:
			}
			t.Stop()
			echo, left := s.state()
			if leaving && left {
				w.leave(stream, cancel)
				return
			}
			smu.Lock()
			seq++
			sentAt[seq] = w.c.cfg.now()
			smu.Unlock()
			if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: seq, AppliedSeq: echo}}}); err != nil {
				fail(err)
				return
			}
		}
	})
	tenants := map[string]uint64{}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if cause := context.Cause(sctx); errors.Is(cause, errNodeSilent) {
				return cause
			}
			select {
			case e := <-beatErr:
				return e
			default:
			}
			if status.Code(err) == codes.InvalidArgument {
				w.c.log.Error("tcs work join refused", "pool", w.join.Pool, "err", err)
			}
			return err
		}
		silent.Reset(w.silence())
		smu.Lock()
		sent, ok := sentAt[msg.GetAckedSeq()]
		for s := range sentAt {
			if s < msg.GetAckedSeq() {
				delete(sentAt, s) // acks only grow
			}
		}
		smu.Unlock()
		if msg.GetChanged() {
			tenants = make(map[string]uint64, len(msg.GetTenants()))
			for _, t := range msg.GetTenants() {
				tenants[t.GetTenantId()] = t.GetToken()
			}
		}
		a := Assignment{Tenants: tenants, MaxConcurrent: int(msg.GetMaxConcurrent())}
		if vf := msg.GetValidFor().AsDuration(); ok && vf > 0 && len(tenants) > 0 {
			a.ValidUntil = sent.Add(vf)
		}
		if len(tenants) > 0 && (a.ValidUntil.IsZero() || !w.c.cfg.now().Before(a.ValidUntil)) {
			// Confirmed too late (or not at all): count on none of them.
			a = Assignment{MaxConcurrent: a.MaxConcurrent}
		}
		if seq := msg.GetAssignmentSeq(); seq > 0 { // 0: an older node
			s.mu.Lock()
			s.received = max(s.received, seq)
			s.mu.Unlock()
			a.s, a.seq = s, seq
		}
		w.mu.Lock()
		if d := msg.GetLeaseDuration().AsDuration(); d > 0 {
			w.leaseDuration = d
		}
		if !w.leaving {
			w.setLocked(a)
		}
		w.mu.Unlock()
	}
}

// errNodeSilent ends a session whose node sent nothing for a lease
// duration.
var errNodeSilent = errors.New("tcs work: node silent")

// silence is how long a session waits for the node's next message: the
// pool's lease duration, as the node last said (DefaultWorkLeaseDuration
// before it said).
func (w *worker) silence() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leaseDuration
}

// leave sends Leave, closes the sending side and gives the node a while to
// release the member's leases and end the stream; then it cancels it.
func (w *worker) leave(stream tcsv1.WorkService_JoinClient, cancel context.CancelFunc) {
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Leave{Leave: &tcsv1.Leave{}}}); err == nil {
		_ = stream.CloseSend()
		w.mu.Lock()
		wait := w.leaseDuration
		w.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-stream.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	cancel()
}
