package work

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tcs-dev/tcs/internal/lease"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// Leases opens pool's lease group written as owner: memlease.Table.Store or
// leasetable.Open with Group(pool).
type Leases func(ctx context.Context, pool, owner string) (lease.Store, error)

// Config configures a Service.
type Config struct {
	// Leases opens the pools' lease groups.
	Leases Leases
	// Index is the region's ACTIVE tenants; the Service does not run it.
	Index *Index
	// LeaseDuration is the bucket leases' duration: a member that stops
	// heartbeating loses its tenants about this long after its node's last
	// renewal. Every node of a region must use the same. Default
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Logger receives the service's logs. Nil discards them.
	Logger *slog.Logger
	// Registerer receives the metrics (tcs_work_*). Nil: none.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Service is tcs.v1.WorkService: it holds bucket leases for the members
// that joined through this node.
type Service struct {
	tcsv1.UnimplementedWorkServiceServer
	cfg Config
	log *slog.Logger
	m   metrics

	mu    sync.Mutex
	local map[string]int // members joined through this node, by pool label
}

type metrics struct {
	members     *prometheus.GaugeVec
	unowned     *prometheus.GaugeVec
	held        prometheus.Gauge
	sent        prometheus.Counter
	left        prometheus.Counter
	stepErrors  prometheus.Counter
	validations *prometheus.CounterVec
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Leases == nil || cfg.Index == nil {
		return nil, errors.New("work service: Leases and Index are required")
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, local: map[string]int{}, m: metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tcs_work_members",
			Help: "Work pool members joined through this node, by pool (0 once the last one left; pools beyond the first 100 are pool=\"_other\")."}, []string{"pool"}),
		unowned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tcs_work_unowned_tenants",
			Help: "ACTIVE tenants of a pool in buckets no live member holds (free, or their owner's record expired), as the last round of a member joined through this node saw them; no series while none is."}, []string{"pool"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcs_work_buckets_held", Help: "Bucket leases this node holds for its members, all pools."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "tcs_work_assignments_sent_total", Help: "Assignment messages sent to members."}),
		left: prometheus.NewCounter(prometheus.CounterOpts{Name: "tcs_work_leaves_total",
			Help: "Members that left cleanly (Leave) through this node, their leases released at once; streams that ended otherwise are not counted."}),
		stepErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "tcs_work_lease_errors_total",
			Help: "Rounds of a member whose lease reads or writes failed (other than lost races)."}),
		validations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tcs_work_validations_total", Help: "Validate calls by result."}, []string{"result"}),
	}}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.m.members, s.m.unowned, s.m.held, s.m.sent, s.m.left, s.m.stepErrors, s.m.validations)
	}
	for _, r := range []string{"valid", "invalid"} {
		s.m.validations.WithLabelValues(r)
	}
	return s, nil
}

// maxPoolLabels bounds the pool label values of one node's metrics: pool
// names are the callers', and each would be a series for ever.
const maxPoolLabels = 100

// joined counts a member of pool joining through this node and returns the
// pool's label.
func (s *Service) joined(pool string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.local[pool]; !ok && len(s.local) >= maxPoolLabels {
		pool = "_other"
	}
	s.local[pool]++
	s.m.members.WithLabelValues(pool).Inc()
	return pool
}

// left counts a member of the pool labelled label leaving; the pool's
// unowned tenants are no longer this node's to report once its last member
// left (its members gauge stays, at 0, for TCSWorkPoolEmpty).
func (s *Service) left(label string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.local[label]--
	s.m.members.WithLabelValues(label).Dec()
	if s.local[label] == 0 {
		s.m.unowned.DeleteLabelValues(label)
	}
}

// Register registers the service on gs.
func (s *Service) Register(gs grpc.ServiceRegistrar) { tcsv1.RegisterWorkServiceServer(gs, s) }

var poolName = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// checkJoin checks a join message; its error names the field.
func checkJoin(j *tcsv1.Join) error {
	switch {
	case !poolName.MatchString(j.GetPool()):
		return fmt.Errorf("pool %q: want [a-z0-9-]{1,63}", j.GetPool())
	case !printable(j.GetMember()):
		return fmt.Errorf("member %q: want 1 to 128 printable ASCII characters", j.GetMember())
	case math.IsNaN(j.GetCapacity()) || j.GetCapacity() < 0 || j.GetCapacity() > 1e6:
		return fmt.Errorf("capacity %v: want 0 (means 1) to 1000000", j.GetCapacity())
	case j.GetMaxConcurrent() < 0:
		return fmt.Errorf("max_concurrent %d: want 0 (no cap) or more", j.GetMaxConcurrent())
	}
	return nil
}

func printable(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// stepInterval is how often a member's round runs.
func (s *Service) stepInterval() time.Duration { return s.cfg.LeaseDuration / 8 }

// Join serves one member: see tcs.v1.WorkService.Join.
func (s *Service) Join(stream tcsv1.WorkService_JoinServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	j := first.GetJoin()
	if j == nil {
		return status.Error(codes.FailedPrecondition, "the first message of Join must be a join")
	}
	if err := checkJoin(j); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	st, err := s.cfg.Leases(ctx, j.GetPool(), j.GetMember())
	if err != nil {
		s.log.Warn("opening a work pool's leases failed", "pool", j.GetPool(), "err", err)
		return status.Error(codes.Unavailable, "the work pool's lease store is unavailable")
	}
	m, err := NewMember(MemberConfig{Store: st, Member: j.GetMember(), Capacity: j.GetCapacity(),
		MaxConcurrent: int(j.GetMaxConcurrent()), LeaseDuration: s.cfg.LeaseDuration, Now: s.cfg.Now, Tenants: s.cfg.Index.Count})
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	log := s.log.With("pool", j.GetPool(), "member", j.GetMember())
	log.Info("work member joined", "capacity", j.GetCapacity(), "max_concurrent", j.GetMaxConcurrent())
	label := s.joined(j.GetPool())
	heldNow := 0
	defer func() {
		// Unless the member left, its leases are not released: it cannot
		// be told from one whose stream was cut and that still counts on
		// its last assignment until it lapses. They expire a lease
		// duration after the record's last renewal, as after a crash (or
		// the member rejoins, through any node, and keeps them).
		s.left(label)
		s.m.held.Sub(float64(heldNow))
		log.Info("work member left", "err", context.Cause(ctx))
	}()
	m.Heartbeat(s.cfg.Now(), 0) // the join message is heartbeat 0
	handOver := make(chan struct{}, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				cancel(err)
				return
			}
			if req.GetLeave() != nil {
				cancel(errLeave)
				return
			}
			hb := req.GetHeartbeat()
			if hb == nil {
				cancel(status.Error(codes.FailedPrecondition, "a Join stream sends one join, then heartbeats, then at most one leave"))
				return
			}
			m.Heartbeat(s.cfg.Now(), hb.GetSeq())
			now, err := m.Applied(hb.GetAppliedSeq())
			if err != nil {
				cancel(status.Error(codes.InvalidArgument, err.Error()))
				return
			}
			if now {
				select {
				case handOver <- struct{}{}:
				default:
				}
			}
		}
	}()
	tick := time.NewTicker(s.stepInterval())
	defer tick.Stop()
	var (
		last     []*tcsv1.OwnedTenant
		lastAck  uint64
		lastSlot = -1
		first_   = true
		step     = true
		seq      uint64 // assignments sent
	)
	for {
		changed := s.cfg.Index.Changed()
		now := s.cfg.Now()
		if step {
			leases, err := st.List(ctx)
			if err == nil {
				err = m.Step(ctx, now, leases)
			}
			if err != nil && ctx.Err() == nil {
				s.m.stepErrors.Inc()
				log.Warn("a work member's lease round failed", "err", err)
			}
			if n, ok := m.Unowned(); ok {
				s.m.unowned.WithLabelValues(label).Set(float64(n))
			}
		}
		held := m.Held(now)
		s.m.held.Add(float64(len(held) - heldNow))
		heldNow = len(held)
		owned := s.owned(held)
		ack, slots := m.Acked(), m.Slots()
		msg := &tcsv1.WorkAssignment{AckedSeq: ack, MaxConcurrent: int32(slots), LeaseDuration: durationpb.New(s.cfg.LeaseDuration), AssignmentSeq: seq + 1}
		if len(held) > 0 {
			msg.ValidFor = durationpb.New(m.validFor())
		}
		if first_ || !slices.EqualFunc(owned, last, sameOwned) {
			msg.Changed, msg.Tenants = true, owned
		}
		if msg.Changed || ack != lastAck || slots != lastSlot || m.Yielding() {
			// Before it can be echoed: an echo beyond the latest sent
			// is refused.
			seq++
			m.Sent(seq)
			if err := stream.Send(msg); err != nil {
				return err
			}
			s.m.sent.Inc()
			first_, last, lastAck, lastSlot = false, owned, ack, slots
		}
		select {
		case <-ctx.Done():
			switch err := context.Cause(ctx); {
			case errors.Is(err, errLeave):
				// The member counts on none of its tenants: free them
				// for the others now. The stream's context is done, the
				// writes are not.
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.LeaseDuration)
				m.Release(rctx)
				rcancel()
				s.m.left.Inc()
				return nil
			case status.Code(err) == codes.FailedPrecondition, status.Code(err) == codes.InvalidArgument:
				return err
			}
			return nil
		case <-tick.C:
			step = true
		case <-handOver:
			step = true // the member applied an assignment without a yielded bucket
		case <-changed:
			step = false // a tenant came or went: resend, no lease round
		}
	}
}

// errLeave ends a Join whose member sent Leave.
var errLeave = errors.New("the member left")

func sameOwned(a, b *tcsv1.OwnedTenant) bool {
	return a.GetTenantId() == b.GetTenantId() && a.GetToken() == b.GetToken()
}

// owned lists the ACTIVE tenants of the held buckets with their tokens,
// sorted by id.
func (s *Service) owned(held map[int]uint64) []*tcsv1.OwnedTenant {
	var out []*tcsv1.OwnedTenant
	for b, epoch := range held {
		for _, id := range s.cfg.Index.Tenants(b) {
			out = append(out, &tcsv1.OwnedTenant{TenantId: id, Token: epoch})
		}
	}
	slices.SortFunc(out, func(a, b *tcsv1.OwnedTenant) int {
		switch {
		case a.TenantId < b.TenantId:
			return -1
		case a.TenantId > b.TenantId:
			return 1
		}
		return 0
	})
	return out
}

// validator is the owner name Validate reads the leases as; it never
// writes.
const validator = "validate"

// Validate answers whether a fencing token is the tenant's current one.
func (s *Service) Validate(ctx context.Context, req *tcsv1.ValidateRequest) (*tcsv1.ValidateResponse, error) {
	if !poolName.MatchString(req.GetPool()) {
		return nil, status.Errorf(codes.InvalidArgument, "pool %q: want [a-z0-9-]{1,63}", req.GetPool())
	}
	if req.GetTenantId() == "" {
		return nil, status.Error(codes.InvalidArgument, "tenant_id is empty")
	}
	st, err := s.cfg.Leases(ctx, req.GetPool(), validator)
	if err != nil {
		return nil, status.Error(codes.Unavailable, "the work pool's lease store is unavailable")
	}
	leases, err := st.List(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		s.log.Warn("reading a work pool's leases failed", "pool", req.GetPool(), "err", err)
		return nil, status.Error(codes.Unavailable, "the work pool's lease store is unavailable")
	}
	tok, owner := Current(leases, req.GetTenantId())
	valid := tok != 0 && tok == req.GetToken() && s.cfg.Index.Active(req.GetTenantId())
	result := "invalid"
	if valid {
		result = "valid"
	}
	s.m.validations.WithLabelValues(result).Inc()
	return &tcsv1.ValidateResponse{Valid: valid, CurrentToken: tok, Owner: owner}, nil
}

// StoresOf returns Leases over open, which cannot fail (memlease.Table.Store
// with Group(pool)).
func StoresOf(open func(pool, owner string) lease.Store) Leases {
	return func(_ context.Context, pool, owner string) (lease.Store, error) { return open(pool, owner), nil }
}
