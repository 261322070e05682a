package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
// ValidUntil), until ctx ends (then it
// releases them and closes the channel). Heartbeats are sent inside; when
// the node's stream fails it joins again through the next region (the same
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
	leaseDuration time.Duration
	expiry        *time.Timer
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
	w.cur = a
	if w.expiry != nil {
		w.expiry.Stop()
	}
	if !a.ValidUntil.IsZero() {
		w.expiry = time.AfterFunc(a.ValidUntil.Sub(w.c.cfg.now()), w.lapse)
	}
	w.publishLocked(a)
}

// lapse delivers an empty assignment once the current one is past its
// ValidUntil without renewal.
func (w *worker) lapse() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.ValidUntil.IsZero() || w.c.cfg.now().Before(w.cur.ValidUntil) || len(w.cur.Tenants) == 0 {
		return
	}
	w.setLocked(Assignment{MaxConcurrent: w.cur.MaxConcurrent})
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close ends the work too
		select {
		case <-w.c.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	wait := 100 * time.Millisecond
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(w.c.regions) {
		r := w.c.regions[i]
		began := time.Now()
		err := w.session(ctx, r)
		if ctx.Err() != nil {
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
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// session runs one Join stream through region r until it fails or ctx
// ends.
func (w *worker) session(ctx context.Context, r *region) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := tcsv1.NewWorkServiceClient(r.conn).Join(ctx)
	if err != nil {
		return err
	}
	var (
		smu    sync.Mutex
		sentAt = map[uint64]time.Time{}
		seq    uint64
	)
	smu.Lock()
	sentAt[0] = w.c.cfg.now()
	smu.Unlock()
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: w.join}}); err != nil {
		return err
	}
	beatErr := make(chan error, 1)
	go func() {
		for {
			w.mu.Lock()
			every := w.leaseDuration / 6
			w.mu.Unlock()
			t := time.NewTimer(every)
			select {
			case <-ctx.Done():
				t.Stop()
				_ = stream.CloseSend()
				return
			case <-t.C:
			}
			smu.Lock()
			seq++
			s := seq
			sentAt[s] = w.c.cfg.now()
			smu.Unlock()
			if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: s}}}); err != nil {
				beatErr <- err
				cancel()
				return
			}
		}
	}()
	tenants := map[string]uint64{}
	for {
		msg, err := stream.Recv()
		if err != nil {
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
		w.mu.Lock()
		if d := msg.GetLeaseDuration().AsDuration(); d > 0 {
			w.leaseDuration = d
		}
		w.setLocked(a)
		w.mu.Unlock()
	}
}
